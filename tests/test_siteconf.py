import os
import textwrap

import pytest

from flowtools import siteconf
from flowtools.errors import ConfigError, FlowError

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONF = os.path.join(HERE, "..", "etc", "silk.conf")
PACKAGE_CONF = os.path.join(HERE, "..", "flowtools", "data", "silk.conf")
SHARED_CONF = "/work/shared/data/silk/silk.conf"
HOUR_20090212_01 = 1234400400000  # 2009-02-12 01:00 UTC

MINIMAL = """\
version 2
sensor 0 S0
sensor 1 S1
class all
    sensors S0 S1
    type 0 in in
    type 1 out out
    type 2 inweb iw
    default-types in
end class
default-class all
"""


def conf(text):
    return siteconf.parse(textwrap.dedent(text), "test.conf")


def error_of(text):
    with pytest.raises(ConfigError) as info:
        conf(text)
    return str(info.value)


# --- the default configuration ---------------------------------------------------------------

def test_default_config():
    c = siteconf.load(DEFAULT_CONF)
    assert c.version == 2
    assert sorted(c.sensors) == list(range(10))
    assert [c.sensors[i].name for i in range(10)] == [f"S{i}" for i in range(10)]
    assert c.sensors[0].description
    assert c.default_class == "all"
    assert list(c.classes) == ["all"]
    cls = c.classes["all"]
    assert cls.sensors == list(range(10))
    expected = [("in", "in"), ("out", "out"), ("inweb", "iw"), ("outweb", "ow"),
                ("innull", "innull"), ("outnull", "outnull"), ("int2int", "int2int"),
                ("ext2ext", "ext2ext"), ("inicmp", "inicmp"), ("outicmp", "outicmp"),
                ("other", "other")]
    assert cls.types == list(range(11))
    assert [(c.flowtypes[i].type_name, c.flowtypes[i].name) for i in range(11)] == expected
    assert all(c.flowtypes[i].class_name == "all" for i in range(11))
    assert cls.default_types == [0, 2, 8]
    assert c.groups == {"edge": [0, 1, 2, 3, 4]}
    assert c.path_format == "%T/%Y/%m/%d/%x"
    assert c.path == DEFAULT_CONF


def test_package_copy_is_identical():
    with open(DEFAULT_CONF, "rb") as a, open(PACKAGE_CONF, "rb") as b:
        assert a.read() == b.read()


def test_shared_twoway_config():
    if not os.path.exists(SHARED_CONF):
        pytest.skip("shared SiLK data not present")
    c = siteconf.load(SHARED_CONF)
    assert len(c.sensors) == 15
    assert len(c.flowtypes) == 11
    assert c.sensors[2].description == "Optional description for sensor S2"
    assert c.sensors[1].description is None
    assert c.classes["all"].sensors == list(range(15))
    assert c.classes["all"].default_types == [0, 2, 8]
    assert c.packing_logic == "packlogic-twoway.so"


# --- lookups ---------------------------------------------------------------------------------

def test_lookups():
    c = conf(MINIMAL)
    assert c.sensor_id("S1") == 1
    assert c.sensor_id("1") == 1
    assert c.sensor_id(0) == 0
    with pytest.raises(FlowError, match="unknown sensor 'S9'"):
        c.sensor_id("S9")
    with pytest.raises(FlowError, match="unknown sensor '7'"):
        c.sensor_id(7)
    assert c.sensor_name(1) == "S1"
    assert c.sensor_name(99) == "99"
    assert c.flowtype_id("all", "inweb") == 2
    with pytest.raises(FlowError, match="type 'bogus' is not in class 'all'"):
        c.flowtype_id("all", "bogus")
    with pytest.raises(FlowError, match="unknown class 'nope'"):
        c.flowtype_id("nope", "in")
    assert c.flowtype_by_name("iw").id == 2
    with pytest.raises(FlowError, match="unknown flowtype 'zz'"):
        c.flowtype_by_name("zz")


def test_flowtype_name_defaults_to_class_plus_type():
    c = conf("""\
        class ext
            type 4 in
            type 5 out outbound
        end class
        """)
    assert c.flowtypes[4].name == "extin"
    assert c.flowtypes[5].name == "outbound"
    assert c.version == 2
    assert c.default_class is None


def test_class_reopened_and_groups():
    c = conf("""\
        sensor 0 S0
        sensor 1 S1
        sensor 2 S2
        group a
            sensors S0
        end group
        group b
            sensors @a S2
        end group
        group a
            sensors S1
        end group
        class c1
            sensors @b
        end class
        class c1
            sensors S1 S0
            type 0 x
            type 1 y
            default-types y
            default-types x y
        end class
        default-class c1
        """)
    assert c.groups == {"a": [0, 1], "b": [0, 2]}
    assert c.classes["c1"].sensors == [0, 2, 1]
    assert c.classes["c1"].default_types == [1, 0]


