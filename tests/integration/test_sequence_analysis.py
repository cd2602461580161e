"""
test_sequence_analysis.py - the harness's own sequence analysis (records.py), which every test
of "nothing lost, nothing twice, in order" relies on: it must see each kind of fault, and
count it exactly. No process runs here: the records are made up.

  - a clean Load (3 clients, each in one partition, in publish order): all counts 0;
  - one record lost, one twice, two swapped, one of an unknown client, one beyond what was
    published, one not a Load payload: each counted where it belongs, once;
  - an mqtt.seq of one route (one_sequence): gaps, repeats and numbers outside 1..N;
  - expected unknown: each source is expected to run from `first` to its highest number.
"""

import harness


class Fake:
    """What sequence_report reads of a harness.Record."""

    def __init__(self, value, partition, offset):
        self.value, self.partition, self.offset = value, partition, offset


def load_records(published, partition_of):
    """The records a perfect run of Load gives: per client, its payloads in publish order,
    at increasing offsets of the client's partition."""
    out, offsets = [], {}
    for cid, n in published.items():
        p = partition_of[cid]
        for i in range(n):
            offsets[p] = offsets.get(p, -1) + 1
            out.append(Fake(f"{cid}:{i}".encode(), p, offsets[p]))
    return out


PUBLISHED = {"a": 50, "b": 40, "c": 30}
PARTITION = {"a": 0, "b": 1, "c": 0}


def test_a_clean_run_counts_nothing():
    recs = load_records(PUBLISHED, PARTITION)
    rep = harness.sequence_report(recs, PUBLISHED)
    print(harness.format_report(rep))
    assert rep == {"published": 120, "in_kafka": 120, "lost": 0, "duplicates": 0,
                   "out_of_order": 0, "unexpected": 0, "examples": []}


def test_each_fault_is_counted_once():
    recs = load_records(PUBLISHED, PARTITION)
    by_value = {r.value: r for r in recs}
    recs.remove(by_value[b"a:7"])                                  # lost
    dup = by_value[b"b:3"]
    recs.append(Fake(dup.value, dup.partition, 1000))              # twice, much later
    x, y = by_value[b"c:10"], by_value[b"c:11"]
    x.offset, y.offset = y.offset, x.offset                        # swapped
    recs.append(Fake(b"zz:0", 2, 0))                               # an unknown client
    recs.append(Fake(b"a:50", 0, 1001))                            # beyond what a published
    recs.append(Fake(b"\xffnot a load payload", 3, 0))             # not a Load payload
    rep = harness.sequence_report(recs, PUBLISHED)
    print(harness.format_report(rep))
    for line in rep["examples"]:
        print("  " + line)
    # The repeat read 1,000 offsets later is also one neighbour whose number goes down.
    assert (rep["in_kafka"], rep["lost"], rep["duplicates"], rep["out_of_order"],
            rep["unexpected"]) == (123, 1, 1, 2, 3), rep
    assert "a: 1 lost, e.g. [7]" in rep["examples"], rep["examples"]


def test_a_client_in_two_partitions_is_an_example():
    recs = load_records({"a": 4}, {"a": 0})
    recs[2].partition = 1
    rep = harness.sequence_report(recs, {"a": 4})
    print(rep)
    assert "a: records in partitions [0, 1]" in rep["examples"], rep["examples"]


def test_one_sequence_of_mqtt_seq():
    seq = harness.one_sequence([1, 2, 3, 3, 5, 4, 7, 0, 9], 7)
    print(seq)
    assert seq.received == 9
    assert seq.missing == [6]
    assert seq.duplicates == 1
    assert seq.unexpected == [0, 9]
    # In the order read, without the unexpected: 1 2 3 3 5 4 7 -> 3<=3 and 4<=5.
    assert seq.out_of_order == 2
    assert not seq.ok()
    assert harness.one_sequence([3, 1, 2], 3).ok() is False
    assert harness.one_sequence([1, 2, 3], 3).ok() is True


def test_without_expected_counts_run_to_the_highest():
    items = [("p0", 0, 0), ("p0", 2, 1), ("p1", 1, 0), ("p1", 0, 1)]
    got = harness.sequence_analysis(items)
    print(got)
    assert (got["p0"].missing, got["p0"].out_of_order) == ([1], 0)
    assert (got["p1"].missing, got["p1"].out_of_order) == ([], 1)
    # An expected source of which nothing came: everything missing.
    got = harness.sequence_analysis(items, {"p0": 3, "p1": 2, "p2": 2})
    assert got["p2"].missing == [0, 1] and got["p2"].received == 0
