"""Finding, verifying and downloading dataset files.

Lookup order for a file: the ``data_dir`` argument, ``$TFBDL_DATA_DIR``, ``~/.cache/tfbdl/datasets``,
then system dataset folders (Debian's ``dataset-fashion-mnist`` installs under
``/usr/share/datasets/fashion-mnist``). Inside each root a file may sit in the dataset's own
folder or at the top.

Verification reads the *decompressed* content: Linux distributions recompress gzip files, so
an archive's bytes can differ while the data are the same. A file passes if its decompressed
content has the known SHA-256, or if its raw bytes have the official archive's MD5.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tfbdl.errors import ChecksumError, DatasetNotFound

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


def read_content(path: Path) -> tuple[bytes, bytes]:
    """Return (raw bytes, decompressed content) of a file; gzip is detected by its magic bytes."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return raw, gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise ChecksumError(f"{path}: broken gzip stream ({error}); delete it and fetch it again") from error
    return raw, raw


def verify_content(path: Path, remote: RemoteFile) -> bytes:
    """Check a file against the official checksums and return its decompressed content.

    Raises ChecksumError (and parses nothing) when neither checksum matches.
    """
    raw, content = read_content(path)
    if remote.content_sha256 and hashlib.sha256(content).hexdigest() == remote.content_sha256:
        return content
    if remote.archive_md5 and hashlib.md5(raw).hexdigest() == remote.archive_md5:
        return content
    if not remote.content_sha256 and not remote.archive_md5:
        raise ChecksumError(f"{path}: no checksum is known for {remote.filename}, so it cannot be verified")
    raise ChecksumError(
        f"{path} does not match the official {remote.filename} "
        f"(SHA-256 of its content {hashlib.sha256(content).hexdigest()[:16]}...). "
        "It is corrupt, truncated or another file: delete it and fetch the dataset again."
    )


def open_url(url: str, timeout: float = 60.0):
    """Open ``url`` for reading (the one place that touches the network; tests replace it)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (official https/http addresses)


def download(remote: RemoteFile, dest_dir: Path, *, progress: bool = True) -> Path:
    """Download ``remote`` into ``dest_dir``: temp file, verify, then rename into place.

    Raises DatasetNotFound when offline (or ``TFBDL_OFFLINE=1``), ChecksumError when the
    download does not match; a failed download leaves nothing behind.
    """
    import click  # a progress bar that needs nothing more than the CLI's own dependency

    target = dest_dir / remote.filename
    if remote.url is None:
        raise DatasetNotFound(missing_message(remote, dest_dir, "it has no public download address"))
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        raise DatasetNotFound(missing_message(remote, dest_dir, f"downloads are off ({OFFLINE_ENV} is set)"))
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{remote.filename}.", suffix=".part")
    except OSError as error:
        raise DatasetNotFound(missing_message(remote, dest_dir, f"cannot write there ({error})")) from error
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as sink:
            try:
                response = _open_first(remote)
                length = _content_length(response) or remote.size
                with response, click.progressbar(length=length, label=f"downloading {remote.filename}",
                                                 file=None if progress else open(os.devnull, "w")) as bar:
                    while chunk := response.read(1 << 20):
                        sink.write(chunk)
                        bar.update(len(chunk))
            except (urllib.error.URLError, OSError, TimeoutError) as error:
                raise DatasetNotFound(missing_message(remote, dest_dir, f"the download failed ({error})")) from error
            sink.flush()
            os.fsync(sink.fileno())
        verify_content(temp, remote)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def _open_first(remote: RemoteFile):
    """Open the official address, falling back to the mirrors; re-raise the last failure."""
    error = None
    for url in (remote.url, *remote.mirrors):
        try:
            return open_url(url)
        except (urllib.error.URLError, OSError, TimeoutError) as failure:
            error = failure
    raise error


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
