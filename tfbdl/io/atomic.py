"""Atomic file writes: a temp file in the same folder, fsync, ``os.replace``, fsync of the folder.

A process killed at any instant leaves either the old or the new file at the target path, never
half of one, and a finished write survives a power cut.

Testing: with the environment variable ``TFBDL_KILL_AT_WRITE=n`` a process kills itself with
SIGKILL at its ``n``-th atomic write, after the temp file is written and fsynced and before it is
renamed into place: a crash inside a write. The variable is read once, at the first write.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import tempfile
from typing import Iterator

from tfbdl.errors import InvalidOptionError

__all__ = [
    "KILL_AT_WRITE_ENV",
    "PathLike",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "fsync_file",
]

PathLike = str | os.PathLike

#: Environment variable: kill the process at its n-th atomic write, before the rename.
KILL_AT_WRITE_ENV = "TFBDL_KILL_AT_WRITE"

_UMASK: int | None = None
#: [n] once KILL_AT_WRITE_ENV was read (n None when unset), and the atomic writes made so far.
_KILL_AT: list[int | None] = []
_WRITES = 0


def _umask() -> int:
    """The process umask, read once (from /proc when possible, which changes nothing)."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _UMASK = int(line.split()[1], 8)
                        break
        except OSError:
            pass
        if _UMASK is None:
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


def _kill_at_write() -> int | None:
    """The write number of KILL_AT_WRITE_ENV (None when unset); InvalidOptionError if not a number."""
    value = os.environ.get(KILL_AT_WRITE_ENV, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidOptionError(f"{KILL_AT_WRITE_ENV} must be a whole number of writes, got {value!r}") from None


def _count_write() -> None:
    """Count one atomic write; SIGKILL this process at the one KILL_AT_WRITE_ENV names."""
    global _WRITES
    if not _KILL_AT:
        _KILL_AT.append(_kill_at_write())
    if _KILL_AT[0] is None:
        return
    _WRITES += 1
    if _WRITES == _KILL_AT[0]:
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(folder: PathLike) -> None:
    """fsync a folder so a rename inside it survives a power cut (no-op where unsupported)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: PathLike) -> None:
    """fsync a file that some other code (h5py, numpy) wrote and closed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_temp(path: pathlib.Path) -> pathlib.Path:
    """Create an empty hidden temp file next to ``path`` that ends with the same suffix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    return pathlib.Path(tmp)


def _commit_temp(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Give ``tmp`` normal permissions, fsync it, rename it onto ``path`` and fsync the folder."""
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)
    fsync_file(tmp)
    _count_write()
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[pathlib.Path]:
    """Yield a temp path next to ``path`` (same suffix); on success rename it onto ``path``.

    For writers that want a file name (h5py, ``np.savez``): whatever they write appears at
    ``path`` all at once. On an exception the temp file is deleted, ``path`` is left as it
    was, and the exception propagates. The folder of ``path`` must exist.
    """
    path = pathlib.Path(path)
    tmp = _new_temp(path)
    try:
        yield tmp
        _commit_temp(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old or the new file, never half)."""
    path = pathlib.Path(path)
    tmp = _new_temp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _commit_temp(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
