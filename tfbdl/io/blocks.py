"""Crash-safe, resumable HDF5 files of fixed-size arrays filled task by task (h5py, no TensorFlow).

A long computation split into tasks (blocks of a kernel matrix, of an NTK...) writes each task's
values into one store file as it finishes; a rerun skips the tasks already done. The file holds:

- the caller's datasets, of fixed shapes and one dtype, chunked in ``chunk x chunk`` tiles
  (ragged at the edges; a dataset with an empty axis is not chunked);
- ``task_done`` [n_tasks] uint8: ``task_done[i] == 1`` once task ``i`` is written completely and
  flushed to disk;
- root attributes: ``format`` and ``format_version`` (a :class:`StoreFormat`), the caller's
  metadata (what the values depend on, so that a stale file is recognised), then ``n_tasks``.

What a task writes is up to the caller: one or more regions (``(dataset, selection, values)``) of
the datasets, e.g. a block and its mirror image.

Crash safety: the file is created complete (every dataset allocated at its full size, chunks
aligned with the caller's blocks) in a temp file and renamed into place, so afterwards no HDF5
metadata ever changes; a task only overwrites its own regions, then the file is flushed and
fsynced, and only then is its ``task_done`` byte set (and flushed again). A process killed at any
instant, even by SIGKILL, leaves every task either complete and marked or unmarked, and the file
readable. Chunks are allocated without being filled, so on file systems with sparse files (ext4,
xfs, btrfs, Lustre, tmpfs...) only the regions written take disk space; regions never written
read as 0 and mean nothing.

One process writes a given file (HDF5 file locking refuses a second writer); readers may look at
it while it is written.

Testing: with the environment variable ``TFBDL_BLOCK_STORE_CRASH_AFTER=n`` a process kills itself
with SIGKILL right after writing (and syncing) the values of its ``n``-th task into a store, before
marking that task done: the worst moment for a crash.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
from typing import Any, Iterable, Mapping

import numpy as np

from tfbdl.errors import DataFormatError, InvalidOptionError, RunDirectoryError, ShapeError
from tfbdl.io.atomic import PathLike, atomic_path

__all__ = [
    "CRASH_AFTER_ENV",
    "MAX_CHUNK_BYTES",
    "TASK_DONE",
    "BlockStore",
    "StoreFormat",
    "create_store",
    "write_layout",
]

#: Name of the dataset of done marks.
TASK_DONE = "task_done"
#: HDF5's limit on the bytes of one chunk.
MAX_CHUNK_BYTES = 2**32 - 1
#: Environment variable: kill the process after writing its n-th task, before marking it.
CRASH_AFTER_ENV = "TFBDL_BLOCK_STORE_CRASH_AFTER"
_RESERVED = ("format", "format_version", "n_tasks")


@dataclasses.dataclass(frozen=True)
class StoreFormat:
    """What identifies one kind of store file.

    ``name`` and ``version`` are written as the ``format`` / ``format_version`` attributes;
    ``what`` names the kind in messages ("not a tfbdl {what} file"); ``datasets`` and ``attrs``
    are the dataset and metadata names every file of this kind must have.
    """

    name: str
    version: int
    what: str
    datasets: tuple[str, ...]
    attrs: tuple[str, ...] = ()


def _chunks(shape: tuple[int, ...], chunk: int) -> tuple[int, ...]:
    return tuple(min(chunk, s) for s in shape)


def write_layout(
    path: PathLike,
    fmt: StoreFormat,
    shapes: Mapping[str, tuple[int, ...]],
    dtype: Any,
    chunk: int,
    n_tasks: int,
    metadata: Mapping[str, Any],
) -> None:
    """Write an empty store at exactly ``path`` (not atomically; see :func:`create_store`).

    ``shapes``: dataset name -> shape, all of ``dtype``; ``metadata``: the root attributes
    (str, numbers, bools) besides ``format``, ``format_version`` and ``n_tasks``.
    """
    import h5py

    dtype = np.dtype(dtype)
    names = set(shapes)
    if names != set(fmt.datasets) or TASK_DONE in names:
        raise InvalidOptionError(f"a {fmt.what} store holds datasets {list(fmt.datasets)}, got {sorted(names)}")
    bad = [key for key in metadata if key in _RESERVED]
    missing = [key for key in fmt.attrs if key not in metadata]
    if bad or missing:
        raise InvalidOptionError(f"store metadata must not hold {bad} and must hold {missing}")
    for name, shape in shapes.items():
        if min(shape, default=1) > 0 and int(np.prod(_chunks(shape, chunk))) * dtype.itemsize > MAX_CHUNK_BYTES:
            raise InvalidOptionError(f"blocks of {chunk} make chunks of {name} over 4 GiB; pass a smaller block")
    with h5py.File(path, "w") as f:
        for name, shape in shapes.items():
            if min(shape, default=1) == 0:
                f.create_dataset(name, shape=shape, dtype=dtype)
                continue
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            f.create_dataset(name, shape=shape, dtype=dtype, chunks=_chunks(shape, chunk), dcpl=dcpl,
                             fill_time="never")
        if n_tasks > 0:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            f.create_dataset(TASK_DONE, shape=(n_tasks,), dtype="uint8", dcpl=dcpl, fillvalue=0,
                             fill_time="alloc")
        else:
            f.create_dataset(TASK_DONE, shape=(0,), dtype="uint8")
        f.attrs["format"] = fmt.name
        f.attrs["format_version"] = fmt.version
        for key, value in metadata.items():
            f.attrs[key] = value
        f.attrs["n_tasks"] = int(n_tasks)


def create_store(
    path: PathLike,
    fmt: StoreFormat,
    shapes: Mapping[str, tuple[int, ...]],
    dtype: Any,
    chunk: int,
    n_tasks: int,
    metadata: Mapping[str, Any],
) -> pathlib.Path:
    """Create an empty store at ``path`` atomically (its folder too); returns ``path``.

    Arguments as for :func:`write_layout`. The file appears complete or not at all.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write_layout(tmp, fmt, shapes, dtype, chunk, n_tasks, metadata)
    return path


