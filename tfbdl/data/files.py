"""Finding, verifying and downloading dataset files.

Lookup order for a file: the ``data_dir`` argument, ``$TFBDL_DATA_DIR``, ``~/.cache/tfbdl/datasets``,
then system dataset folders (Debian's ``dataset-fashion-mnist`` installs under
``/usr/share/datasets/fashion-mnist``). Inside each root a file may sit in the dataset's own
folder or at the top.

Verification reads the *decompressed* content: Linux distributions recompress gzip files, so
an archive's bytes can differ while the data are the same. A file passes if its raw bytes have the
official archive's MD5 (checked first, without decompressing), or if its decompressed content has
the known SHA-256. Decompression streams and is capped at the official content's size
(:attr:`RemoteFile.content_size`, or :data:`MAX_UNKNOWN_CONTENT` where the registry has none), so
a file that expands further (a gzip bomb dropped in a data folder) is refused after reading at most
that many bytes, and the SHA-256 is computed while streaming.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import io
import os
import zlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tfbdl.errors import ChecksumError, DatasetNotFound
from tfbdl.io import fsync_dir

__all__ = [
    "CACHE_DIR",
    "DATA_DIR_ENV",
    "DOWNLOAD_TIMEOUT",
    "DownloadFailed",
    "FALLBACK_TIMEOUT",
    "MAX_UNKNOWN_CONTENT",
    "OFFLINE_ENV",
    "RemoteFile",
    "content_limit",
    "download",
    "download_root",
    "find_file",
    "is_gzip",
    "missing_message",
    "offline",
    "open_url",
    "read_content",
    "read_limited",
    "search_roots",
    "verify_content",
]

DATA_DIR_ENV = "TFBDL_DATA_DIR"
OFFLINE_ENV = "TFBDL_OFFLINE"
CACHE_DIR = Path("~/.cache/tfbdl/datasets")


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One official dataset file: where it lives and how to recognise its content."""

    filename: str
    url: str | None
    content_sha256: str | None = None  # of the decompressed bytes (the file itself if not gzip)
    archive_md5: str | None = None  # of the official archive's raw bytes
    size: int | None = None  # of the official archive, for the progress bar
    mirrors: tuple[str, ...] = ()  # tried in order after ``url``
    content_size: int | None = None  # bytes of the decompressed content: the most a copy may expand to

    @property
    def gzipped(self) -> bool:
        return self.filename.endswith((".gz", ".tgz"))

    @property
    def names_on_disk(self) -> tuple[str, ...]:
        """Accepted file names: the official one, and its decompressed form for gzip files."""
        if self.filename.endswith(".gz"):
            return (self.filename, self.filename[:-3])
        return (self.filename,)


