#!/usr/bin/env python3
"""
check_symbols.py - every mosquitto_* function the plugin needs is there when the broker
loads it, and comes from where the plugin's memory handling expects.

    python3 tests/integration/check_symbols.py build/plugin/mosquitto_kafka.so [/usr/sbin/mosquitto]

mosquitto 2.0.11 (Debian 12) exports every function of the broker; 2.0.21 (Debian 13)
exports only its plugin functions, and a plugin that calls anything else loads on one and
fails on the other with "undefined symbol". The loader looks in the broker first, then in
the libraries the plugin links (libmosquitto for the MQTT v5 property readers). So:

  1. each undefined mosquitto_* symbol of the plugin is defined by the broker or by one
     of the plugin's own libraries (ldd), else the plugin cannot load;
  2. the functions whose memory crosses to the broker come from the broker itself:
     mosquitto_malloc, mosquitto_free and mosquitto_property_add_* / _free_all (the payload
     and properties handed to mosquitto_broker_publish are freed with the broker's
     allocator, which counts $SYS/broker/heap). A library's copy there would put the heap
     figure wrong.

Prints where each symbol comes from; exits 1 naming what is missing or misplaced.
"""

import re
import subprocess
import sys

# Allocations that the broker frees (or that are freed with the broker's free).
BROKER_ONLY = re.compile(r"^mosquitto_(malloc|free|property_add_\w+|property_free_all)$")


def nm(path, *flags):
    out = subprocess.run(["nm", "-D", *flags, path], capture_output=True, text=True,
                         check=True).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if fields:
            names.add(fields[-1].split("@")[0])
    return names


def linked_libraries(path):
    """The shared libraries the plugin is linked with, resolved by the loader (ldd)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line)
        if m:
            libs.append(m.group(2))
        elif "not found" in line:
            raise SystemExit(f"symbols: {path}: {line.strip()}")
    return libs


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    plugin = sys.argv[1]
    broker = sys.argv[2] if len(sys.argv) == 3 else "/usr/sbin/mosquitto"
    needed = sorted(s for s in nm(plugin, "--undefined-only") if s.startswith("mosquitto_"))
    in_broker = nm(broker, "--defined-only")
    libs = {lib: nm(lib, "--defined-only") for lib in linked_libraries(plugin)}
    version = subprocess.run([broker, "-h"], capture_output=True, text=True).stdout
    version = version.splitlines()[0] if version else "?"
    print(f"symbols: {broker} ({version}) exports {sum(1 for s in in_broker if s.startswith('mosquitto_'))}"
          f" mosquitto_* functions; {plugin} needs {len(needed)}")
    errors = []
    for name in needed:
        if name in in_broker:
            where = "broker"
        else:
            where = next((lib for lib, names in libs.items() if name in names), None)
        print(f"  {name:40} {where or 'NOWHERE'}")
        if where is None:
            errors.append(f"{name} is defined neither by {broker} nor by a library the "
                          f"plugin links: mosquitto would refuse to load it (undefined symbol)")
        elif where != "broker" and BROKER_ONLY.match(name):
            errors.append(f"{name} would come from {where}, not from the broker: memory it "
                          f"allocates or frees would miss the broker's heap accounting")
    for e in errors:
        print(f"symbols: {e}", file=sys.stderr)
    print(f"symbols: {len(needed) - len(errors)} of {len(needed)} resolved as expected")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
