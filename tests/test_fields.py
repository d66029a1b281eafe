import numpy as np
import pytest
from conftest import random_batch

from flowtools import fields
from flowtools.errors import FlowError


def names(text):
    return [f.name for f in fields.parse_list(text)]


def test_default_cut_fields_are_silks_first_twelve():
    assert names(fields.DEFAULT_CUT) == ["sIP", "dIP", "sPort", "dPort", "protocol", "packets",
                                         "bytes", "flags", "sTime", "duration", "eTime",
                                         "sensor"]


def test_names_aliases_numbers_prefixes_and_case():
    assert names("SIP,pkts,dur,25,proto,initial,sess,ityp") == [
        "sIP", "packets", "duration", "icmpTypeCode", "protocol", "initialFlags",
        "sessionFlags", "iType"]
    assert names("20-22") == ["class", "type", "sTime+msec"]


@pytest.mark.parametrize("bad", ["bogus", "s", "", "1,,2", "30", "5-3", "16-17"])
def test_bad_field_lists(bad):
    with pytest.raises(FlowError):
        fields.parse_list(bad)


def test_derived_values(rng):
    b = random_batch(rng, 1000)
    b["protocol"][:500] = 1
    b["protocol"][500:] = 6
    f = fields.find("iType")
    assert (f.values(b)[:500] == b["dport"][:500] >> 8).all()
    assert (f.values(b)[500:] == 0).all()
    et = fields.find("etime").values(b)
    assert (et - b["stime"] == b["duration"]).all()


def test_sort_order_is_stable_and_multi_key(rng):
    b = random_batch(rng, 2000)
    b["protocol"] = rng.integers(0, 3, 2000).astype(np.uint8)
    order = fields.sort_order(b, fields.parse_list("proto,sport"))
    keys = list(zip(b["protocol"][order], b["sport"][order], order, strict=True))
    assert keys == sorted(keys)


def test_help_lists_every_field():
    text = fields.help_text()
    for f in fields.FIELDS:
        assert f"\t{f.name}" in text