def test_comments_and_quoted_strings():
    c = conf(r"""
        # a comment line
        version 2   # trailing comment
        sensor 3 Alpha "has # hash, \"quotes\", tab\t and \101\102"
        sensor 4 Beta ""
        class "all" # quoted class name
        end class
        """)
    assert c.sensors[3].description == 'has # hash, "quotes", tab\t and AB'
    assert c.sensors[4].description == ""
    assert "all" in c.classes


def test_escaped_newline_in_string_keeps_line_numbers():
    text = 'sensor 0 S0 "one\\\ntwo"\nbogus\n'
    with pytest.raises(ConfigError, match=r"^t:3: unknown command 'bogus'$"):
        siteconf.parse(text, "t")
    c = siteconf.parse(text.replace("bogus\n", ""), "t")
    assert c.sensors[0].description == "one\ntwo"


def test_path_format_and_packing_logic_stored():
    c = conf("""\
        path-format "%C/%F/%Y%m%d/%H/%n-%f/%%/%x"
        packing-logic "pack.so"
        """)
    assert c.path_format == "%C/%F/%Y%m%d/%H/%n-%f/%%/%x"
    assert c.packing_logic == "pack.so"
    assert conf('path-format "%x"\n').path_format == "%x"


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, message", [
    ("version 2\nfrobnicate 1\n", 2, "unknown command 'frobnicate'"),
    ("\n\nend frob\n", 3, "unknown command 'end frob'"),
    ("sensor 0 S0\nsensor 0 S1\n", 2, "a sensor with id 0 already exists"),
    ("sensor 0 S0\nsensor 1 S0\n", 2, "a sensor named 'S0' already exists"),
    ("sensor 65535 S0\n", 1, "sensor id 65535 is greater than the maximum of 65534"),
    ("sensor x S0\n", 1, "bad arguments to 'sensor'"),
    ("sensor 1\n", 1, "bad arguments to 'sensor'"),
    ("sensor 1 S1 desc\n", 1, "the description must be quoted"),
    ("sensor 1 1abc\n", 1, "illegal sensor name '1abc'"),
    ("sensor 1 S_1\n", 1, "illegal sensor name 'S_1'"),
    ('sensor 1 "S 1"\n', 1, "illegal sensor name 'S 1'"),
    ("sensor 1 a/b\n", 1, "illegal sensor name 'a/b'"),
    ("sensor 1 " + "a" * 65 + "\n", 1, "longer than 64"),
    ("version 3\n", 1, "unsupported version '3'"),
    ("version 1\nversion 2\n", 2, "conflicting 'version' commands"),
    ('version 1\nsensor 0 S0 "d"\n', 2, "sensor descriptions need 'version 2'"),
    ("class " + "c" * 33 + "\nend class\n", 1, "longer than 32"),
    ("class 9c\nend class\n", 1, "illegal class name '9c'"),
    ("class a/b\nend class\n", 1, "illegal class name 'a/b'"),
    ("class c\ntype 255 x\nend class\n", 2, "type id 255 is greater than the maximum of 254"),
    ("class c\ntype 1 x\nend class\nclass d\ntype 1 y\nend class\n", 5,
     "a type with id 1 already exists"),
    ("class c\ntype 1 x dup\ntype 2 y dup\nend class\n", 3,
     "a flowtype named 'dup' already exists"),
    ("class c\ntype 1 x a\ntype 2 x b\nend class\n", 3, "type 'x' already exists in class 'c'"),
    ("class c\ntype 1 ..\nend class\n", 2, "illegal type name '..'"),
    ("class c\ntype 1 x a/b\nend class\n", 2, "illegal flowtype name 'a/b'"),
    ("sensor 0 S0\nclass c\nsensors S0 S9\nend class\n", 3,
     "cannot add sensor to class 'c': sensor 'S9' is not defined"),
    ("group g\nsensors @h\nend group\n", 2,
     "cannot add group to group 'g': group '@h' is not defined"),
    ("class c\ndefault-types in\nend class\n", 2, "type 'in' is not defined"),
    ("class c\n\n", 1, "class 'c' has no 'end class'"),
    ("\ngroup g\n", 2, "group 'g' has no 'end group'"),
    ("end class\n", 1, "command 'end class' is not allowed at top level"),
    ("class c\nend group\n", 2, "command 'end group' is not allowed inside a class"),
    ("class c\nsensor 0 S0\nend class\n", 2, "command 'sensor' is not allowed inside a class"),
    ("group g\ntype 0 x\nend group\n", 2, "command 'type' is not allowed inside a group"),
    ("sensors S0\n", 1, "command 'sensors' is not allowed at top level"),
    ("class c\nend class extra\n", 2, "'end class' takes no arguments"),
    ("default-class nope\n", 1, "class 'nope' is not defined"),
    ("class c\nend class\ndefault-class c\n", 3, "class 'c' has no types"),
    ('sensor 0 S0 "open\n', 1, "unterminated quoted string"),
    ('sensor 0 S0 "\\8"\n', 1, "invalid octal escape"),
    ('sensor 0 S0 "\\1234"\n', 1, "invalid octal escape"),
    ("sensor 0 S0 $\n", 1, "unexpected character '$'"),
    ('"quoted"\n', 1, "must start with a command name"),
    ('path-format "%T/%Y/%q/%x"\n', 1, "unknown conversion '%q'"),
    ('path-format "%T/%Y/%m/%d"\n', 1, "does not end with '/%x'"),
    ('path-format "%T/%Y/a%x"\n', 1, "does not end with '/%x'"),
    ('path-format "%T/%%x"\n', 1, "does not end with '/%x'"),
    ('path-format "%T/%x%"\n', 1, "ends with a lone '%'"),
    ('path-format ""\n', 1, "does not end with '/%x'"),
    ('path-format "/abs/%x"\n', 1, "would leave the data root"),
    ('path-format "%T/../%x"\n', 1, "would leave the data root"),
    ('path-format "../%x"\n', 1, "would leave the data root"),
])
def test_errors(text, line, message):
    with pytest.raises(ConfigError) as info:
        siteconf.parse(text, "bad.conf")
    text = str(info.value)
    assert text.startswith(f"bad.conf:{line}: ")
    assert message in text
    assert "\n" not in text


