"""The one error type of pyflow.

Every failure a user can cause (bad input, bad options, unreadable files) is raised as
FlowError; the command-line layer turns it into a one-line ``pyflow-x: message`` and exit 1.
Anything else escaping a tool is a bug and keeps its traceback.
"""


class FlowError(Exception):
    """A user-facing error: the message is printed as is, after the tool's name."""


class FormatError(FlowError):
    """A file or stream is not a valid pyflow/SiLK file (bad magic, checksum, truncation)."""


class ConfigError(FlowError):
    """The site configuration is unreadable or invalid."""
