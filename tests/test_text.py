import ipaddress

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from flowtools.text import from_strings, ipv6_strings, ipv6_text

# words drawn mostly from 0 and a few values, so that zero runs of every length occur
_word = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x20, 0xABCD])
_address = st.lists(_word, min_size=8, max_size=8).map(
    lambda w: sum(v << (16 * (7 - k)) for k, v in enumerate(w)))


@settings(max_examples=200, deadline=None)
@given(st.lists(_address, min_size=1, max_size=40),
       st.sampled_from(["canonical", "no-mixed", "zero-padded"]))
def test_vectorised_ipv6_text_equals_the_per_address_text(values, style):
    hi = np.array([v >> 64 for v in values], np.uint64)
    lo = np.array([v & (2**64 - 1) for v in values], np.uint64)
    got = [s.decode() for s in ipv6_strings(hi, lo, style)]
    assert got == [ipv6_text(v >> 64, v & (2**64 - 1), style) for v in values]
    if style == "no-mixed":
        assert got == [ipaddress.IPv6Address(v).compressed for v in values]


def test_bytes_tables_right_align():
    table, lens = from_strings(np.array([b"::1", b"a:b::c"]), np.array([1, 0, 1]), 5)
    assert [bytes(r).decode() for r in table] == ["a:b::c", "   ::1", "a:b::c"]
    assert list(lens) == [6, 3, 6]
