#!/usr/bin/python3
"""
flood.py - PUBLISHes to a broker as fast as it takes them, for as little CPU as possible,
so that the broker is what limits the rate (a real client library spends more per message
than mosquitto does, and on 2 cores the publishers would be the bottleneck).

  bench/flood.py PORT [--connections 4] [--size 200] [--qos 0|1] [--topic bench/{i}]

Each connection (a thread) sends one MQTT 3.1.1 CONNECT (keepalive 0), then the same 64 KiB
of back-to-back PUBLISH packets over and over: TCP back-pressure paces it to what the broker
reads. QoS 1: the packets carry ids 1..n of the block, again in every block (mosquitto keeps
no state for an incoming QoS 1 PUBLISH: it answers PUBACK at once), and a second thread
reads and discards the PUBACKs. Stops on SIGTERM/SIGINT, printing how many messages were
written.
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


def publish(topic, payload, qos=0, mid=0):
    if qos == 0:
        return packet(0x30, mqtt_string(topic) + payload)
    return packet(0x32, mqtt_string(topic) + struct.pack("!H", mid) + payload)


def drain(s, stop):
    """Reads and drops what the broker sends (PUBACKs) so that its writes never block."""
    try:
        while not stop.is_set() and s.recv(65536):
            pass
    except OSError:
        pass


def flood(port, client_id, topic, size, qos, stop, counts, i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(connect(client_id))
    ack = s.recv(4)
    if ack[:1] != b"\x20" or ack[3:4] != b"\x00":
        print(f"flood: {client_id}: CONNACK {ack.hex()}", file=sys.stderr)
        return
    one = len(publish(topic, b"x" * size, qos, 1))
    per_block = max(1, 65536 // one)
    block = b"".join(publish(topic, b"x" * size, qos, m + 1) for m in range(per_block))
    s.settimeout(None)
    if qos:
        threading.Thread(target=drain, args=(s, stop), daemon=True).start()
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
    ap.add_argument("--qos", type=int, default=0, choices=(0, 1))
    ap.add_argument("--topic", default="bench/{i}")
    ap.add_argument("--id", default="flood")
    a = ap.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    counts = [0] * a.connections
    threads = [threading.Thread(target=flood, daemon=True,
                                args=(a.port, f"{a.id}-{i}", a.topic.format(i=i), a.size, a.qos,
                                      stop, counts, i)) for i in range(a.connections)]
    for t in threads:
        t.start()
    while not stop.is_set() and any(t.is_alive() for t in threads):
        stop.wait(0.2)
    print(sum(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