def search_roots(data_dir: str | os.PathLike | None = None, system_dirs: tuple[str, ...] = ()) -> list[Path]:
    """The folders searched for dataset files, in lookup order."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get(DATA_DIR_ENV):
        roots.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    roots.append(CACHE_DIR.expanduser())
    roots.extend(Path(d) for d in system_dirs)
    return roots


def find_file(remote: RemoteFile, folder: str, roots: list[Path]) -> Path | None:
    """The first existing copy of ``remote`` under ``roots`` (in ``root/folder`` or ``root``)."""
    for root in roots:
        for directory in (root / folder, root):
            for name in remote.names_on_disk:
                candidate = directory / name
                if candidate.is_file():
                    return candidate
    return None


def download_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Where downloads go: ``data_dir``, else ``$TFBDL_DATA_DIR``, else the user cache."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return CACHE_DIR.expanduser()


# The most bytes a file may decompress to when the registry does not record its content size.
MAX_UNKNOWN_CONTENT = 1 << 30
_READ_CHUNK = 1 << 20


def content_limit(remote: RemoteFile) -> int:
    """The most bytes a copy of ``remote`` may decompress to before it is refused."""
    return remote.content_size if remote.content_size is not None else MAX_UNKNOWN_CONTENT


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _too_big(path: Path, what: str, limit: int, name: str | None) -> ChecksumError:
    expected = (f"the official {name} holds {limit:,}" if name is not None
                else f"at most {limit:,} are allowed for a file whose size is not recorded")
    return ChecksumError(f"{path}: {what} more than {limit:,} bytes but {expected}, so it is not the official file "
                         "(perhaps a decompression bomb) and was not read further; delete it and fetch the dataset "
                         "again")


def read_limited(path: Path, limit: int = MAX_UNKNOWN_CONTENT, *, name: str | None = None) -> tuple[bytes, str]:
    """The content of ``path`` (decompressed when it is gzip) and its SHA-256, reading at most
    ``limit`` bytes of content: ChecksumError, naming the file, as soon as there is more.

    ``name`` (the official file name) only words the error. gzip is detected by its magic bytes
    and decompressed in chunks, so memory stays within ``limit`` whatever the file holds.
    """
    digest = hashlib.sha256()
    sink = io.BytesIO()
    if not is_gzip(path):
        size = path.stat().st_size
        if size > limit:
            raise _too_big(path, f"is {size:,} bytes,", limit, name)
        content = path.read_bytes()
        if len(content) > limit:  # it grew since stat()
            raise _too_big(path, "holds", limit, name)
        digest.update(content)
        return content, digest.hexdigest()
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(min(_READ_CHUNK, limit + 1 - total)):
                total += len(chunk)
                if total > limit:
                    raise _too_big(path, "decompresses to", limit, name)
                digest.update(chunk)
                sink.write(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise ChecksumError(f"{path}: broken gzip stream ({error}); delete it and fetch it again") from error
    return sink.getvalue(), digest.hexdigest()


def read_content(path: Path, limit: int = MAX_UNKNOWN_CONTENT) -> tuple[bytes, bytes]:
    """Return (raw bytes, decompressed content) of a file; gzip is detected by its magic bytes,
    and content beyond ``limit`` bytes is refused (see :func:`read_limited`)."""
    content, _ = read_limited(path, limit)
    return path.read_bytes(), content


def verify_content(path: Path, remote: RemoteFile) -> bytes:
    """Check a file against the official checksums and return its decompressed content.

    The raw bytes' MD5 is tried first (no decompression), then the SHA-256 of the content,
    decompressed in a stream of at most :func:`content_limit` bytes. Raises ChecksumError (and
    parses nothing) when neither checksum matches or the content would exceed the limit.
    """
    if not remote.content_sha256 and not remote.archive_md5:
        raise ChecksumError(f"{path}: no checksum is known for {remote.filename}, so it cannot be verified")
    limit = content_limit(remote)
    name = remote.filename if remote.content_size is not None else None
    md5 = _file_md5(path) if remote.archive_md5 else None
    if md5 is not None and md5 == remote.archive_md5:  # the official archive itself
        return read_limited(path, limit, name=name)[0]
    if not remote.content_sha256:  # only the archive's MD5 is known: do not expand other bytes at all
        raise ChecksumError(
            f"{path} does not match the official {remote.filename} (MD5 of its bytes {md5[:16]}...). "
            "It is corrupt, truncated or another file: delete it and fetch the dataset again.")
    content, sha256 = read_limited(path, limit, name=name)
    if sha256 == remote.content_sha256:
        return content
    raise ChecksumError(
        f"{path} does not match the official {remote.filename} "
        f"(SHA-256 of its content {sha256[:16]}...). "
        "It is corrupt, truncated or another file: delete it and fetch the dataset again."
    )


# How long a download may wait for the server (to connect, or between two reads) before it
# counts as stalled. Runs that can fall back to embedded data use the short one.
DOWNLOAD_TIMEOUT = 60.0
FALLBACK_TIMEOUT = 5.0
_CHUNK = 1 << 20

# Hosts that could not be connected to (refused, unresolved or silent) in this process: later
# files skip them at once instead of waiting for the same failure again (a run reads several files).
_unreachable: dict[str, str] = {}


class DownloadFailed(DatasetNotFound):
    """A download could not complete; ``reason`` says why in a few words (for run records)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def offline() -> bool:
    """Whether downloads are switched off (``TFBDL_OFFLINE`` set to anything but '' or '0')."""
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def open_url(url: str, timeout: float = DOWNLOAD_TIMEOUT, headers: dict | None = None):
    """Open ``url`` for reading (the one place that touches the network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "tfbdl", **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (official https/http addresses)


def download(remote: RemoteFile, dest_dir: Path, *, progress: bool = True,
             timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Download ``remote`` into ``dest_dir`` and return its path, resuming an interrupted download.

    Bytes go to ``.<name>.part`` (kept when a download is cut off, continued with an HTTP Range
    request next time), are verified, then renamed into place; a lock file keeps two processes
    from writing the same file. Raises :class:`DownloadFailed` (a DatasetNotFound) when offline or
    when every address fails or stalls for ``timeout`` seconds, ChecksumError when the bytes do
    not match the official file (the partial file is then deleted).
    """
    target = dest_dir / remote.filename
    if remote.url is None:
        raise DownloadFailed(missing_message(remote, dest_dir, "it has no public download address"),
                             "it has no public download address")
    if offline():
        reason = f"downloads are off ({OFFLINE_ENV} is set)"
        raise DownloadFailed(missing_message(remote, dest_dir, reason), reason)
    created = _missing_folders(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        lock = _locked(dest_dir / f".{remote.filename}.lock")
    except OSError as error:
        reason = f"cannot write there ({error.strerror or error})"
        raise DownloadFailed(missing_message(remote, dest_dir, reason), reason) from error
    with lock:
        if target.is_file():  # another process finished it while we waited for the lock
            verify_content(target, remote)
            return target
        partial = dest_dir / f".{remote.filename}.part"
        failures = []
        for url in (remote.url, *remote.mirrors):
            try:
                _fetch_into(url, partial, remote, progress=progress, timeout=timeout)
                break
            except _TransferError as error:
                failures.append(f"{url}: {error}")
        else:
            if not partial.exists():  # nothing was received: leave no lock file or new folder behind
                _remove_litter(dest_dir / f".{remote.filename}.lock", created)
            reason = "the download failed (" + "; ".join(failures) + ")"
            raise DownloadFailed(missing_message(remote, dest_dir, reason), "; ".join(failures))
        try:
            verify_content(partial, remote)
        except ChecksumError:
            partial.unlink(missing_ok=True)
            raise ChecksumError(f"the downloaded {remote.filename} does not match the official file, so it was "
                                f"deleted; run the command again, or put a verified copy in {dest_dir}") from None
        os.replace(partial, target)
        fsync_dir(dest_dir)
    return target


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_litter(lock_file: Path, created: list[Path]) -> None:
    """After a download that received nothing: delete its lock file and the folders it created
    (when empty), so that a failed attempt leaves a data folder as it found it. A process that
    waits on the same lock meanwhile still holds a valid (unlinked) lock and retries normally."""
    lock_file.unlink(missing_ok=True)
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty (another file arrived) or not ours to remove
            break


class _TransferError(Exception):
    """One address failed; the message says how in a few words."""


def _fetch_into(url: str, partial: Path, remote: RemoteFile, *, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``partial`` (a Range request when it has bytes already),
    retrying once more for every attempt that made progress before the connection broke."""
    host = urllib.parse.urlsplit(url).netloc
    if host in _unreachable:
        raise _TransferError(_unreachable[host])
    while True:
        before = partial.stat().st_size if partial.exists() else 0
        try:
            _transfer(url, partial, remote, progress=progress, timeout=timeout)
            return
        except _TransferError:
            after = partial.stat().st_size if partial.exists() else 0
            if after <= before:
                raise


def _transfer(url: str, partial: Path, remote: RemoteFile, *, progress: bool, timeout: float) -> None:
    import click  # a progress bar that needs nothing more than the CLI's own dependency

    offset = partial.stat().st_size if partial.exists() else 0
    try:
        response = open_url(url, timeout=timeout, headers={"Range": f"bytes={offset}-"} if offset else None)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the partial file is already whole (or not this file)
            if _matches(partial, remote):
                return
            partial.unlink()
        raise _TransferError(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = _short_reason(error, timeout)
        _unreachable[urllib.parse.urlsplit(url).netloc] = reason  # no connection: do not wait for it again
        raise _TransferError(reason) from None
    with response:
        resumed = offset and getattr(response, "status", 200) == 206
        length = _content_length(response)
        total = (offset + length) if (resumed and length) else (length or remote.size)
        with open(partial, "ab" if resumed else "wb") as sink, click.progressbar(
                length=total, label=f"downloading {remote.filename}",
                file=None if progress else open(os.devnull, "w")) as bar:
            bar.update(offset if resumed else 0)
            try:
                while chunk := response.read(_CHUNK):
                    sink.write(chunk)
                    bar.update(len(chunk))
            except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
                raise _TransferError(_short_reason(error, timeout)) from None
            finally:
                sink.flush()
                os.fsync(sink.fileno())
    written = partial.stat().st_size
    if total and length is not None and written < total:
        raise _TransferError(f"the connection closed after {written:,} of {total:,} bytes")


def _matches(path: Path, remote: RemoteFile) -> bool:
    try:
        verify_content(path, remote)
        return True
    except ChecksumError:
        return False


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError)


def _short_reason(error: BaseException, timeout: float) -> str:
    if _is_timeout(error):
        return f"the server sent nothing for {timeout:g} s (stalled)"
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
    return str(reason)


class _locked:
    """An exclusive advisory lock on ``path`` for the ``with`` block (POSIX; a no-op elsewhere)."""

    def __init__(self, path: Path):
        self.handle = open(path, "a")

    def __enter__(self):
        try:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover (not POSIX)
            pass
        return self

    def __exit__(self, *exc):
        self.handle.close()


def _content_length(response) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value and str(value).isdigit() else None


def missing_message(remote: RemoteFile, dest_dir: Path, reason: str) -> str:
    """A message that names the file, its address and where to put it."""
    where = f"from {remote.url}" if remote.url else "(see the dataset's documentation)"
    return (
        f"dataset file {remote.filename} is missing and {reason}. Get it {where} and put it in "
        f"{dest_dir} (or in a folder named by --data-dir or ${DATA_DIR_ENV})."
    )
