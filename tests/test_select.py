import os
import textwrap

import pytest

from flowtools import siteconf
from flowtools.dates import hours_for
from flowtools.errors import FlowError
from flowtools.select import (
    parse_classes,
    parse_flowtypes,
    parse_sensor_list,
    parse_types,
    select_files,
)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONF = os.path.join(HERE, "..", "etc", "silk.conf")
H0 = 1234396800_000  # 2009-02-12 00:00 UTC
HOUR = 3600_000

TWO_CLASSES = """\
sensor 0 S0
sensor 1 S1
sensor 2 S2
group g
    sensors S2 S0
end group
class a
    sensors S0 S1 S2
    type 0 in
    type 1 out
    type 2 x
    default-types out in
end class
class b
    sensors S1
    type 3 in
    type 4 y
    default-types y
end class
default-class a
"""


@pytest.fixture
def conf():
    return siteconf.load(DEFAULT_CONF)


@pytest.fixture
def two():
    return siteconf.parse(textwrap.dedent(TWO_CLASSES), "two.conf")


def names(results):
    return [os.path.basename(path) for path, _ in results]


def test_silk_file_order(conf, tmp_path):
    hours = hours_for("2009/02/12:00", "2009/02/12:01")
    got = list(select_files(conf, str(tmp_path), hours, sensors=[0, 1],
                            types=["in", "out"]))
    assert names(got) == [
        "in-S0_20090212.00", "in-S1_20090212.00", "out-S0_20090212.00", "out-S1_20090212.00",
        "in-S0_20090212.01", "in-S1_20090212.01", "out-S0_20090212.01", "out-S1_20090212.01",
    ]
    assert got[0][0] == str(tmp_path / "in/2009/02/12/in-S0_20090212.00")
    assert not any(exists for _, exists in got)


def test_existing_and_missing_files(conf, tmp_path):
    # rwfilter --start-date=2009/02/12 --sensors=S0,S1: the first missing files are inicmp.
    for hour in range(24):
        for sensor in ("S0", "S1"):
            for directory, ft in (("in", "in"), ("inweb", "iw")):
                path = tmp_path / directory / "2009/02/12" / f"{ft}-{sensor}_20090212.{hour:02d}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
    got = list(select_files(conf, str(tmp_path), hours_for("2009/02/12"),
                            sensors=parse_sensor_list(conf, "S0,S1")))
    assert len(got) == 24 * 3 * 2
    missing = [path for path, exists in got if not exists]
    assert missing[:2] == [str(tmp_path / "inicmp/2009/02/12/inicmp-S0_20090212.00"),
                           str(tmp_path / "inicmp/2009/02/12/inicmp-S1_20090212.00")]
    assert len(missing) == 48
    assert sum(exists for _, exists in got) == 96
    assert names(got[:6]) == ["in-S0_20090212.00", "in-S1_20090212.00", "iw-S0_20090212.00",
                              "iw-S1_20090212.00", "inicmp-S0_20090212.00",
                              "inicmp-S1_20090212.00"]


def test_gzipped_file_is_found(conf, tmp_path):
    path = tmp_path / "in/2009/02/12/in-S0_20090212.00.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    got = list(select_files(conf, str(tmp_path), [H0], sensors=[0], types=["in"]))
    assert got == [(str(path), True)]


def test_defaults_are_default_class_and_types(conf):
    got = list(select_files(conf, "/r", [H0]))
    assert len(got) == 3 * 10
    assert names(got[:2]) == ["in-S0_20090212.00", "in-S1_20090212.00"]
    assert names(got[10:11]) == ["iw-S0_20090212.00"]
    assert names(got[20:21]) == ["inicmp-S0_20090212.00"]


def test_all_types(conf):
    got = list(select_files(conf, "/r", [H0], sensors=[3], types=["all"]))
    assert names(got) == [f"{conf.flowtypes[i].name}-S3_20090212.00" for i in range(11)]


def test_no_hours_no_files(conf):
    assert list(select_files(conf, "/r", [])) == []


def test_sensors_are_intersected_with_each_class(two):
    got = list(select_files(two, "/r", [H0], flowtypes=["a/in", "b/all"], sensors=["S0", 1]))
    assert names(got) == ["ain-S0_20090212.00", "ain-S1_20090212.00", "bin-S1_20090212.00",
                          "by-S1_20090212.00"]
    # the sensors' order is the caller's
    got = list(select_files(two, "/r", [H0], types=["in"], sensors=[2, 0]))
    assert names(got) == ["ain-S2_20090212.00", "ain-S0_20090212.00"]
    # a sensor in none of the classes selects nothing
    assert list(select_files(two, "/r", [H0], classes=["b"], sensors=[0])) == []


