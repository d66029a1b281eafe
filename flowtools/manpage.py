"""Man pages generated from each tool's own argument definitions.

``python -m flowtools.manpage DIR`` writes man/pyflow-*.1; a test fails when a checked-in page
differs from what the current definitions generate.
"""

import argparse
import importlib
import os
import sys

from . import __version__
from .cli import build_parser
from .tools import TOOLS


def _esc(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def _synopsis(action):
    names = ", ".join(f"\\fB{_esc(o)}\\fR" for o in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    if action.nargs == "?":
        return f"{names}[=\\fI{_esc(metavar)}\\fR]"
    return f"{names}=\\fI{_esc(metavar)}\\fR"


def render(name):
    mod = importlib.import_module(f"flowtools.tools.{TOOLS[name]}")
    tool = mod.TOOL
    parser = build_parser(tool)
    out = [f'.TH {name.upper()} 1 "" "pyflow {__version__}" "pyflow"',
           ".SH NAME", f"{_esc(name)} \\- {_esc(tool.summary)}",
           ".SH SYNOPSIS", f"\\fB{_esc(name)}\\fR [\\fIOPTIONS\\fR]"
           + (" [\\fIFILE\\fR ...]" if "inputs" in tool.uses else ""),
           ".SH DESCRIPTION", _esc(tool.description)]
    for title, text in tool.sections:
        out += [f".SH {_esc(title.upper())}", ".nf", _esc(text.rstrip("\n")), ".fi"]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions
                   if a.option_strings and a.help != argparse.SUPPRESS]
        if not actions:
            continue
        title = group.title.upper() if group.title not in ("options", "optional arguments") \
            else "OPTIONS"
        out.append(f".SH {_esc(title)}")
        for a in actions:
            out += [".TP", _synopsis(a), _esc(a.help or "")]
    out += [".SH ENVIRONMENT",
            "Options fall back on SILK_* variables (SILK_DATA_ROOTDIR, SILK_CONFIG_FILE, "
            "SILK_COMPRESSION_METHOD, SILK_CLOBBER); the same names with a PYFLOW_ prefix "
            "take precedence.".replace("-", "\\-"),
            ".SH EXIT STATUS", "0 on success; 1 on any error, reported on one line as "
            f"\\fB{_esc(name)}: message\\fR on the standard error."]
    if tool.examples:
        out.append(".SH EXAMPLES")
        for ex in tool.examples:
            out += [".PP", ".nf", _esc(ex), ".fi"]
    out += [".SH SEE ALSO", ", ".join(f"\\fB{_esc(t)}\\fR(1)" for t in sorted(TOOLS)
                                     if t != name)]
    return "\n".join(out) + "\n"


def main(argv):
    directory = argv[0] if argv else "man"
    os.makedirs(directory, exist_ok=True)
    for name in TOOLS:
        with open(os.path.join(directory, f"{name}.1"), "w") as f:
            f.write(render(name))


if __name__ == "__main__":
    main(sys.argv[1:])