def test_unreadable_file(tmp_path):
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError, match=r"^cannot read site configuration .*nope\.conf: "):
        siteconf.load(str(missing))


def test_include_relative_to_including_file(tmp_path):
    sub = tmp_path / "sub"
    (sub / "deeper").mkdir(parents=True)
    (tmp_path / "top.conf").write_text('sensor 0 S0\ninclude "sub/mid.conf"\nsensor 9 S9\n')
    (sub / "mid.conf").write_text('include "deeper/leaf.conf"\nsensor 1 S1\n')
    (sub / "deeper" / "leaf.conf").write_text("sensor 2 S2\n")
    c = siteconf.load(str(tmp_path / "top.conf"))
    assert [c.sensors[i].name for i in sorted(c.sensors)] == ["S0", "S1", "S2", "S9"]
    assert c.path == str(tmp_path / "top.conf")


def test_errors_in_included_file_name_that_file(tmp_path):
    (tmp_path / "top.conf").write_text('\ninclude "inc.conf"\n')
    (tmp_path / "inc.conf").write_text("sensor 0 S0\nsensor 0 S1\n")
    with pytest.raises(ConfigError) as info:
        siteconf.load(str(tmp_path / "top.conf"))
    assert str(info.value).startswith(f"{tmp_path / 'inc.conf'}:2: a sensor with id 0")


def test_block_may_span_include(tmp_path):
    (tmp_path / "top.conf").write_text('class c\ntype 0 t\ninclude "x"\n')
    (tmp_path / "x").write_text("end class\n")
    with pytest.raises(ConfigError, match="'include' is not allowed inside a class"):
        siteconf.load(str(tmp_path / "top.conf"))


def test_include_loop(tmp_path):
    (tmp_path / "a.conf").write_text('sensor 0 S0\ninclude "b.conf"\n')
    (tmp_path / "b.conf").write_text('\n\ninclude "a.conf"\n')
    with pytest.raises(ConfigError) as info:
        siteconf.load(str(tmp_path / "a.conf"))
    assert str(info.value).startswith(f"{tmp_path / 'b.conf'}:3: include loop")


def test_self_include(tmp_path):
    (tmp_path / "a.conf").write_text('include "a.conf"\n')
    with pytest.raises(ConfigError, match=r"a\.conf:1: include loop"):
        siteconf.load(str(tmp_path / "a.conf"))


def test_unreadable_include(tmp_path):
    (tmp_path / "a.conf").write_text('sensor 0 S0\ninclude "missing.conf"\n')
    with pytest.raises(ConfigError) as info:
        siteconf.load(str(tmp_path / "a.conf"))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'a.conf'}:2: cannot include ")
    assert "missing.conf" in message


# --- paths -----------------------------------------------------------------------------------

def test_path_for_default_format():
    c = siteconf.load(DEFAULT_CONF)
    assert c.path_for("/data", 2, 0, HOUR_20090212_01) == \
        "/data/inweb/2009/02/12/iw-S0_20090212.01"
    assert c.path_for("root", 0, 9, HOUR_20090212_01 + 22 * 3600_000) == \
        "root/in/2009/02/12/in-S9_20090212.23"


