"""The site configuration (SiLK's silk.conf): sensors, classes, types and the archive layout.

The file syntax is SiLK's, so an existing silk.conf can be used unchanged. Parsing stops at
the first problem with ``ConfigError("FILE:LINE: message")``.
"""

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .errors import ConfigError, FlowError

MAX_SENSOR_ID = 65534
MAX_FLOWTYPE_ID = 254
MAX_SENSOR_NAME = 64
MAX_FLOWTYPE_NAME = 32  # also the limit for class and type names
MAX_INCLUDE_DEPTH = 16
DEFAULT_PATH_FORMAT = "%T/%Y/%m/%d/%x"
PATH_CONVERSIONS = "CTFfNnYmdHx%"

_ATOM_CHARS = frozenset("-._/@abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_DIGITS = "0123456789"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_FILE_NAME = re.compile(r"([^_]+)_(\d{4})(\d{2})(\d{2})\.(\d{2})(\..*)?\Z")


@dataclass
class Sensor:
    id: int
    name: str
    description: str | None = None


@dataclass
class Class:
    name: str
    sensors: list = field(default_factory=list)        # sensor ids
    types: list = field(default_factory=list)          # flowtype ids, in definition order
    default_types: list = field(default_factory=list)  # flowtype ids


@dataclass
class Flowtype:
    id: int
    class_name: str
    type_name: str
    name: str


@dataclass
class SiteConfig:
    sensors: dict = field(default_factory=dict)    # id -> Sensor
    classes: dict = field(default_factory=dict)    # name -> Class
    flowtypes: dict = field(default_factory=dict)  # id -> Flowtype
    groups: dict = field(default_factory=dict)     # name -> list of sensor ids
    default_class: str | None = None
    path_format: str = DEFAULT_PATH_FORMAT
    packing_logic: str | None = None
    version: int = 2
    path: str = "<string>"

    def sensor_id(self, name_or_id):
        """The id of a sensor given by name or by (decimal) id."""
        for sensor in self.sensors.values():
            if sensor.name == name_or_id:
                return sensor.id
        text = str(name_or_id).strip()
        if text.isascii() and text.isdigit() and int(text) in self.sensors:
            return int(text)
        raise FlowError(f"unknown sensor '{name_or_id}'")

    def sensor_name(self, sensor_id):
        sensor = self.sensors.get(sensor_id)
        return sensor.name if sensor else str(sensor_id)

    def flowtype_id(self, class_name, type_name):
        cls = self.classes.get(class_name)
        if cls is None:
            raise FlowError(f"unknown class '{class_name}'")
        for ft_id in cls.types:
            if self.flowtypes[ft_id].type_name == type_name:
                return ft_id
        raise FlowError(f"type '{type_name}' is not in class '{class_name}'")

    def flowtype_by_name(self, name):
        """The Flowtype whose flowtype name (the one in file names, e.g. ``iw``) is `name`."""
        for ft in self.flowtypes.values():
            if ft.name == name:
                return ft
        raise FlowError(f"unknown flowtype '{name}'")

    def path_for(self, root, flowtype_id, sensor_id, hour_ms):
        """The archive file for one flowtype, sensor and hour (epoch ms of the hour, UTC)."""
        ft = self.flowtypes.get(flowtype_id)
        if ft is None:
            raise FlowError(f"unknown flowtype id {flowtype_id}")
        if sensor_id not in self.sensors:
            raise FlowError(f"unknown sensor '{sensor_id}'")
        when = datetime.fromtimestamp(hour_ms // 1000, tz=UTC)
        sensor = self.sensors[sensor_id].name
        values = {
            "C": ft.class_name, "T": ft.type_name, "F": ft.name, "f": str(ft.id),
            "N": sensor, "n": str(sensor_id), "Y": f"{when.year:04d}",
            "m": f"{when.month:02d}", "d": f"{when.day:02d}", "H": f"{when.hour:02d}",
            "x": f"{ft.name}-{sensor}_{when:%Y%m%d}.{when.hour:02d}", "%": "%",
        }
        rel = "".join(values[piece[1]] if piece.startswith("%") else piece
                      for piece in _split_format(self.path_format))
        # Names are validated when parsed, so this only trips on a bug or a hand-built config;
        # either way a file outside the data root must never be read or written.
        norm = os.path.normpath(rel)
        if os.path.isabs(rel) or norm in (".", os.pardir) or norm.startswith(os.pardir + os.sep):
            raise FlowError(f"archive path '{rel}' escapes the data root '{root}'")
        return os.path.join(root, rel)

    def parse_path(self, relpath):
        """(flowtype_id, sensor_id, hour_ms) of a file named ``FLOWTYPE-SENSOR_YYYYMMDD.HH``
        (anything after a further '.' is ignored), or None when the name is not of that form
        or names an unknown flowtype or sensor."""
        name = os.path.basename(relpath)
        by_name = {ft.name: ft.id for ft in self.flowtypes.values()}
        sensors = {s.name: s.id for s in self.sensors.values()}
        # Flowtype and sensor names may contain '-', so try every '-' as the separator.
        for pos in (m.start() for m in re.finditer("-", name)):
            ft_id = by_name.get(name[:pos])
            if ft_id is None:
                continue
            match = _FILE_NAME.match(name, pos + 1)
            if not match or match.group(1) not in sensors:
                continue
            year, month, day, hour = (int(g) for g in match.group(2, 3, 4, 5))
            try:
                when = datetime(year, month, day, hour, tzinfo=UTC)
            except ValueError:
                return None
            return ft_id, sensors[match.group(1)], int(when.timestamp()) * 1000
        return None


def load(path):
    """Read and parse the silk.conf at `path`."""
    return _Parser().run(path, _read(path, None, 0))


def parse(text, path="<string>"):
    """Parse silk.conf text; `path` is used in messages and to resolve ``include``."""
    return _Parser().run(path, text)


def find_config_path(site_config_file=None, data_rootdir=None, env=None):
    """Where the site configuration is, in SiLK's search order, or None when there is none.

    An explicitly named file (argument or $PYFLOW_CONFIG_FILE / $SILK_CONFIG_FILE) must exist.
    """
    env = os.environ if env is None else env
    if site_config_file:
        return _must_exist(site_config_file, "--site-config-file")
    for var in ("PYFLOW_CONFIG_FILE", "SILK_CONFIG_FILE"):
        if env.get(var):
            return _must_exist(env[var], f"${var}")
    root = data_rootdir or env.get("PYFLOW_DATA_ROOTDIR") or env.get("SILK_DATA_ROOTDIR")
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(root, "silk.conf")] if root else []
    candidates += [os.path.normpath(os.path.join(here, "..", "etc", "silk.conf")),
                   os.path.join(here, "data", "silk.conf")]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return None


def _must_exist(path, what):
    if not os.path.isfile(path):
        raise ConfigError(f"site configuration file '{path}' (from {what}) does not exist")
    return path


def _read(path, where, lineno):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if where is None:
            raise ConfigError(f"cannot read site configuration {path}: {reason}") from None
        raise ConfigError(f"{where}:{lineno}: cannot include '{path}': {reason}") from None


def _split_format(fmt):
    """Literal text and two-character ``%X`` pieces; assumes a validated format."""
    return [p for p in re.split(r"(%.)", fmt, flags=re.S) if p]


def _check_path_format(fmt):
    """The problem with a path-format, or None."""
    if re.search(r"(?<!%)(%%)*%\Z", fmt):
        return f"path-format '{fmt}' ends with a lone '%'"
    pieces = _split_format(fmt)
    for piece in pieces:
        if piece.startswith("%") and piece[1] not in PATH_CONVERSIONS:
            return f"path-format '{fmt}' has unknown conversion '{piece}'"
    if pieces[-1:] != ["%x"] or (len(pieces) > 1 and not pieces[-2].endswith("/")):
        return f"path-format '{fmt}' does not end with '/%x'"
    if fmt.startswith("/") or ".." in fmt.split("/"):
        return f"path-format '{fmt}' would leave the data root"
    return None


def _tokenize(text):
    """Yield (lineno, tokens) per command; a token is (quoted, value).

    Raises _LexError(lineno, message)."""
    i, n, line = 0, len(text), 1
    tokens, start = [], 1
    while i < n:
        c = text[i]
        if c == "\n":
            if tokens:
                yield start, tokens
                tokens = []
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == '"':
            if not tokens:
                start = line
            value, i, line = _read_string(text, i + 1, line)
            tokens.append((True, value))
        elif c in _ATOM_CHARS:
            j = i
            while j < n and text[j] in _ATOM_CHARS:
                j += 1
            if not tokens:
                start = line
            tokens.append((False, text[i:j]))
            i = j
        else:
            raise _LexError(line, f"unexpected character {c!r}")
    if tokens:
        yield start, tokens


def _read_string(text, i, line):
    """Parse a C-like quoted string body starting at i; return (value, next_i, line)."""
    out, n, first = [], len(text), line
    while True:
        if i >= n or text[i] == "\n":
            raise _LexError(first, "unterminated quoted string")
        c = text[i]
        if c == '"':
            return "".join(out), i + 1, line
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            raise _LexError(first, "unterminated quoted string")
        nxt = text[i + 1]
        if nxt in _DIGITS:
            # Like SiLK's lexer: a run of more than three digits, or an 8 or 9, is not octal.
            j = i + 1
            while j < n and text[j] in _DIGITS:
                j += 1
            digits = text[i + 1:j]
            if len(digits) > 3 or not set(digits) <= set("01234567") or int(digits, 8) > 0xFF:
                raise _LexError(first, f"invalid octal escape '\\{digits}'")
            out.append(chr(int(digits, 8)))
            i = j
            continue
        if nxt == "\n":
            line += 1
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2


class _LexError(Exception):
    def __init__(self, lineno, message):
        super().__init__(message)
        self.lineno = lineno


_TOP = {"version", "sensor", "class", "default-class", "group", "path-format",
        "packing-logic", "include"}
_CONTEXT_NAMES = {None: "at top level", "class": "inside a class", "group": "inside a group"}
_ALLOWED = {None: _TOP, "class": {"sensors", "type", "default-types", "end class"},
            "group": {"sensors", "end group"}}
_KNOWN = _TOP | _ALLOWED["class"] | _ALLOWED["group"]


class _Parser:
    def __init__(self):
        self.conf = SiteConfig()
        self.version = None          # as declared by a 'version' command
        self.block = None            # (kind, name, path, lineno) of the open class/group
        self.stack = []              # files being read, to catch include loops
        self.where = ("<string>", 0)

    def run(self, path, text):
        self.conf.path = path
        self._parse_file(path, text)
        if self.block:
            kind, name, bpath, bline = self.block
            raise ConfigError(f"{bpath}:{bline}: {kind} '{name}' has no 'end {kind}'")
        if self.version is not None:
            self.conf.version = self.version
        return self.conf

    def fail(self, message):
        path, lineno = self.where
        raise ConfigError(f"{path}:{lineno}: {message}")

    def _parse_file(self, path, text):
        key = os.path.abspath(path)
        self.stack.append(key)
        try:
            for lineno, tokens in _tokenize(text):
                self.where = (path, lineno)
                self._command(path, tokens)
        except _LexError as exc:
            self.where = (path, exc.lineno)
            self.fail(str(exc))
        self.stack.pop()

    def _command(self, path, tokens):
        quoted, word = tokens[0]
        args = tokens[1:]
        if quoted:
            self.fail("a command must start with a command name, not a quoted string")
        if word == "end":
            if not args or args[0][0]:
                self.fail("unknown command 'end'")
            word = f"end {args[0][1]}"
            args = args[1:]
        if word not in _KNOWN:
            self.fail(f"unknown command '{word}'")
        context = self.block[0] if self.block else None
        if word not in _ALLOWED[context]:
            self.fail(f"command '{word}' is not allowed {_CONTEXT_NAMES[context]}")
        getattr(self, "_do_" + word.replace(" ", "_").replace("-", "_"))(path, word, args)

    # argument helpers

    def _int(self, word, token):
        quoted, value = token
        if quoted or not value.isdigit():
            self.fail(f"bad arguments to '{word}': '{value}' is not a number")
        return int(value)

    def _nargs(self, word, args, low, high):
        if not low <= len(args) <= high:
            self.fail(f"bad arguments to '{word}'")

    # top-level commands

    def _do_version(self, path, word, args):
        self._nargs(word, args, 1, 1)
        version = self._int(word, args[0])
        if self.version is not None and version != self.version:
            self.fail("conflicting 'version' commands")
        if version not in (1, 2):
            self.fail(f"unsupported version '{version}'")
        self.version = version

    def _do_sensor(self, path, word, args):
        self._nargs(word, args, 2, 3)
        sensor_id = self._int(word, args[0])
        name = args[1][1]
        if len(args) == 3 and not args[2][0]:
            self.fail("bad arguments to 'sensor': the description must be quoted")
        if sensor_id > MAX_SENSOR_ID:
            self.fail(f"sensor id {sensor_id} is greater than the maximum of {MAX_SENSOR_ID}")
        problem = _sensor_name_problem(name)
        if problem:
            self.fail(f"illegal sensor name '{name}': {problem}")
        if sensor_id in self.conf.sensors:
            self.fail(f"a sensor with id {sensor_id} already exists")
        if any(s.name == name for s in self.conf.sensors.values()):
            self.fail(f"a sensor named '{name}' already exists")
        description = None
        if len(args) == 3:
            if self.version is not None and self.version < 2:
                self.fail("sensor descriptions need 'version 2'")
            description = args[2][1]
        self.conf.sensors[sensor_id] = Sensor(sensor_id, name, description)

    def _do_class(self, path, word, args):
        self._nargs(word, args, 1, 1)
        name = args[0][1]
        if name not in self.conf.classes:
            if len(name) > MAX_FLOWTYPE_NAME:
                self.fail(f"class name '{name}' is longer than {MAX_FLOWTYPE_NAME} characters")
            if not name[:1].isascii() or not name[:1].isalpha() or "/" in name:
                self.fail(f"illegal class name '{name}': it must start with a letter "
                          "and contain no '/'")
            self.conf.classes[name] = Class(name)
        self.block = ("class", name, *self.where)

    def _do_group(self, path, word, args):
        self._nargs(word, args, 1, 1)
        name = args[0][1]
        self.conf.groups.setdefault(name, [])
        self.block = ("group", name, *self.where)

    def _do_default_class(self, path, word, args):
        self._nargs(word, args, 1, 1)
        name = args[0][1]
        cls = self.conf.classes.get(name)
        if cls is None:
            self.fail(f"cannot set default class: class '{name}' is not defined")
        if not cls.types:
            self.fail(f"cannot set default class: class '{name}' has no types")
        self.conf.default_class = name

    def _do_path_format(self, path, word, args):
        self._nargs(word, args, 1, 1)
        problem = _check_path_format(args[0][1])
        if problem:
            self.fail(problem)
        self.conf.path_format = args[0][1]

    def _do_packing_logic(self, path, word, args):
        self._nargs(word, args, 1, 1)
        self.conf.packing_logic = args[0][1]

    def _do_include(self, path, word, args):
        self._nargs(word, args, 1, 1)
        target = os.path.join(os.path.dirname(path), args[0][1])
        if os.path.abspath(target) in self.stack:
            self.fail(f"include loop: '{target}' is already being read")
        if len(self.stack) >= MAX_INCLUDE_DEPTH:
            self.fail(f"includes nested more than {MAX_INCLUDE_DEPTH} deep")
        text = _read(target, *self.where)
        saved = self.where
        self._parse_file(target, text)
        self.where = saved

    # block commands

    def _do_sensors(self, path, word, args):
        kind, name = self.block[:2]
        members = self.conf.classes[name].sensors if kind == "class" else self.conf.groups[name]
        by_name = {s.name: s.id for s in self.conf.sensors.values()}
        for _, value in args:
            if value.startswith("@"):
                group = self.conf.groups.get(value[1:])
                if group is None:
                    self.fail(f"cannot add group to {kind} '{name}': "
                              f"group '{value}' is not defined")
                new = list(group)
            elif value in by_name:
                new = [by_name[value]]
            else:
                self.fail(f"cannot add sensor to {kind} '{name}': "
                          f"sensor '{value}' is not defined")
            members.extend(s for s in new if s not in members)

    def _do_type(self, path, word, args):
        self._nargs(word, args, 2, 3)
        ft_id = self._int(word, args[0])
        class_name = self.block[1]
        type_name = args[1][1]
        ft_name = args[2][1] if len(args) == 3 else class_name + type_name
        for what, value in (("type", type_name), ("flowtype", ft_name)):
            if len(value) > MAX_FLOWTYPE_NAME:
                self.fail(f"{what} name '{value}' is longer than {MAX_FLOWTYPE_NAME} characters")
            # Both names become path components of archive files.
            if value in ("", ".", "..") or "/" in value or any(ch.isspace() for ch in value):
                self.fail(f"illegal {what} name '{value}'")
        if ft_id > MAX_FLOWTYPE_ID:
            self.fail(f"type id {ft_id} is greater than the maximum of {MAX_FLOWTYPE_ID}")
        if ft_id in self.conf.flowtypes:
            self.fail(f"a type with id {ft_id} already exists")
        if any(ft.name == ft_name for ft in self.conf.flowtypes.values()):
            self.fail(f"a flowtype named '{ft_name}' already exists")
        cls = self.conf.classes[class_name]
        if any(self.conf.flowtypes[f].type_name == type_name for f in cls.types):
            self.fail(f"type '{type_name}' already exists in class '{class_name}'")
        self.conf.flowtypes[ft_id] = Flowtype(ft_id, class_name, type_name, ft_name)
        cls.types.append(ft_id)

    def _do_default_types(self, path, word, args):
        cls = self.conf.classes[self.block[1]]
        for _, value in args:
            ft_id = next((f for f in cls.types if self.conf.flowtypes[f].type_name == value),
                         None)
            if ft_id is None:
                self.fail(f"cannot set default type in class '{cls.name}': "
                          f"type '{value}' is not defined")
            if ft_id not in cls.default_types:
                cls.default_types.append(ft_id)

    def _do_end_class(self, path, word, args):
        self._end(word, args)

    def _do_end_group(self, path, word, args):
        self._end(word, args)

    def _end(self, word, args):
        if args:
            self.fail(f"'{word}' takes no arguments")
        self.block = None


def _sensor_name_problem(name):
    if not name:
        return "it is empty"
    if len(name) > MAX_SENSOR_NAME:
        return f"it is longer than {MAX_SENSOR_NAME} characters"
    if not (name[0].isascii() and name[0].isalpha()):
        return "it must start with a letter"
    # '_' separates sensor from date in file names, '/' would make a directory.
    for ch in name:
        if ch.isspace() or ch in "/_":
            return f"it contains {ch!r}"
    return None
