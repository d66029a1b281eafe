"""Opening inputs and outputs the way every SiLK tool does.

Inputs are file names, ``-``/``stdin``; outputs are paths, ``-``/``stdout`` or ``stderr``.
Binary data is never read from or written to a terminal. A regular output file is written
under a temporary name beside its target and renamed into place only when complete, so a
failed run leaves nothing half-written; an existing file is not overwritten unless the
clobber variable is set.
"""

import os
import sys
import tempfile

from . import container
from .errors import FlowError

SILK_MAGIC = b"\xde\xad\xbe\xef"
STDIN_NAMES = ("-", "stdin")
STDOUT_NAMES = ("-", "stdout")


def env(name, default=None, environ=None):
    """PYFLOW_<name> if set, else SILK_<name>, else default."""
    environ = os.environ if environ is None else environ
    for prefix in ("PYFLOW_", "SILK_"):
        value = environ.get(prefix + name)
        if value not in (None, ""):
            return value
    return default


def clobber_allowed():
    value = env("CLOBBER", "")
    return value not in ("", "0")


def _isatty(f):
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False


def open_input(name):
    """A binary file object for an input name."""
    if name in STDIN_NAMES:
        if _isatty(sys.stdin):
            raise FlowError("will not read binary data from a terminal (stdin)")
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError as exc:
        raise FlowError(f"cannot open {name}: {exc.strerror}") from None


def display_name(name):
    return "stdin" if name in STDIN_NAMES else name


def open_flows(name, threads=2):
    """A reader of flow batches for a file or stream of any format pyflow reads."""
    f = open_input(name)
    label = display_name(name)
    magic = f.read(4)
    if magic == container.MAGIC[:4]:
        from .flowfile import FlowReader
        return FlowReader(f, label, prefix=magic, threads=threads)
    if magic == SILK_MAGIC:
        from .silkfile import SilkFlowReader
        return SilkFlowReader(f, label, prefix=magic)
    if not magic:
        raise FlowError(f"{label}: empty input (no header)")
    raise FlowError(f"{label}: not a flow file (unknown magic {magic.hex()})")


def input_names(args, xargs=None, stdin=None):
    """The input list from arguments, --xargs, or standard input when it is not a tty.
    Names read with --xargs are the whole list, even when there are none (nothing is
    read then, as SiLK's tools do, rather than the standard input)."""
    stdin = sys.stdin if stdin is None else stdin
    names = list(args)
    if xargs is not None:
        src = stdin if xargs in ("", "-", "stdin") else None
        try:
            text = src.read() if src is not None else open(xargs).read()
        except OSError as exc:
            raise FlowError(f"cannot read --xargs file {xargs}: {exc.strerror}") from None
        names.extend(line.strip() for line in text.splitlines() if line.strip())
        return names
    if not names:
        if _isatty(stdin):
            raise FlowError("no input files given and standard input is a terminal")
        names = ["-"]
    return names


def temp_beside(path, prefix=None, suffix=".tmp"):
    """(fd, name) of a new temporary file in path's directory, to be renamed onto path,
    with the mode a file made by open() would have (mkstemp's is 0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix or "." + os.path.basename(path) + ".",
                               suffix=suffix, dir=directory)
    mask = os.umask(0o022)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)
    return fd, tmp


def check_output(path, binary=True):
    """Raise the error opening path as an output would, before any work is done: binary
    data to a terminal, or an existing file without the clobber variable set."""
    if path in STDOUT_NAMES or path == "stderr":
        stream = sys.stdout if path != "stderr" else sys.stderr
        if binary and _isatty(stream):
            where = "stdout" if path in STDOUT_NAMES else path
            raise FlowError(f"will not write binary data to a terminal ({where})")
        return
    if os.path.lexists(path) and (not os.path.exists(path) or os.path.isfile(path)):
        if not clobber_allowed():
            raise FlowError(f"will not create new file over existing file '{path}'")


class Output:
    """A binary or text output; commit() makes a file appear, abort() removes the temp."""

    def __init__(self, path, binary=True):
        self.path = path
        self.binary = binary
        self.tmp = None
        self.owned = False
        check_output(path, binary)
        if path in STDOUT_NAMES or path == "stderr":
            stream = sys.stdout if path != "stderr" else sys.stderr
            self.f = stream.buffer if binary else stream
            self.seekable = False
            return
        if os.path.exists(path) and not os.path.isfile(path):
            # a named pipe, /dev/null or a device: written in place
            self.f = self._open(path, "wb" if binary else "w")
            self.owned = True
            self.seekable = False
            return
        try:
            fd, self.tmp = temp_beside(path)
        except OSError as exc:
            raise FlowError(f"cannot create {path}: {exc.strerror}") from None
        self.f = os.fdopen(fd, "wb" if binary else "w")
        self.owned = True
        self.seekable = True

    @staticmethod
    def _open(path, mode):
        try:
            return open(path, mode)
        except OSError as exc:
            raise FlowError(f"cannot open {path}: {exc.strerror}") from None

    def commit(self):
        if self.tmp:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.path)
            self.tmp = None
        elif self.owned:
            self.f.close()
        else:
            self.f.flush()

    def abort(self):
        if self.tmp:
            try:
                self.f.close()
            finally:
                try:
                    os.unlink(self.tmp)
                except OSError:
                    pass
                self.tmp = None


class FlowSink:
    """A flow output: a FlowWriter on an Output, committed (or removed) as a whole."""

    def __init__(self, path, meta=None, compression="zstd", level=None, block_records=None):
        from .flowfile import DEFAULT_BLOCK_RECORDS, DEFAULT_LEVEL, FlowWriter
        self.out = Output(path)
        try:
            self.writer = FlowWriter(self.out.f, meta, compression=compression,
                                     level=level or DEFAULT_LEVEL,
                                     block_records=block_records or DEFAULT_BLOCK_RECORDS)
        except BaseException:
            self.out.abort()
            raise
        self.records = 0

    def write(self, batch):
        self.writer.write(batch)

    def write_block(self, block):
        self.writer.write_block(block)

    def close(self):
        self.writer.close()
        if self.out.seekable:
            container.commit(self.out.f, self.out.f.tell(), None)
        self.records = self.writer.records
        self.out.commit()

    def abort(self):
        self.out.abort()
