"""Fuzzing the decoders with the captured datagrams as seeds: whatever the bytes, decoding
either succeeds or raises BadDatagram, and never allocates beyond the datagram's size."""

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_collect import groups, packets_dir

from flowtools import schema
from flowtools.collect import BadDatagram, ipfix, v5


def _seeds():
    out = []
    for names in groups().values():
        out.append([open(os.path.join(packets_dir(), n), "rb").read() for n in names])
    return out


SEEDS = None


def seeds():
    global SEEDS
    if SEEDS is None:
        SEEDS = _seeds()
    return SEEDS


def decode_all(datagrams):
    store = ipfix.TemplateStore()
    records = 0
    for d in datagrams:
        try:
            if d[:2] == b"\x00\x05":
                if v5.check(d) is None:
                    records += schema.nrecords(v5.decode_many([d])[1])
                continue
            b = ipfix.decode(d, "fuzz", store).batch()
        except BadDatagram:
            continue
        if b is not None:
            n = schema.nrecords(b)
            # a record takes at least one byte of the datagram (two with a biflow)
            assert n <= 2 * len(d)
            for col in b.values():
                assert len(col) == n
            records += n
    return records


@st.composite
def mutated(draw):
    group = draw(st.sampled_from(seeds()))
    out = []
    for d in group:
        d = bytearray(d)
        for _ in range(draw(st.integers(0, 6))):
            if not d:
                break
            at = draw(st.integers(0, len(d) - 1))
            op = draw(st.sampled_from(["flip", "byte", "cut", "dup", "zero16"]))
            if op == "flip":
                d[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "byte":
                d[at] = draw(st.integers(0, 255))
            elif op == "cut":
                del d[at:]
            elif op == "dup":
                d[at:at] = d[at:at + draw(st.integers(1, 64))]
            else:
                d[at:at + 2] = draw(st.sampled_from([b"\x00\x00", b"\xff\xff", b"\x00\x04"]))
        out.append(bytes(d))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_captures_never_crash(datagrams):
    decode_all(datagrams)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), max_size=4),
       st.sampled_from([b"\x00\x05", b"\x00\x09", b"\x00\x0a"]))
def test_random_bytes_behind_a_version_never_crash(bodies, version):
    decode_all([version + b for b in bodies])


def test_many_v5_datagrams_decode_like_one_each():
    d = open(os.path.join(packets_dir(), "netflow5_test_microtik.dat"), "rb").read()
    head, b = v5.decode_many([d] * 50)
    assert schema.nrecords(b) == 50 * 30 and (head["count"] == 30).all()
    one = v5.decode_many([d])[1]
    np.testing.assert_array_equal(b["sip"][-30:], one["sip"])
