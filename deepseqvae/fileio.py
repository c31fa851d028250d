"""Small file helpers shared by every stage: atomic writes, so nothing already written is lost; the
check every runner makes of its outputs before it works (never an input, writable); and input files
read the same whether plain or gzip-compressed."""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import os
import re
import shlex
import shutil
import stat
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import DeepSeqVAEError, OutputError

#: the first two bytes of every gzip stream (RFC 1952)
GZIP_MAGIC = b"\x1f\x8b"
#: exceptions, besides ``OSError``, that reading a truncated or damaged gzip file raises
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error)


def _default_mode() -> int:
    """Permissions a plain ``open()`` would give a new file (mkstemp's are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _file_key(path: Path) -> object:
    """What names one file whatever the spelling: its device and inode (hard links too), else its resolved path."""
    try:
        st = path.stat()
        return (st.st_dev, st.st_ino)
    except OSError:  # not there (yet), or a symlink loop
        try:
            return path.resolve()
        except (OSError, RuntimeError):
            return str(path)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (through links and different spellings; ``a`` may not exist yet, or be
    spelt through a folder that does not, as an output can)."""
    try:
        same_spelling = a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        same_spelling = False
    return same_spelling or _file_key(a) == _file_key(b)


def path_list(value, what: str) -> list:
    """``value`` (a list of paths, as an API argument) as a list; one path given alone is a :class:`TypeError`, not a
    list of its characters."""
    if isinstance(value, (str, bytes, os.PathLike)):
        one = os.fspath(value)
        raise TypeError(f"{what} must be a list of paths, not one path ({one!r}): pass [{one!r}]")
    return list(value)


def check_distinct(paths, what: str) -> None:
    """One file given twice (another spelling, a link) as two ``what``s: an error (it would count double)."""
    seen: dict[object, int] = {}
    for i, path in enumerate(paths):
        first = seen.setdefault(_file_key(Path(path)), i)
        if first != i:
            raise DeepSeqVAEError(f"{path}: given twice (also as {paths[first]}); each {what} counts once")


