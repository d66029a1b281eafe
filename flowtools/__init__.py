"""pyflow: a NetFlow archive toolset in the tradition of SiLK.

Importing this package is cheap; the Python API (``flowtools.api``) pulls in numpy when used.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # The API lives in its own module so that tools start without importing numpy.
    if name in ("read_flows", "archive_files", "archive_flows", "to_dataframe",
                "write_flows"):
        from . import api
        return getattr(api, name)
    raise AttributeError(name)
