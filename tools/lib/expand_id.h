/*
 * expand_id.h - topic templates of the example tools: "devices/{id}/data" for one device.
 */
#ifndef MQK_EXPAND_ID_H
#define MQK_EXPAND_ID_H

/*
 * tpl with every "{id}" replaced by id, in a new string the caller frees; NULL when out
 * of memory. Nothing else in tpl is special.
 */
char *expand_id(const char *tpl, const char *id);

#endif