def check_output(path: str | os.PathLike, *inputs: str | os.PathLike | None,
                 outputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Fail before any work if ``path`` cannot be written, is one of ``inputs`` or is one of the command's other
    ``outputs``.

    Creates the output's folder (as the write would) and checks that a file can be made in it, so
    a long training or scan does not end in an unwritable path. ``None`` inputs are ignored.
    Raises :class:`OutputError` with a one-line message naming the path.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            named = "" if str(source) == str(path) else f" {source}"  # a link or another spelling of it
            raise OutputError(f"{path}: refusing to overwrite the input{named}; choose another output")
    for other in outputs:
        if _same_file(path, Path(other)):
            raise OutputError(f"{path}: is also this command's output {other}; give each output its own name")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if path.suffix.lower() == ".gz":  # inputs may be gzip-compressed; outputs are written plain
        raise OutputError(f"{path}: outputs are written uncompressed: name it without .gz (gzip it afterwards)")
    if is_stream(path):  # /dev/stdout, /dev/null, a pipe: written in place
        if _descriptor(path) is None and not stat.S_ISFIFO(Path(path).stat().st_mode):  # (a FIFO would block)
            with _open_stream(path, "ab"):  # a device that cannot be opened (/dev/tty without a terminal)
                pass
        return path
    places = {os.path.normpath(os.path.abspath(p)) for p in (path, _target(path))}  # as given, and a link's target
    if any(os.path.dirname(w) == "/dev" or w.startswith("/proc/") for w in places):  # (/dev/shm is a folder)
        # e.g. score -o /dev/stdout's Spearman beside it: /dev/stdout.spearman.json
        raise OutputError(f"{path}: not a place for a file (beside a stream output such as /dev/stdout?); give the "
                          "output a file name")
    target = _target(path)  # where the write goes: a link's target
    _make_parent(target)
    # a file made and removed, not os.access: that ignores read-only mounts and, for root, the permissions
    fd, tmp = _temporary(target, ".check")
    os.close(fd)
    os.unlink(tmp)
    return path


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder should be, a read-only or virtual file system
        raise OutputError(f"{path}: cannot create its folder {path.parent}: {exc.strerror or exc}") from None


def _temporary(path: Path, suffix: str) -> tuple[int, str]:
    _make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {path.parent}: {exc.strerror or exc}") from None
    os.chmod(tmp, _default_mode())
    return fd, tmp


def _replace(tmp: str, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:  # e.g. the target is a folder
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None


#: write errors that mean the file system has no room for the output (or is read-only), said in one line
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
#: a process's own open files by number: /dev/stdout is /proc/self/fd/1, whatever it is (a pipe, a file opened to
#: append, a terminal); written through a copy of that descriptor, never reopened (that truncates) or renamed onto
_FD_PATH = re.compile(r"^/+(?:dev/fd|proc/self/fd|proc/(\d+)/fd)/(\d+)$")
_STD_PATHS = {"/dev/stdout": 1, "/dev/stderr": 2}  # (never stdin: an output)


def _target(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` must replace: through a symbolic link its target (replacing the link itself
    would leave the file it names unwritten), else ``path``."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _descriptor(path: str | os.PathLike) -> int | None:
    """The open file descriptor of this process that ``path`` names: by its spelling (``/dev/stdout``: 1,
    ``/dev/fd/3``, ``/proc/self/fd/3``), or as the file stdout or stderr is (a link to /dev/stdout, ``//dev/stdout``,
    the log stdout appends to); None otherwise, and for a number that is not open."""
    text = os.path.normpath(os.fspath(path))
    fd = _STD_PATHS.get(text)
    if fd is None and (m := _FD_PATH.match(text)) and m.group(1) in (None, str(os.getpid())):
        fd = int(m.group(2))
    if fd is None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        for std in (1, 2):
            with contextlib.suppress(OSError):
                out = os.fstat(std)
                if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
                    return std
        return None
    try:
        os.fstat(fd)
    except OSError:  # not open: the path is then no stream (and no place for a file)
        return None
    return fd


def is_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of this process's open files by number (``/dev/stdout``) or, followed through links, a
    character device or a pipe (``/dev/null``, a FIFO, a terminal): written in place, never replaced by a renamed
    file (as root, a rename onto /dev/null would replace the device; onto /dev/stdout redirected to a log, the log)."""
    if _descriptor(path) is not None:
        return True
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _no_room(what: str, exc: OSError) -> OutputError:
    fix = "choose another folder" if exc.errno == errno.EROFS else "free some space or choose another folder"
    return OutputError(f"{what}: cannot write: {exc.strerror or exc}; nothing was replaced ({fix})")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path`` (beside a link's target); on success rename it onto ``path``.

    If the body raises, the temporary file is removed and any existing ``path`` is untouched. A path
    that cannot be written, or a file system with no room left for it, raises :class:`OutputError`. A symbolic
    link's target is written (the link kept); a device or pipe (``/dev/stdout``) is written directly.
    """
    with atomic_writes([path], mode, **kwargs) as (fh,):
        yield fh


@contextlib.contextmanager
def atomic_writes(paths: list[str | os.PathLike], mode: str = "w", **kwargs) -> Iterator[list[IO]]:
    """:func:`atomic_write` for files that belong together: every one is written and flushed to disk before any
    replaces its earlier version, so a failure (a full disk) leaves all of them as they were."""
    if any(is_stream(p) for p in paths):  # written in place: nothing to replace atomically
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(_open_stream(p, mode, **kwargs)) for p in paths]
        return
    targets = [_target(p) for p in paths]
    temps: list[str] = []
    try:
        handles = []
        with contextlib.ExitStack() as stack:
            for target in targets:
                fd, tmp = _temporary(target, ".tmp")
                temps.append(tmp)
                handles.append(stack.enter_context(os.fdopen(fd, mode, **kwargs)))
            yield handles
            for fh in handles:
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, target in zip(temps, targets, strict=True):
            _replace(tmp, target)
    except OSError as exc:
        _remove(temps)
        if exc.errno in _NO_ROOM:
            raise _no_room(" and ".join(map(str, targets)), exc) from None
        raise
    except BaseException:
        _remove(temps)
        raise


def _open_stream(path: str | os.PathLike, mode: str, **kwargs) -> IO:
    """``path`` opened for writing in place: a descriptor it names through a copy (so that a file that stdout appends
    to is appended to, not truncated by a reopening), anything else (a device, a pipe) as it is."""
    fd = _descriptor(path)
    try:
        return open(path, mode, **kwargs) if fd is None else os.fdopen(os.dup(fd), mode, **kwargs)
    except OSError as exc:  # /dev/tty without a terminal, a descriptor open for reading only
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _remove(temps: list[str]) -> None:
    for tmp in temps:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Like :func:`atomic_write` but yields a temporary *path* (for writers that take a filename)."""

    @contextlib.contextmanager
    def _cm() -> Iterator[Path]:
        stream = is_stream(path)
        target = _target(path)
        # a device or pipe: the file is made in the temporary folder, then copied into it
        fd, tmp = (tempfile.mkstemp(suffix=target.suffix or ".tmp") if stream
                   else _temporary(target, target.suffix or ".tmp"))
        os.close(fd)
        try:
            yield Path(tmp)
            replace_with(tmp, path)  # a device or pipe gets its bytes; a file (a link's target) the file
        except OSError as exc:
            _remove([tmp])
            if exc.errno in _NO_ROOM:
                raise _no_room(str(target), exc) from None
            raise
        except BaseException:
            _remove([tmp])
            raise

    return _cm()


def replace_with(finished: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the finished file ``finished`` where ``path`` is (a link's target; a device or pipe gets its bytes)."""
    if is_stream(path):
        with open(finished, "rb") as src, _open_stream(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.unlink(finished)
        return
    _replace(os.fspath(finished), _target(path))


class _GzipInput(gzip.GzipFile):
    """A ``GzipFile`` over an open file that it also closes (``GzipFile(fileobj=...)`` leaves it open)."""

    def __init__(self, raw: io.BufferedReader) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


#: the first bytes of compressions that are not read (gzip is): (magic, name, the command that decompresses)
OTHER_COMPRESSIONS = ((b"BZh", "bzip2", "bunzip2 -k"), (b"\xfd7zXZ\x00", "xz", "unxz -k"),
                      (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"))


class UnsupportedCompression(OSError):
    """An input compressed other than with gzip (its message says how to decompress it)."""


def open_input(path: str | os.PathLike) -> io.BufferedIOBase:
    """Open an input file for reading bytes, decompressing it when it is gzip-compressed.

    Compression is recognised by the gzip magic bytes, not by the name, so ``x.a2m.gz``, a
    compressed file without the suffix and a plain file that happens to end in ``.gz`` all read
    as their text. Only the first bytes are peeked at, so a pipe works too. Raises ``OSError``
    as ``open`` does, :class:`UnsupportedCompression` (an ``OSError``) for bzip2, xz or zstd data; reading damaged
    gzip data raises ``OSError`` (``gzip.BadGzipFile``) or one of :data:`GZIP_ERRORS`.
    """
    raw = open(path, "rb")  # noqa: SIM115 - returned open; the caller closes it
    try:
        head = raw.peek(6)[:6]
        compressed = head[:2] == GZIP_MAGIC
        for magic, name, command in OTHER_COMPRESSIONS:
            if head.startswith(magic):
                raise UnsupportedCompression(f"{name}-compressed, and only gzip is read: decompress it first "
                                             f"({command} {shlex.quote(os.fspath(path))})")
    except BaseException:
        raw.close()
        raise
    return _GzipInput(raw) if compressed else raw


def plain_name(path: str | os.PathLike) -> Path:
    """``path`` without a trailing ``.gz`` (any case): the name whose suffix tells the file format."""
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() == ".gz" else path
