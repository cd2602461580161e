#!/usr/bin/env python3
"""
check_readme_counters.py DUMP README - README's Counters table lists exactly the counters
of the plugin's lists (plugin/mqk.h: MQK_ROUTE_COUNTERS and the other families, printed by
the dump_counters program), each with its $SYS topic and its Prometheus metric; per-route
counters also with their .../routes/<name>/... topic and mosquitto_kafka_route_... metric.
Exit 0 when they agree, else 1 with what is missing or extra.
"""
import re
import subprocess
import sys


def from_code(dump):
    want = set()
    for line in subprocess.run([dump], capture_output=True, text=True, check=True,
                               timeout=10).stdout.splitlines():
        topic, metric, scope, _help = line.split(" ", 3)
        if scope == "route":
            name = topic.rsplit("/", 1)[1]
            want.add((topic, metric, "total and per route"))
            want.add((f"$SYS/broker/kafka/routes/<name>/{name}",
                      metric.replace("mosquitto_kafka_", "mosquitto_kafka_route_", 1),
                      "per route"))
        else:
            want.add((topic, metric, "total"))
    return want


def from_readme(path):
    text = open(path, encoding="utf-8").read()
    m = re.search(r"^## Counters\n(.*?)(?=^## )", text, re.M | re.S)
    if not m:
        sys.exit(f"{path}: no '## Counters' section")
    rows = set()
    in_table = False
    for line in m.group(1).splitlines():
        # The section's first table: | `$SYS/broker/kafka/x`<br>`.../routes/<name>/x` |
        # `metric`<br>`metric` | meaning |
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        if not line.startswith("| `$SYS/"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        topics = re.findall(r"`([^`]+)`", cells[0])
        metrics = re.findall(r"`([^`]+)`", cells[1])
        if len(topics) != len(metrics):
            sys.exit(f"{path}: a row with {len(topics)} topics and {len(metrics)} metrics: {line}")
        if len(topics) == 2:
            rows.add((topics[0], metrics[0], "total and per route"))
            rows.add((topics[1], metrics[1], "per route"))
        else:
            rows.add((topics[0], metrics[0], "total"))
    return rows


def main():
    dump, readme = sys.argv[1], sys.argv[2]
    want, have = from_code(dump), from_readme(readme)
    missing, extra = sorted(want - have), sorted(have - want)
    for row in missing:
        print(f"README's Counters table lacks: {row}")
    for row in extra:
        print(f"README's Counters table has, but the code does not: {row}")
    print(f"{len(want)} counters in the code's lists, {len(have)} rows in README: "
          f"{len(missing)} missing, {len(extra)} extra")
    return 1 if missing or extra else 0


if __name__ == "__main__":
    sys.exit(main())