def _open_h5(path: pathlib.Path, writable: bool):
    import h5py

    try:
        if not writable:
            # The layout never changes after creation, so reading while a writer works is safe.
            return h5py.File(path, "r", locking=False)
        return h5py.File(path, "r+")
    except FileNotFoundError:
        raise
    except OSError as e:
        if "lock" in str(e).lower():
            raise RunDirectoryError(
                f"{path} is open for writing in another process (two runs of the same job?); "
                "wait for it to finish or stop it, then rerun"
            ) from e
        raise DataFormatError(
            f"{path} is not a readable HDF5 file ({e}); delete it and rerun to recompute it"
        ) from e


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _crash_after() -> int | None:
    value = os.environ.get(CRASH_AFTER_ENV, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidOptionError(f"{CRASH_AFTER_ENV} must be a whole number of tasks, got {value!r}") from None


def _selection_shape(selection: Any, shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    """Shape of a tuple of unit-step slices inside ``shape`` (ShapeError otherwise)."""
    selection = selection if isinstance(selection, tuple) else (selection,)
    if len(selection) != len(shape) or not all(isinstance(s, slice) and s.step in (None, 1) for s in selection):
        raise ShapeError(f"a region of {what} must be one unit-step slice per axis ({len(shape)}), got {selection!r}")
    out = []
    for s, n in zip(selection, shape):
        start = 0 if s.start is None else int(s.start)
        stop = n if s.stop is None else int(s.stop)
        if not 0 <= start <= stop <= n:
            raise ShapeError(f"region {selection!r} is outside {what} of shape {shape}")
        out.append(stop - start)
    return tuple(out)


class BlockStore:
    """An open store file: which tasks are done, reading regions, and writing a task durably.

    ``BlockStore(path, fmt)`` opens for reading (safe while another process writes);
    ``writable=True`` opens for writing (refused while another process writes). A file of
    another kind or format version is refused with DataFormatError.
    """

    def __init__(self, path: PathLike, fmt: StoreFormat, *, writable: bool = False):
        self.path = pathlib.Path(path)
        self.format = fmt
        self.writable = bool(writable)
        self._file = _open_h5(self.path, self.writable)
        try:
            self.attrs = self._check()
            self._done_ds = self._file[TASK_DONE]
            self._done = self._done_ds[()].astype(bool)
            self._crash_after = _crash_after() if self.writable else None
        except BaseException:
            self._file.close()
            raise
        self._fd = self._file.id.get_vfd_handle() if self.writable else None
        self._written = 0

    def _check(self) -> dict[str, Any]:
        """The root attributes as plain values, after checking kind, version and contents."""
        fmt, f = self.format, self._file
        attrs = {key: _plain(value) for key, value in f.attrs.items()}
        if attrs.get("format") != fmt.name:
            got = "missing 'format'" if "format" not in attrs else f"format {attrs['format']!r}"
            raise DataFormatError(f"{self.path} is not a tfbdl {fmt.what} file ({got}); use another path or delete it")
        if attrs.get("format_version") != fmt.version:
            raise DataFormatError(
                f"{self.path} has {fmt.what}-file format version {attrs.get('format_version')}, this tfbdl reads "
                f"version {fmt.version}; recompute it at another path or delete it"
            )
        for name in (*fmt.attrs, "n_tasks"):
            if name not in attrs:
                raise DataFormatError(
                    f"{self.path} is not a tfbdl {fmt.what} file (missing {name!r}); use another path or delete it"
                )
        for name in (*fmt.datasets, TASK_DONE):
            if name not in f:
                raise DataFormatError(
                    f"{self.path} is not a tfbdl {fmt.what} file (missing {name!r}); use another path or delete it"
                )
        if f[TASK_DONE].shape != (attrs["n_tasks"],):
            raise DataFormatError(
                f"{self.path} is damaged ({TASK_DONE} has shape {f[TASK_DONE].shape} for {attrs['n_tasks']} "
                "tasks); delete it and rerun to recompute it"
            )
        return attrs

    # ------------------------------------------------------------------ state

    @property
    def metadata(self) -> dict[str, Any]:
        """The caller's root attributes (all but ``format``, ``format_version`` and ``n_tasks``)."""
        return {k: v for k, v in self.attrs.items() if k not in _RESERVED}

    @property
    def n_tasks(self) -> int:
        """Number of tasks of the file."""
        return int(self.attrs["n_tasks"])

    @property
    def done(self) -> np.ndarray:
        """``[n_tasks]`` bool: which tasks are done (as of opening, plus this object's writes)."""
        return self._done.copy()

    def is_done(self, index: int) -> bool:
        """Whether task ``index`` is done."""
        return bool(self._done[index])

    def dataset(self, name: str):
        """The h5py Dataset ``name`` (valid until :meth:`close`); write only through :meth:`write`."""
        return self._file[name]

    def read(self, name: str, selection: Any = None, dtype: Any = None) -> np.ndarray:
        """Values of dataset ``name`` (the whole of it, or a tuple of unit-step slices), as ``dtype``
        (default: the stored dtype; HDF5 converts while reading)."""
        ds = self._file[name]
        shape = ds.shape if selection is None else _selection_shape(selection, ds.shape, name)
        out = np.empty(shape, dtype=ds.dtype if dtype is None else np.dtype(dtype))
        if out.size:
            ds.read_direct(out, selection)
        return out

    # ------------------------------------------------------------------ writing

    def _sync(self, durable: bool) -> None:
        if durable:
            self._file.flush()
            os.fsync(self._fd)

    def write(self, index: int, regions: Iterable[tuple[str, Any, Any]], *, durable: bool = True) -> None:
        """Write task ``index``: each ``(dataset, selection, values)`` region, then mark it done.

        With ``durable`` (the default) the values are flushed and fsynced before the mark is
        set, and the mark after; ``durable=False`` skips both (for a file that is not in place
        yet, made durable as a whole when it is renamed). Rewriting a done task unmarks it first.
        """
        if not self.writable:
            raise InvalidOptionError(f"{self.path} was opened for reading; open it with writable=True")
        index = int(index)
        if not 0 <= index < self.n_tasks:
            raise InvalidOptionError(f"task {index} is out of range: {self.path} has {self.n_tasks} tasks")
        regions = [(name, sel, np.asarray(values)) for name, sel, values in regions]
        for name, sel, values in regions:
            expected = _selection_shape(sel, self._file[name].shape, name)
            if values.shape != expected:
                raise ShapeError(f"region {sel!r} of {name} needs values of shape {expected}, got {values.shape}")
        if self._done[index]:  # a torn rewrite must not stay listed as done
            self._done_ds[index] = 0
            self._sync(durable)
            self._done[index] = False
        for name, sel, values in regions:
            self._file[name][sel] = values
        self._sync(durable)
        if durable and self._crash_after is not None:
            self._written += 1
            if self._written >= self._crash_after:
                os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        self._done_ds[index] = 1
        self._sync(durable)
        self._done[index] = True

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Flush and close the file (safe to call twice)."""
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> "BlockStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
