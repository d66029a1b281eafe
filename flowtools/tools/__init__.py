"""One module per pyflow-* tool: its TOOL declaration and main(opts).

TOOLS maps each command to its module; the console-script entry points are the functions
of the same names defined below (``pyflow-cat`` -> ``flowtools.tools:run_cat``).
"""

TOOLS = {
    "pyflow-bag": "bag",
    "pyflow-bagbuild": "bagbuild",
    "pyflow-bagcat": "bagcat",
    "pyflow-bagtool": "bagtool",
    "pyflow-cat": "cat",
    "pyflow-collect": "collect",
    "pyflow-count": "count",
    "pyflow-cut": "cut",
    "pyflow-fileinfo": "fileinfo",
    "pyflow-filter": "filter",
    "pyflow-gen": "gen",
    "pyflow-match": "match",
    "pyflow-pack": "pack",
    "pyflow-set": "set",
    "pyflow-setbuild": "setbuild",
    "pyflow-setcat": "setcat",
    "pyflow-settool": "settool",
    "pyflow-sort": "sort",
    "pyflow-tuc": "tuc",
    "pyflow-uniq": "uniq",
    "pyflow-stats": "stats",
}


def _entry(module):
    def run():
        from ..cli import entry
        entry(f"{__name__}.{module}")
    run.__name__ = module
    return run


for _module in TOOLS.values():
    globals()["run_" + _module] = _entry(_module)
