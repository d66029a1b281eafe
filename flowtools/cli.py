"""What every tool shares: the option table, parsing, and the error contract.

A tool is a module with a ``TOOL = Tool(...)`` declaring which shared options it switches on
and a function adding its own, plus ``main(opts)``. ``run`` parses the command line as SiLK
does (GNU long options, unique-prefix abbreviations), and turns a FlowError into one line
``pyflow-x: message`` with exit status 1; ``--verbose`` keeps the traceback. This module
imports nothing heavy so that ``--help`` and ``--version`` start fast.
"""

import argparse
import os
import shlex
import signal
import sys

from . import __version__
from .errors import FlowError

COMPRESSION_LEVELS = {"zstd": 1, "lzo1x": 1, "snappy": 1, "zlib": 6, "best": 19}


def _flag(*names, **kw):
    return (names, kw)


# The shared options, by group.  Help text for a shared option is written here only.
SHARED = {
    "inputs": [
        _flag("inputs", nargs="*", metavar="FILE",
              help="Input files; '-' or 'stdin' reads the standard input, which is also "
                   "read when no file is named and it is not a terminal."),
        _flag("--xargs", nargs="?", const="-", metavar="FILE",
              help="Read the names of the input files from FILE, one per line, or from "
                   "the standard input when FILE is not given."),
    ],
    "output": [
        _flag("--output-path", metavar="PATH", default="-",
              help="Write the output to PATH ('-' or 'stdout' for the standard output, "
                   "the default). An existing file is not overwritten unless "
                   "SILK_CLOBBER (or PYFLOW_CLOBBER) is set."),
    ],
    "compression": [
        _flag("--compression-method", metavar="METHOD",
              help="Compression of the binary output: zstd (default, level 1), zstd-N for "
                   "level N (1-22), none; SiLK's names zlib, lzo1x, snappy and best select zstd "
                   "levels 6, 1, 1 and 19. Default from SILK_COMPRESSION_METHOD."),
    ],
    "notes": [
        _flag("--note-add", action="append", metavar="TEXT", default=[],
              help="Add TEXT to the header of the output as an annotation."),
        _flag("--note-file-add", action="append", metavar="FILE", default=[],
              help="Add the contents of FILE to the header of the output as an "
                   "annotation."),
        _flag("--note-strip", action="store_true",
              help="Do not copy the annotations of the inputs to the output."),
        _flag("--invocation-strip", action="store_true",
              help="Do not record the command lines of the inputs and of this run in "
                   "the output."),
    ],
    "filenames": [
        _flag("--print-filenames", action="store_true",
              help="Print to the standard error the name of each input as it is opened."),
    ],
    "copy-input": [
        _flag("--copy-input", metavar="PATH",
              help="Copy every record read to PATH as a pyflow stream ('-' or 'stdout' "
                   "when the text goes elsewhere)."),
    ],
    "site": [
        _flag("--site-config-file", metavar="FILE",
              help="Read the site configuration (silk.conf syntax) from FILE instead of "
                   "SILK_CONFIG_FILE, DATA_ROOTDIR/silk.conf or the default."),
        _flag("--data-rootdir", metavar="DIR",
              help="Root of the archive. Default from SILK_DATA_ROOTDIR."),
    ],
}
COMMON = [
    _flag("--verbose", action="store_true",
          help="Print a traceback for errors and more progress detail."),
    _flag("--version", action="store_true", help="Print the version number and exit."),
]


class Tool:
    """A tool's declaration: name, texts, shared option groups and its own arguments."""

    def __init__(self, name, summary, description, uses=(), add_arguments=None,
                 examples=(), sections=()):
        self.name = name
        self.sections = list(sections)  # (title, preformatted text) for the man page
        self.summary = summary
        self.description = description
        self.uses = uses
        self.add_arguments = add_arguments
        self.examples = list(examples)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


class _UsageError(Exception):
    pass


_TITLES = {"inputs": "input", "filenames": "input", "copy-input": "input",
           "site": "site configuration"}


