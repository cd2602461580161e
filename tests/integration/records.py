"""
records.py - what reached Kafka: Record (one consumed record), read_topic(s) (every record
of some topics, from the beginning), and the sequence analysis every test of "nothing lost,
nothing twice, in order" shares (sequence_analysis, sequence_report, format_report).
"""

import base64
import json
import time

import confluent_kafka as ck

from kafka_backends import topic_partitions
from procs import HarnessError, unique

class Record:
    __slots__ = ("topic", "partition", "offset", "key", "value", "headers", "timestamp",
                 "timestamp_type")

    def __init__(self, m):
        self.topic = m.topic()
        self.partition = m.partition()
        self.offset = m.offset()
        self.key = m.key()
        self.value = m.value()
        self.headers = list(m.headers() or [])
        self.timestamp_type, self.timestamp = m.timestamp()

    def header(self, name, default=None):
        """The value (bytes) of the only header called name; default when absent."""
        values = [v for n, v in self.headers if n == name]
        if len(values) > 1:
            raise AssertionError(f"header {name} appears {len(values)} times: {self.headers}")
        return values[0] if values else default

    def header_str(self, name, default=None):
        v = self.header(name)
        return default if v is None else v.decode("utf-8")

    def __repr__(self):
        return (f"Record({self.topic}[{self.partition}]@{self.offset} key={self.key!r} "
                f"value={self.value[:60]!r} headers={self.headers})")


def read_topic(bootstrap, topic, expect, timeout=60.0, grace=1.0):
    """
    Reads Kafka topic from the beginning of every partition until `expect` records are in,
    or `timeout` seconds pass, then `grace` seconds more to catch extra records (duplicates,
    records that should not exist). Returns the records in arrival order; never raises on a
    count mismatch: the caller asserts and prints what it got.
    """
    return read_topics(bootstrap, [topic], expect, timeout, grace)


def read_topics(bootstrap, topics, expect, timeout=60.0, grace=1.0):
    """read_topic for several topics at once: `expect` records in all of them."""
    assign = []
    for topic in topics:
        parts = topic_partitions(bootstrap, topic)
        assign += [ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(parts)]
    c = ck.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": unique("mqk-test"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 50,
        "log_level": 3,
    })
    records = []
    try:
        c.assign(assign)
        deadline = time.monotonic() + timeout
        end = None
        while True:
            now = time.monotonic()
            if end is None and (len(records) >= expect or now >= deadline):
                end = now + grace
            if end is not None and now >= end:
                break
            msgs = c.consume(num_messages=10000, timeout=0.2)
            for m in msgs:
                if m.error():
                    if m.error().code() == ck.KafkaError._PARTITION_EOF:
                        continue
                    raise HarnessError(f"consuming {m.topic()}: {m.error()}")
                records.append(Record(m))
    finally:
        c.close()
    return records


def decode_json(value):
    return json.loads(value.decode("utf-8"))


def b64(data):
    return base64.b64encode(data).decode("ascii")


# ---- sequence analysis: lost, duplicates, order --------------------------------------------

class Sequence:
    """What sequence_analysis found of one source's numbers: received (how many numbers came,
    repeats and unexpected ones included), missing (the expected numbers never seen, sorted),
    duplicates (repeats of an expected number), out_of_order (neighbours, in the order they
    were read, whose number does not increase), unexpected (numbers outside what was
    expected, in the order read)."""

    __slots__ = ("received", "missing", "duplicates", "out_of_order", "unexpected")

    def __init__(self):
        self.received = self.duplicates = self.out_of_order = 0
        self.missing, self.unexpected = [], []

    def ok(self):
        """Nothing missing, nothing twice, nothing out of order, nothing unexpected."""
        return not (self.missing or self.duplicates or self.out_of_order or self.unexpected)

    def __repr__(self):
        return (f"Sequence(received={self.received}, missing={len(self.missing)} "
                f"{self.missing[:5]}, duplicates={self.duplicates}, "
                f"out_of_order={self.out_of_order}, unexpected={self.unexpected[:5]})")