def test_path_for_custom_format():
    c = conf(MINIMAL + 'path-format "%C/%F-%f/%N-%n/%Y/%m/%d/%H/%%/%x"\n')
    assert c.path_for("/r", 2, 1, HOUR_20090212_01) == \
        "/r/all/iw-2/S1-1/2009/02/12/01/%/iw-S1_20090212.01"
    assert conf(MINIMAL + 'path-format "%x"\n').path_for("/r", 0, 0, 0) == \
        "/r/in-S0_19700101.00"


def test_path_for_unknown_ids():
    c = conf(MINIMAL)
    with pytest.raises(FlowError, match="unknown flowtype id 9"):
        c.path_for("/r", 9, 0, 0)
    with pytest.raises(FlowError, match="unknown sensor '9'"):
        c.path_for("/r", 0, 9, 0)


def test_path_for_never_leaves_root():
    c = conf(MINIMAL)
    # Bypass validation as a hand-built config could.
    c.flowtypes[0].type_name = ".."
    with pytest.raises(FlowError, match="escapes the data root"):
        c.path_for("/r", 0, 0, 0)
    c.path_format = "%T/../../%x"
    with pytest.raises(FlowError, match="escapes the data root"):
        c.path_for("/r", 1, 0, 0)


def test_parse_path_round_trip():
    c = siteconf.load(DEFAULT_CONF)
    for ft_id in c.flowtypes:
        for sensor_id in c.sensors:
            for hour_ms in (0, HOUR_20090212_01, 2147482800000):
                path = c.path_for("/data", ft_id, sensor_id, hour_ms)
                assert c.parse_path(path) == (ft_id, sensor_id, hour_ms)
    assert c.parse_path("iw-S0_20090212.01") == (2, 0, HOUR_20090212_01)
    assert c.parse_path("iw-S0_20090212.01.gz") == (2, 0, HOUR_20090212_01)


def test_parse_path_hyphenated_flowtype():
    c = conf("""\
        sensor 0 S-0
        class a
            sensors S-0
            type 0 x in
            type 1 y in-web
        end class
        """)
    assert c.parse_path("in-web-S-0_20090212.01") == (1, 0, HOUR_20090212_01)
    assert c.parse_path("in-S-0_20090212.01") == (0, 0, HOUR_20090212_01)


@pytest.mark.parametrize("name", [
    "", "junk", "zz-S0_20090212.01", "iw-S99_20090212.01", "iw-S0_20090212", "iw-S0_2009021.01",
    "iw-S0_20090230.01", "iw-S0_20090212.24", "iw-S0-20090212.01", "iw_S0_20090212.01",
])
def test_parse_path_rejects(name):
    assert siteconf.load(DEFAULT_CONF).parse_path(name) is None


# --- finding the file ------------------------------------------------------------------------

def test_find_config_path_order(tmp_path):
    a, b, c, root = (tmp_path / "a.conf", tmp_path / "b.conf", tmp_path / "c.conf",
                     tmp_path / "root")
    root.mkdir()
    for p in (a, b, c, root / "silk.conf"):
        p.write_text("")
    env = {"PYFLOW_CONFIG_FILE": str(a), "SILK_CONFIG_FILE": str(b),
           "PYFLOW_DATA_ROOTDIR": str(root), "SILK_DATA_ROOTDIR": str(tmp_path)}
    find = siteconf.find_config_path
    assert find(str(c), env=env) == str(c)
    assert find(env=env) == str(a)
    del env["PYFLOW_CONFIG_FILE"]
    assert find(env=env) == str(b)
    del env["SILK_CONFIG_FILE"]
    assert find(env=env) == str(root / "silk.conf")
    assert find(data_rootdir=str(tmp_path / "elsewhere"), env=env) == \
        os.path.normpath(DEFAULT_CONF)
    del env["PYFLOW_DATA_ROOTDIR"]
    (tmp_path / "silk.conf").write_text("")
    assert find(env=env) == str(tmp_path / "silk.conf")
    assert find(env={}) == os.path.normpath(DEFAULT_CONF)


def test_find_config_path_missing_explicit(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        siteconf.find_config_path(str(tmp_path / "none.conf"), env={})
    with pytest.raises(ConfigError, match=r"\$SILK_CONFIG_FILE"):
        siteconf.find_config_path(env={"SILK_CONFIG_FILE": str(tmp_path / "none.conf")})


def test_find_config_path_uses_os_environ(monkeypatch, tmp_path):
    target = tmp_path / "x.conf"
    target.write_text("")
    monkeypatch.setenv("PYFLOW_CONFIG_FILE", str(target))
    assert siteconf.find_config_path() == str(target)