def test_class_and_type_defaults(two):
    assert _flowtypes(select_files(two, "/r", [H0])) == ["aout", "ain"]
    assert _flowtypes(select_files(two, "/r", [H0], classes=["b"])) == ["by"]
    assert _flowtypes(select_files(two, "/r", [H0], classes=["a", "b"], types=["in"])) == \
        ["ain", "bin"]
    assert _flowtypes(select_files(two, "/r", [H0], classes=["b", "a"], types=["all"])) == \
        ["bin", "by", "ain", "aout", "ax"]
    assert _flowtypes(select_files(two, "/r", [H0, H0 + HOUR], classes=["all"],
                                   types=["in"])) == ["ain", "bin", "ain", "bin"]


def _flowtypes(results):
    """Flowtype names in file order, runs of one flowtype (its sensors) collapsed."""
    out = []
    for path, _ in results:
        ft = os.path.basename(path).split("-")[0]
        if not out or out[-1] != ft:
            out.append(ft)
    return out


def test_flowtypes_with_classes_is_an_error(two):
    with pytest.raises(FlowError, match="cannot be combined"):
        list(select_files(two, "/r", [H0], flowtypes=["a/in"], classes=["a"]))


def test_no_default_class():
    c = siteconf.parse("sensor 0 S0\nclass a\nsensors S0\ntype 0 t\nend class\n")
    with pytest.raises(FlowError, match="default-class"):
        list(select_files(c, "/r", [H0]))
    assert len(list(select_files(c, "/r", [H0], classes=["a"], types=["t"]))) == 1


# --- parsing the switches --------------------------------------------------------------------

def test_parse_sensor_list(conf):
    assert parse_sensor_list(conf, "S0") == [0]
    assert parse_sensor_list(conf, "S3, 1,S3") == [3, 1]
    assert parse_sensor_list(conf, "7-9,2-3") == [7, 8, 9, 2, 3]
    assert parse_sensor_list(conf, "S9,@edge") == [9, 0, 1, 2, 3, 4]
    assert parse_sensor_list(conf, "8-20") == [8, 9]


def test_parse_sensor_list_hyphenated_name():
    c = siteconf.parse("sensor 0 S-0\nsensor 1 S1\n")
    assert parse_sensor_list(c, "S-0,1") == [0, 1]


@pytest.mark.parametrize("text, bad", [
    ("S0,S99", "unknown sensor 'S99'"),
    ("10", "unknown sensor '10'"),
    ("5-3", "unknown sensor '5-3'"),
    ("20-30", "unknown sensor '20-30'"),
    ("a-b", "unknown sensor 'a-b'"),
    ("@nope", "unknown sensor group '@nope'"),
    ("", "empty sensor list"),
    (",", "empty sensor list"),
])
def test_parse_sensor_list_errors(conf, text, bad):
    with pytest.raises(FlowError) as info:
        parse_sensor_list(conf, text)
    assert bad in str(info.value)


def test_parse_flowtypes(conf, two):
    assert parse_flowtypes(conf, "all/in,all/inweb") == [0, 2]
    assert parse_flowtypes(conf, "all/all") == list(range(11))
    assert parse_flowtypes(two, "all/in") == [0, 3]
    assert parse_flowtypes(two, "all/all") == [0, 1, 2, 3, 4]
    assert parse_flowtypes(two, "b/all,a/x,b/in") == [3, 4, 2]
    assert parse_flowtypes(two, "all/y") == [4]


@pytest.mark.parametrize("text, bad", [
    ("a/zz", "type 'zz' is not in class 'a'"),
    ("c/in", "unknown class 'c'"),
    ("c/all", "unknown class 'c'"),
    ("all/zz", "type 'zz' is not in any class"),
    ("ain", "not of the form class/type"),
])
def test_parse_flowtypes_errors(two, text, bad):
    with pytest.raises(FlowError) as info:
        parse_flowtypes(two, text)
    assert bad in str(info.value)


def test_parse_classes_and_types(two):
    assert parse_classes(two, "b") == ["b"]
    assert parse_classes(two, "b,a,b") == ["b", "a"]
    assert parse_classes(two, "all") == ["a", "b"]
    with pytest.raises(FlowError, match="unknown class 'zz'"):
        parse_classes(two, "a,zz")
    assert parse_types(two, "x,in") == [2, 0]
    assert parse_types(two, "all") == [0, 1, 2]
    assert parse_types(two, "in", ["a", "b"]) == [0, 3]
    assert parse_types(two, "y", ["a", "b"]) == [4]
    with pytest.raises(FlowError, match="type 'y' is not in class 'a'"):
        parse_types(two, "in,y")
    with pytest.raises(FlowError, match="type 'zz' is not in class 'a,b'"):
        parse_types(two, "zz", ["a", "b"])


def test_parsed_values_feed_select_files(two):
    classes = parse_classes(two, "a,b")
    types = parse_types(two, "in", classes)
    sensors = parse_sensor_list(two, "@g")
    got = list(select_files(two, "/r", [H0], classes=classes, types=types, sensors=sensors))
    assert names(got) == ["ain-S2_20090212.00", "ain-S0_20090212.00"]