def sequence_analysis(items, expected=None, first=0):
    """
    The one place the tests count what a numbered stream lost, repeated or reordered.

    items: (source, number, where) for each number read: source is who numbers (a client
    id, a route, a partition, ...), where orders what was read of one source (a record's
    (partition, offset), or its index in arrival order). expected: {source: count}, the
    numbers first .. first+count-1 of each; a number outside that, or of a source not in
    expected, is unexpected and left out of the other counts. expected None: each source
    seen is expected to number first .. its highest number.

    Returns {source: Sequence}, one for every source expected or seen. out_of_order counts
    the neighbours, sorted by (where, number), whose number does not increase: a repeat read
    next to its original counts there too.
    """
    per = {}
    for source, n, where in items:
        per.setdefault(source, []).append((where, n))
    sources = list(expected) if expected is not None else []
    sources += [s for s in per if s not in sources]
    out = {}
    for source in sources:
        seq = out[source] = Sequence()
        got = per.get(source, [])
        seq.received = len(got)
        if expected is None:
            count = max((n for _, n in got), default=first - 1) - first + 1
        else:
            count = expected.get(source, 0)
        inside = []
        for where, n in got:
            if first <= n < first + count:
                inside.append((where, n))
            else:
                seq.unexpected.append(n)
        numbers = [n for _, n in inside]
        distinct = set(numbers)
        seq.duplicates = len(numbers) - len(distinct)
        seq.missing = [n for n in range(first, first + count) if n not in distinct]
        ordered = [n for _, n in sorted(inside)]
        seq.out_of_order = sum(1 for a, b in zip(ordered, ordered[1:]) if b <= a)
    return out


def one_sequence(numbers, count=None, first=1):
    """sequence_analysis of one source's numbers, in the order read (an mqtt.seq header of
    one route, say): expected first .. first+count-1 (count None: up to the highest)."""
    return sequence_analysis((("", n, i) for i, n in enumerate(numbers)),
                             None if count is None else {"": count}, first)[""]


def load_value(value):
    """(client id, n) of a Load payload "<cid>:<n>" (bytes), or None when it is not one."""
    try:
        cid, n = value.decode().rsplit(":", 1)
        return cid, int(n)
    except (ValueError, UnicodeDecodeError):
        return None


def sequence_report(records, published):
    """
    Checks records of a Load against {client id: messages published}: every "<cid>:<n>"
    for n < published[cid] present (else lost), none twice (duplicates), each client's
    records in one partition in increasing n by offset (else out of order). Records of
    unknown clients or beyond what was published count as unexpected. Returns a dict of
    counts plus examples.
    """
    items, unparsed = [], 0
    partitions = {}
    for r in records:
        v = load_value(r.value)
        if v is None:
            unparsed += 1
            continue
        items.append((v[0], v[1], (r.partition, r.offset)))
        if v[0] in published and 0 <= v[1] < published[v[0]]:
            partitions.setdefault(v[0], set()).add(r.partition)
    seqs = sequence_analysis(items, published, first=0)
    lost = duplicates = out_of_order = 0
    unexpected = unparsed
    examples = []
    for cid, seq in seqs.items():
        unexpected += len(seq.unexpected)
        if cid not in published:
            continue
        duplicates += seq.duplicates
        lost += len(seq.missing)
        if seq.missing:
            examples.append(f"{cid}: {len(seq.missing)} lost, e.g. {seq.missing[:5]}")
        parts = partitions.get(cid, set())
        if len(parts) > 1:
            examples.append(f"{cid}: records in partitions {sorted(parts)}")
        out_of_order += seq.out_of_order
        if seq.out_of_order:
            examples.append(f"{cid}: {seq.out_of_order} records out of publish order")
    return {"published": sum(published.values()), "in_kafka": len(records), "lost": lost,
            "duplicates": duplicates, "out_of_order": out_of_order,
            "unexpected": unexpected, "examples": examples[:20]}


def format_report(rep):
    return (f"{rep['published']} published, {rep['in_kafka']} in Kafka, {rep['lost']} lost, "
            f"{rep['duplicates']} duplicates, {rep['out_of_order']} out of order, "
            f"{rep['unexpected']} unexpected")