def build_parser(tool):
    p = _Parser(prog=tool.name, description=tool.summary, allow_abbrev=True,
                epilog=tool.description, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {}
    for group in tool.uses:
        title = _TITLES.get(group, group) + " options"
        if title not in groups:
            groups[title] = p.add_argument_group(title)
        for names, kw in SHARED[group]:
            groups[title].add_argument(*names, **kw)
    if tool.add_arguments:
        tool.add_arguments(p)
    g = p.add_argument_group("general options")
    for names, kw in COMMON:
        g.add_argument(*names, **kw)
    return p


def _attach_optional_values(parser, argv):
    """As with getopt, an optional value must be attached with '=': a bare `--delimited`
    followed by a file name does not take the file name as its value."""
    longs = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    optional = {s: a for a in parser._actions if a.nargs == "?"
                for s in a.option_strings}
    out = []
    for i, tok in enumerate(argv):
        if tok == "--":
            return out + argv[i:]
        if tok.startswith("--") and "=" not in tok:
            hits = [s for s in longs if s == tok] or [s for s in longs if s.startswith(tok)]
            if len(hits) == 1 and hits[0] in optional:
                tok = f"{hits[0]}={optional[hits[0]].const}"
        out.append(tok)
    return out


def _quiet_pipe():
    # A downstream reader that went away (`| head`) ends the tool quietly.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def run(tool, main, argv=None):
    argv = sys.argv[1:] if argv is None else argv
    verbose = "--verbose" in argv
    parser = build_parser(tool)
    argv = _attach_optional_values(parser, argv)
    try:
        opts, extra = parser.parse_known_args(argv)
        if extra:
            bad = next((a for a in extra if a.startswith("-") and a not in ("-",)), None)
            if bad:
                raise _UsageError(f"unrecognized option '{bad.split('=')[0]}'")
            raise _UsageError(f"unexpected argument '{extra[0]}'")
    except _UsageError as exc:
        sys.stderr.write(f"{tool.name}: {exc}\nUse '{tool.name} --help' for usage\n")
        return 1
    if opts.version:
        sys.stdout.write(f"{tool.name}: part of pyflow {__version__}\n")
        return 0
    opts.tool_name = tool.name
    opts.invocation = " ".join(shlex.quote(a) for a in [tool.name] + list(argv))
    try:
        return main(opts) or 0
    except FlowError as exc:
        if verbose:
            import traceback
            traceback.print_exc()
        sys.stdout.flush() if not sys.stdout.closed else None
        sys.stderr.write(f"{tool.name}: {exc}\n")
        return 1
    except BrokenPipeError:
        _quiet_pipe()
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(f"{tool.name}: interrupted\n")
        return 128 + signal.SIGINT
    except MemoryError:
        sys.stderr.write(f"{tool.name}: out of memory\n")
        return 1


def _tune_gc():
    """Let the cyclic garbage collector run a thirtieth as often, and never over what the
    imports made. A tool builds many small lists and dicts (each file's and block's
    headers) and few cycles; collecting every 700 allocations cost 4-5% of the CPU time
    of reading the bench archive (measured). Workers forked later inherit this."""
    import gc
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def entry(module_name):
    """The console-script entry point of a tool module."""
    import importlib
    # numpy's OpenBLAS starts a thread per core at import, which spin and cost a tool
    # ~0.1 CPU-s at start (measured) and are never used: the tools do no linear algebra.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    mod = importlib.import_module(module_name)
    _tune_gc()
    code = run(mod.TOOL, mod.main)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_pipe()
    sys.exit(code)


# ------------------------------------------------------------ helpers for shared options

def compression(opts):
    """(method, level) from --compression-method or the environment."""
    from .io import env
    value = getattr(opts, "compression_method", None) or env("COMPRESSION_METHOD", "zstd")
    value = value.lower()
    if value == "none":
        return "none", None
    if value.startswith("zstd-"):
        try:
            level = int(value[5:])
        except ValueError:
            level = 0
        if not 1 <= level <= 22:
            raise FlowError(f"invalid --compression-method '{value}': level must be 1-22")
        return "zstd", level
    if value in COMPRESSION_LEVELS:
        return "zstd", COMPRESSION_LEVELS[value]
    raise FlowError(f"invalid --compression-method '{value}': choose none, zstd, zstd-N, "
                    "zlib, lzo1x, snappy or best")


def output_meta(opts, inputs_meta=()):
    """Header history and notes for an output, from its inputs' headers and the options."""
    history, notes = [], []
    for meta in inputs_meta:
        if not opts.invocation_strip:
            history.extend(meta.get("history", []))
        if not getattr(opts, "note_strip", False):
            notes.extend(meta.get("notes", []))
    if not opts.invocation_strip:
        history.append(opts.invocation)
    notes.extend(getattr(opts, "note_add", []) or [])
    for path in getattr(opts, "note_file_add", []) or []:
        try:
            with open(path) as f:
                notes.append(f.read())
        except OSError as exc:
            raise FlowError(f"cannot read --note-file-add file {path}: {exc.strerror}") \
                from None
    return {"history": history, "notes": notes}


def site_config(opts, required=True):
    """The site configuration the options and environment select."""
    from . import siteconf
    path = siteconf.find_config_path(getattr(opts, "site_config_file", None),
                                     data_rootdir(opts, required=False))
    if path is None:
        if required:
            raise FlowError("no site configuration found; give --site-config-file")
        return None
    return siteconf.load(path)


def data_rootdir(opts, required=True):
    from .io import env
    root = getattr(opts, "data_rootdir", None) or env("DATA_ROOTDIR")
    if root is None and required:
        raise FlowError("no archive root: give --data-rootdir or set SILK_DATA_ROOTDIR")
    return root
