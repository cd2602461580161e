# check_exports.cmake - the plugin must export exactly its three entry points.
#
#   cmake -DPLUGIN=build/plugin/mosquitto_kafka.so -P tests/integration/check_exports.cmake
#
# mosquitto loads plugins RTLD_GLOBAL: any other exported symbol could collide with another
# plugin's, so everything else must be static or hidden (-fvisibility=hidden).
if(NOT PLUGIN OR NOT EXISTS "${PLUGIN}")
    message(FATAL_ERROR "exports: plugin not found: '${PLUGIN}'")
endif()
find_program(NM nm REQUIRED)
execute_process(COMMAND ${NM} -D --defined-only "${PLUGIN}"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "exports: nm -D --defined-only ${PLUGIN} failed (${rc}): ${err}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(found "")
foreach(line IN LISTS lines)
    # "0000000000001234 T name" (some nm versions list versioned names with @)
    if(line MATCHES "^[0-9a-fA-F]* *([A-Za-z]) ([^ ]+)$")
        set(kind "${CMAKE_MATCH_1}")
        set(name "${CMAKE_MATCH_2}")
        # Linker-generated markers are not the plugin's symbols.
        if(NOT name MATCHES "^(_init|_fini|_edata|_end|__bss_start)$")
            list(APPEND found "${name}")
        endif()
    endif()
endforeach()
list(SORT found)
set(expected mosquitto_plugin_cleanup mosquitto_plugin_init mosquitto_plugin_version)
if(NOT found STREQUAL expected)
    list(JOIN found ", " f)
    list(JOIN expected ", " e)
    message(FATAL_ERROR "exports: ${PLUGIN} exports [${f}], expected exactly [${e}]\n${out}")
endif()
list(LENGTH found n)
message(STATUS "exports: ${n} symbols exported, 3 expected: ${found}")
