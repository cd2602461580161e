#!/usr/bin/python3
"""
flood.py - QoS 0 PUBLISHes to a broker as fast as it takes them, for as little CPU as
possible, so that the broker is what limits the rate (a real client library spends more per
message than mosquitto does, and on 2 cores the publishers would be the bottleneck).

  bench/flood.py PORT [--connections 4] [--size 200] [--topic bench/{i}]

Each connection (a thread) sends one MQTT 3.1.1 CONNECT (keepalive 0: nothing ever comes
back but the CONNACK), then the same 64 KiB of back-to-back PUBLISH packets over and over:
TCP back-pressure paces it to what the broker reads. Stops on SIGTERM/SIGINT, printing how
many messages each connection wrote.
"""

import argparse
import signal
import socket
import struct
import sys
import threading


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def mqtt_string(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect(client_id):
    # protocol name, level 4, flags: clean session, keepalive 0
    return packet(0x10, mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
                  + mqtt_string(client_id))


def publish(topic, payload):
    return packet(0x30, mqtt_string(topic) + payload)


def flood(port, client_id, topic, size, stop, counts, i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(connect(client_id))
    ack = s.recv(4)
    if ack[:1] != b"\x20" or ack[3:4] != b"\x00":
        print(f"flood: {client_id}: CONNACK {ack.hex()}", file=sys.stderr)
        return
    one = publish(topic, b"x" * size)
    per_block = max(1, 65536 // len(one))
    block = one * per_block
    s.settimeout(None)
    try:
        while not stop.is_set():
            s.sendall(block)
            counts[i] += per_block
    except OSError:
        pass
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--topic", default="bench/{i}")
    ap.add_argument("--id", default="flood")
    a = ap.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    counts = [0] * a.connections
    threads = [threading.Thread(target=flood, daemon=True,
                                args=(a.port, f"{a.id}-{i}", a.topic.format(i=i), a.size, stop,
                                      counts, i)) for i in range(a.connections)]
    for t in threads:
        t.start()
    while not stop.is_set() and any(t.is_alive() for t in threads):
        stop.wait(0.2)
    print(sum(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
