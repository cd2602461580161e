"""
header.py - the names include/mosquitto_kafka.h gives Kafka record headers (HDR), envelope
fields (ENV) and the $SYS prefix (SYS_PREFIX), read from the header itself.
"""

import re

from paths import PUBLIC_HEADER
from procs import HarnessError, require_file

def read_header_macros(path=PUBLIC_HEADER):
    """Every `#define MQK_X "text"` of include/mosquitto_kafka.h, as {"MQK_X": "text"}."""
    require_file(path, "the public header")
    macros = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r'\s*#\s*define\s+(MQK_[A-Z0-9_]+)\s+"((?:[^"\\]|\\.)*)"', line)
            if m:
                macros[m.group(1)] = m.group(2)
    return macros


class _Names:
    def __init__(self, macros, prefix):
        self._m = {k[len(prefix):]: v for k, v in macros.items() if k.startswith(prefix)}
        if not self._m:
            raise HarnessError(f"no {prefix}* macro in {PUBLIC_HEADER}")

    def __getattr__(self, name):
        try:
            return self._m[name]
        except KeyError:
            raise HarnessError(f"{PUBLIC_HEADER} defines no such name: {name}") from None


_MACROS = read_header_macros()
HDR = _Names(_MACROS, "MQK_HDR_")   # HDR.TOPIC == "mqtt.topic", HDR.USER_PREFIX, ...
ENV = _Names(_MACROS, "MQK_ENV_")   # ENV.PAYLOAD == "payload", ...
SYS_PREFIX = _MACROS["MQK_SYS_PREFIX"]
