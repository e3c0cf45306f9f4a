"""Kernel matrices of a data set computed block by block into one resumable HDF5 file.

The kernel is reached only through two plain callables, so this module works with any kernel:

- ``pair_fn(X1, X2=None) -> [n1, n2]``: cross-covariances; ``X2=None`` means ``K(X1, X1)``
  (a kernel may exploit the symmetry and treat same-point pairs exactly). Diagonal blocks of
  ``Kxx`` are computed as ``pair_fn(Xb, None)``.
- ``diag_fn(X) -> [n]``: the variances ``k(x, x)``.

:func:`callables_from_gpflow` makes both from a ``gpflow.kernels.Kernel``. TensorFlow is imported
only when ``devices`` is given, so importing this module is cheap.

File format (one HDF5 file per shard)
-------------------------------------
Datasets, stored as ``store_dtype`` (float64 unless asked otherwise):

- ``Kxx`` [N, N]: only the blocks on and above the diagonal are computed and written; the lower
  triangle reads as 0 in the raw dataset, and :func:`read_kernels` fills it by symmetry.
- ``Kxt`` [N, Nt], ``Kx_diag`` [N], ``Kt_diag`` [Nt].
- ``task_done`` [n_tasks] uint8: ``task_done[i] == 1`` once task ``i`` of :func:`plan_tasks` is
  written completely and flushed to disk.

Root attributes: ``format`` (``"tfbdl-kernel-blocks"``), ``format_version``, ``config`` (the
caller's dict as canonical JSON), ``n_train``, ``n_test``, ``block``, ``store_dtype``, ``n_tasks``,
``inputs_sha256`` (:func:`inputs_fingerprint` of the input arrays), ``shard_index``,
``shard_count``.

Crash safety: the file is a :class:`tfbdl.io.blocks.BlockStore`. It is created complete (every
dataset allocated at its full size, chunks of ``block x block`` aligned with the tasks) in a temp
file and renamed into place, so afterwards no HDF5 metadata ever changes; a task only overwrites
its own chunk(s), then the file is flushed and fsynced, and only then is its ``task_done`` byte set
(and flushed again). A process killed at any instant, even by SIGKILL, leaves every block either
complete and marked or unmarked, and the file readable. Chunks are allocated without being filled,
so on file systems with sparse files (ext4, xfs, btrfs, Lustre, tmpfs...) only the blocks written
take disk space: about half of ``Kxx`` plus ``Kxt`` for a complete file.

Sharding
--------
``shard=(i, n)`` with shards numbered from 0 (``0 <= i <= n - 1``) takes tasks ``i, i + n,
i + 2n, ...`` of the plan (round-robin). With ``n > 1`` each shard writes its own file, named from
``path`` by :func:`shard_path`: a trailing ``.h5`` is replaced by ``.shard-<i>-of-<n>.h5``
(``kernels.h5`` -> ``kernels.shard-0-of-4.h5``); a path without the ``.h5`` suffix gets it
appended (``kernels`` -> ``kernels.shard-0-of-4.h5``). :func:`merge_kernel_files` joins the shard
files into one complete file. One process writes a given file (HDF5 file locking refuses a
second writer); readers (:func:`kernel_file_status`) may look at it while it is written.

Memory: one block of inputs and outputs at a time per worker (one worker, or one per device).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import threading
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from tfbdl.errors import InvalidOptionError, RunDirectoryError, ShapeError, TfbdlError
from tfbdl.io.atomic import atomic_path
from tfbdl.io.blocks import MAX_CHUNK_BYTES, BlockStore, StoreFormat, create_store, write_layout
from tfbdl.io.jsonio import canonical_json
from tfbdl.validate import integer

__all__ = [
    "KERNEL_NAMES",
    "IncompleteKernelsError",
    "Task",
    "callables_from_gpflow",
    "compute_kernel_file",
    "inputs_fingerprint",
    "kernel_file_status",
    "merge_kernel_files",
    "parse_shard",
    "plan_tasks",
    "read_kernels",
    "shard_path",
    "shard_tasks",
]

PathLike = str | os.PathLike
PairFn = Callable[..., Any]
DiagFn = Callable[[np.ndarray], Any]

FORMAT = "tfbdl-kernel-blocks"
FORMAT_VERSION = 1
KERNEL_NAMES = ("Kxx", "Kxt", "Kx_diag", "Kt_diag")
_META_KEYS = ("n_train", "n_test", "block", "store_dtype", "config", "inputs_sha256", "shard_index", "shard_count")
_STORE = StoreFormat(FORMAT, FORMAT_VERSION, "kernel", KERNEL_NAMES, _META_KEYS)


class IncompleteKernelsError(TfbdlError):
    """A kernel file (or a set of shard files) does not yet hold every block."""


# --------------------------------------------------------------------------- tasks


@dataclasses.dataclass(frozen=True)
class Task:
    """One unit of work: a block of ``Kxx`` / ``Kxt`` or a chunk of a diagonal.

    ``rows`` and ``cols`` are ``(start, stop)`` bounds; ``cols`` is None for the diagonals
    ``Kx_diag`` / ``Kt_diag`` (whose ``rows`` index the diagonal).
    """

    matrix: str
    rows: tuple[int, int]
    cols: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the values this task writes."""
        r = self.rows[1] - self.rows[0]
        return (r,) if self.cols is None else (r, self.cols[1] - self.cols[0])

    @property
    def selection(self) -> tuple[slice, ...]:
        """The numpy/h5py index of the task's region in its dataset."""
        r = slice(*self.rows)
        return (r,) if self.cols is None else (r, slice(*self.cols))

    def __str__(self) -> str:
        r = f"{self.rows[0]}:{self.rows[1]}"
        return f"{self.matrix}[{r}]" if self.cols is None else f"{self.matrix}[{r}, {self.cols[0]}:{self.cols[1]}]"


def _bounds(n: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(s + block, n)) for s in range(0, n, block)]


def plan_tasks(n_train: int, n_test: int, block: int) -> list[Task]:
    """Every task of a kernel file, in a fixed order.

    ``Kxx`` blocks on and above the diagonal (row-major), then ``Kxt`` blocks (row-major), then
    chunks of ``Kx_diag`` and of ``Kt_diag``; blocks are ``block x block`` (ragged at the edges),
    diagonal chunks ``block`` long. Together they cover the upper triangle of ``Kxx``, all of
    ``Kxt`` and both diagonals exactly once.
    """
    n_train = integer(n_train, "n_train", 1)
    n_test = integer(n_test, "n_test", 0)
    block = integer(block, "block", 1)
    train, test = _bounds(n_train, block), _bounds(n_test, block)
    tasks = [Task("Kxx", r, c) for i, r in enumerate(train) for c in train[i:]]
    tasks += [Task("Kxt", r, c) for r in train for c in test]
    tasks += [Task("Kx_diag", r) for r in train]
    tasks += [Task("Kt_diag", r) for r in test]
    return tasks


def _check_shard(shard: Any) -> tuple[int, int]:
    if isinstance(shard, str):
        return parse_shard(shard)
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise InvalidOptionError(f"shard must be (index, count) or 'i/n', got {shard!r}") from None
    count = integer(count, "the number of shards", 1)
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise InvalidOptionError(
            f"shard index {index!r} is out of range for {count} shard(s): shards are numbered "
            f"from 0, so the index must be in 0..{count - 1}"
        )
    return int(index), count


_SHARD_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``: shard ``i`` of ``n``, numbered from 0 (``0 <= i <= n - 1``)."""
    m = _SHARD_TEXT.match(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidOptionError(
            f"--shard must look like I/N (e.g. 0/4): shard I of N, numbered from 0, so I is in "
            f"0..N-1; got {text!r}"
        )
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise InvalidOptionError(f"--shard {text!r}: the number of shards N must be at least 1")
    if index >= count:
        raise InvalidOptionError(
            f"--shard {text!r}: shards are numbered from 0, so with N={count} the index I must be "
            f"in 0..{count - 1}"
        )
    return index, count


def shard_tasks(tasks: Sequence[Task], index: int, count: int) -> list[Task]:
    """Shard ``index`` of ``count`` (0-based): tasks ``index, index + count, ...`` of ``tasks``."""
    index, count = _check_shard((index, count))
    return list(tasks[index::count])


def shard_path(path: PathLike, index: int, count: int) -> pathlib.Path:
    """The file a shard writes: ``path`` itself when ``count == 1``; otherwise ``.h5`` is
    replaced by (or, if absent, suffixed with) ``.shard-<index>-of-<count>.h5``."""
    index, count = _check_shard((index, count))
    path = pathlib.Path(path)
    if count == 1:
        return path
    stem = path.name[: -len(".h5")] if path.name.endswith(".h5") else path.name
    return path.with_name(f"{stem}.shard-{index}-of-{count}.h5")


# --------------------------------------------------------------------------- inputs


def callables_from_gpflow(kernel) -> tuple[PairFn, DiagFn]:
    """``(pair_fn, diag_fn)`` evaluating a ``gpflow.kernels.Kernel`` to numpy arrays."""
    if not (callable(getattr(kernel, "K", None)) and callable(getattr(kernel, "K_diag", None))):
        raise InvalidOptionError(f"expected a gpflow kernel with K and K_diag, got {type(kernel).__name__}")

    def pair_fn(X1, X2=None):
        return np.asarray(kernel.K(X1, X2))

    def diag_fn(X):
        return np.asarray(kernel.K_diag(X))

    return pair_fn, diag_fn


def _check_inputs(X_train: Any, X_test: Any) -> tuple[np.ndarray, np.ndarray]:
    X_train = np.asarray(X_train)
    X_test = np.asarray(X_test)
    for name, X in (("X_train", X_train), ("X_test", X_test)):
        if X.ndim != 2:
            raise ShapeError(f"{name} must be 2-D [examples, features] (flatten images first), got shape {X.shape}")
        if X.dtype not in (np.float32, np.float64):
            raise InvalidOptionError(f"{name} must be float32 or float64, got {X.dtype}; convert it with .astype")
    if X_train.shape[0] < 1:
        raise ShapeError("X_train has no rows; pass at least one training example")
    if X_test.shape[1] != X_train.shape[1]:
        raise ShapeError(
            f"X_train has {X_train.shape[1]} features but X_test has {X_test.shape[1]}; "
            "flatten both the same way"
        )
    return X_train, X_test


def inputs_fingerprint(X_train: np.ndarray, X_test: np.ndarray) -> str:
    """SHA-256 (hex) of the dtypes, shapes and bytes of both input arrays, read in slices."""
    h = hashlib.sha256(b"tfbdl-kernel-inputs-v1\0")
    for name, X in (("train", np.asarray(X_train)), ("test", np.asarray(X_test))):
        h.update(f"{name}:{X.dtype.str}:{X.shape}\0".encode())
        row_bytes = max(1, X[0].nbytes) if len(X) else 1
        step = max(1, (16 << 20) // row_bytes)
        for start in range(0, len(X), step):
            h.update(np.ascontiguousarray(X[start : start + step]).data)
    return h.hexdigest()


def _config_json(config: Any) -> str:
    if not isinstance(config, dict):
        raise InvalidOptionError(f"config must be a dict (kernel name and parameters), got {type(config).__name__}")
    try:
        return canonical_json(config)
    except (TypeError, ValueError) as e:
        raise InvalidOptionError(f"config must hold JSON values only ({e})") from e


def _check_store_dtype(store_dtype: Any) -> np.dtype:
    try:
        dtype = np.dtype(store_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise InvalidOptionError(f"store_dtype must be a float type such as 'float64' or 'float32', got {store_dtype!r}")
    return dtype


# --------------------------------------------------------------------------- file layout


def _meta(n_train, n_test, block, dtype, config_json, fingerprint, index, count) -> dict:
    """The root attributes of a kernel file (besides ``format``, ``format_version``, ``n_tasks``)."""
    return {
        "n_train": int(n_train),
        "n_test": int(n_test),
        "block": int(block),
        "store_dtype": np.dtype(dtype).name,
        "config": config_json,
        "inputs_sha256": fingerprint,
        "shard_index": int(index),
        "shard_count": int(count),
    }


def _shapes(n_train: int, n_test: int) -> dict[str, tuple[int, ...]]:
    return {"Kxx": (n_train, n_train), "Kxt": (n_train, n_test), "Kx_diag": (n_train,), "Kt_diag": (n_test,)}


def _layout(meta: dict) -> tuple:
    """``(format, shapes, dtype, chunk, n_tasks, metadata)`` of the kernel file of ``meta``: the
    arguments of :func:`tfbdl.io.blocks.create_store` after the path."""
    n, nt, block = meta["n_train"], meta["n_test"], meta["block"]
    return _STORE, _shapes(n, nt), meta["store_dtype"], block, len(plan_tasks(n, nt, block)), meta


def _open_store(path: pathlib.Path, writable: bool = False) -> BlockStore:
    """Open a kernel file (DataFormatError if it is none; RunDirectoryError if another process
    writes it and ``writable``)."""
    return BlockStore(path, _STORE, writable=writable)


def _read_meta(store: BlockStore) -> dict:
    """The kernel file's metadata (the keys of :func:`_meta`)."""
    return {key: store.metadata[key] for key in _META_KEYS}


_DIFF_NAMES = {
    "inputs_sha256": "input data (X_train / X_test)",
    "config": "kernel config",
    "n_train": "number of training points",
    "n_test": "number of test points",
    "block": "block size",
    "store_dtype": "store_dtype",
    "shard_index": "shard",
    "shard_count": "number of shards",
}


def _differences(a: dict, b: dict, keys: Iterable[str]) -> list[str]:
    out = []
    for key in keys:
        x, y = a[key], b[key]
        if key == "config":
            x, y = json.loads(x), json.loads(y)
        if x != y:
            out.append(_DIFF_NAMES[key])
    return out


# --------------------------------------------------------------------------- computing


def compute_kernel_file(
    path: PathLike,
    pair_fn: PairFn,
    diag_fn: DiagFn,
    X_train: np.ndarray,
    X_test: np.ndarray,
    *,
    block: int = 200,
    shard: tuple[int, int] | str = (0, 1),
    config: dict,
    store_dtype: str = "float64",
    progress: bool = True,
    devices: Sequence[str] | None = None,
) -> pathlib.Path:
    """Compute this shard's blocks into its kernel file, skipping those already done.

    Creates the file (at :func:`shard_path` ``(path, *shard)``) or resumes it; a file started
    with other inputs, config, block size or store_dtype is refused (RunDirectoryError). Each task
    is computed, written, flushed and fsynced, and only then marked done, so the call can be
    killed at any moment and rerun to resume. ``progress`` shows a bar with an ETA on stderr.
    ``devices`` (TensorFlow device names, e.g. the logical GPUs) runs one worker thread per
    device, each evaluating the callables under ``tf.device(d)``; writes are serialised. Returns
    the path of the file written.
    """
    X_train, X_test = _check_inputs(X_train, X_test)
    block = integer(block, "block", 1)
    index, count = _check_shard(shard)
    dtype = _check_store_dtype(store_dtype)
    if block * block * dtype.itemsize > MAX_CHUNK_BYTES:
        raise InvalidOptionError(f"block={block} makes blocks over 4 GiB; pass a smaller block")
    if not callable(pair_fn) or not callable(diag_fn):
        raise InvalidOptionError("pair_fn and diag_fn must be callables (see callables_from_gpflow)")
    if devices is not None:
        devices = list(devices)
        if not devices or not all(isinstance(d, str) and d for d in devices):
            raise InvalidOptionError(f"devices must be None or a non-empty list of device names, got {devices!r}")
    n, nt = X_train.shape[0], X_test.shape[0]
    meta = _meta(n, nt, block, dtype, _config_json(config), inputs_fingerprint(X_train, X_test), index, count)
    tasks = plan_tasks(n, nt, block)
    out = shard_path(path, index, count)

    if not out.exists():
        create_store(out, *_layout(meta))

    with _open_store(out, writable=True) as store:
        diff = _differences(_read_meta(store), meta, _DIFF_NAMES)
        if diff:
            raise RunDirectoryError(
                f"{out} was started with a different {', '.join(diff)}; to resume it rerun with the "
                "same data and options, otherwise use another path or delete the file"
            )
        todo = [i for i in range(index, len(tasks), count) if not store.is_done(i)]
        if not todo:
            return out

        def compute(i: int) -> np.ndarray:
            return _evaluate(tasks[i], pair_fn, diag_fn, X_train, X_test, dtype)

        def write(i: int, values: np.ndarray) -> None:
            store.write(i, [(tasks[i].matrix, tasks[i].selection, values)])

        bar = _progress(progress, len(todo), out)
        with bar:
            if devices is None:
                for i in todo:
                    write(i, compute(i))
                    bar.update(1)
            else:
                _run_on_devices(devices, todo, compute, write, bar)
    return out


def _evaluate(task: Task, pair_fn, diag_fn, X_train, X_test, dtype) -> np.ndarray:
    r = slice(*task.rows)
    if task.matrix == "Kxx":
        c = slice(*task.cols)
        values = pair_fn(X_train[r], None) if r == c else pair_fn(X_train[r], X_train[c])
    elif task.matrix == "Kxt":
        values = pair_fn(X_train[r], X_test[slice(*task.cols)])
    elif task.matrix == "Kx_diag":
        values = diag_fn(X_train[r])
    else:
        values = diag_fn(X_test[r])
    values = np.asarray(values)
    if values.shape != task.shape:
        what = "diag_fn" if task.cols is None else "pair_fn"
        raise ShapeError(f"{what} returned shape {values.shape} for {task}, expected {task.shape}")
    return values.astype(dtype, copy=False)


def _progress(show: bool, length: int, path: pathlib.Path):
    from tfbdl.progress import progress

    return progress(length, f"kernel blocks -> {path.name}", show=show)


def _run_on_devices(devices, todo, compute, write, bar) -> None:
    """One worker thread per device; each takes the next task, computes it under
    ``tf.device``, then writes it while holding a lock."""
    import tensorflow as tf

    pending = iter(todo)
    take_lock, write_lock = threading.Lock(), threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(device: str) -> None:
        try:
            while not stop.is_set():
                with take_lock:
                    i = next(pending, None)
                if i is None:
                    return
                with tf.device(device):
                    values = compute(i)
                with write_lock:
                    write(i, values)
                    bar.update(1)
        except BaseException as e:  # noqa: BLE001  (re-raised in the calling thread)
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=worker, args=(d,), name=f"kernel-blocks-{d}", daemon=True) for d in devices]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except BaseException:
        stop.set()
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------- merging, reading


def merge_kernel_files(shard_paths: Sequence[PathLike], out_path: PathLike) -> pathlib.Path:
    """Join shard files into one complete kernel file at ``out_path``, atomically.

    The shards must share inputs, config, sizes, block and store_dtype (RunDirectoryError
    otherwise), and together hold every task (IncompleteKernelsError naming the missing tasks
    and their shards otherwise). Blocks are copied one at a time.
    """
    paths = [pathlib.Path(p) for p in shard_paths]
    if not paths:
        raise InvalidOptionError("merge_kernel_files needs at least one shard file")
    out_path = pathlib.Path(out_path)
    for p in paths:
        if not p.exists():
            raise RunDirectoryError(f"shard file {p} does not exist; compute that shard first")
    stores: list[BlockStore] = []
    try:
        metas = []
        for p in paths:
            stores.append(_open_store(p))
            metas.append(_read_meta(stores[-1]))
        keys = ("inputs_sha256", "config", "n_train", "n_test", "block", "store_dtype")
        for p, m in zip(paths[1:], metas[1:]):
            diff = _differences(metas[0], m, keys)
            if diff:
                raise RunDirectoryError(
                    f"{p} and {paths[0]} differ in {', '.join(diff)}, so they are not shards of one "
                    "kernel file; merge only the shards of one run"
                )
        m0 = metas[0]
        tasks = plan_tasks(m0["n_train"], m0["n_test"], m0["block"])
        owner = np.full(len(tasks), -1, dtype=np.int64)
        for k, store in enumerate(stores):
            owner[store.done & (owner < 0)] = k
        missing = np.flatnonzero(owner < 0)
        if missing.size:
            counts = {m["shard_count"] for m in metas}
            where = ""
            if len(counts) == 1:
                c = counts.pop()
                shards = sorted({int(i) % c for i in missing})
                where = f"; they belong to shard(s) {', '.join(f'{s}/{c}' for s in shards)}"
            raise IncompleteKernelsError(
                f"cannot merge: {missing.size} of {len(tasks)} tasks are in none of the given files "
                f"({_list_tasks(tasks, missing)}){where}; compute those shards (rerun the same "
                "command to resume) and pass every shard file"
            )
        meta = dict(m0, shard_index=0, shard_count=1)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_path) as tmp:
            write_layout(tmp, *_layout(meta))
            with _open_store(tmp, writable=True) as merged:
                for i, task in enumerate(tasks):
                    values = stores[owner[i]].read(task.matrix, task.selection)
                    merged.write(i, [(task.matrix, task.selection, values)], durable=False)
    finally:
        for store in stores:
            store.close()
    return out_path


def _list_tasks(tasks: Sequence[Task], indices: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(tasks[i]) for i in indices[:limit])
    more = len(indices) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def kernel_file_status(path: PathLike) -> dict:
    """Progress of one kernel file: ``done`` / ``total`` tasks of its shard, per matrix too.

    Safe to call while another process writes the file. A missing file gives ``exists: False``
    (and ``done: 0``, ``total: None``).
    """
    path = pathlib.Path(path)
    if not path.exists():
        return {"path": str(path), "exists": False, "done": 0, "total": None, "complete": False}
    with _open_store(path) as store:
        meta = _read_meta(store)
        done = store.done
    tasks = plan_tasks(meta["n_train"], meta["n_test"], meta["block"])
    index, count = meta["shard_index"], meta["shard_count"]
    mine = range(index, len(tasks), count)
    by_matrix = {name: [0, 0] for name in KERNEL_NAMES}
    for i in mine:
        by_matrix[tasks[i].matrix][1] += 1
        by_matrix[tasks[i].matrix][0] += int(done[i])
    n_done = sum(v[0] for v in by_matrix.values())
    return {
        "path": str(path),
        "exists": True,
        "done": n_done,
        "total": len(mine),
        "complete": n_done == len(mine),
        "by_matrix": {k: tuple(v) for k, v in by_matrix.items()},
        "shard": (index, count),
        "tasks_in_plan": len(tasks),
        "n_train": meta["n_train"],
        "n_test": meta["n_test"],
        "block": meta["block"],
        "store_dtype": meta["store_dtype"],
        "config": json.loads(meta["config"]),
    }


def read_kernels(path: PathLike, names: Iterable[str] = KERNEL_NAMES) -> dict[str, Any]:
    """The matrices of a complete kernel file, plus its ``config`` dict.

    ``Kxx`` comes back as the full symmetric matrix (lower triangle mirrored from the computed
    upper blocks, in place, so memory is the N x N result and nothing more). ``names`` picks the
    arrays to read (any of ``Kxx``, ``Kxt``, ``Kx_diag``, ``Kt_diag``); only their tasks need to be
    done. Raises IncompleteKernelsError if some are missing.
    """
    path = pathlib.Path(path)
    names = list(names)
    bad = [n for n in names if n not in KERNEL_NAMES]
    if bad:
        raise InvalidOptionError(f"unknown kernel array(s) {bad}; choose from {list(KERNEL_NAMES)}")
    if not path.exists():
        raise RunDirectoryError(f"{path} does not exist; compute it first with compute_kernel_file")
    with _open_store(path) as store:
        meta = _read_meta(store)
        tasks = plan_tasks(meta["n_train"], meta["n_test"], meta["block"])
        done = store.done
        missing = [i for i, t in enumerate(tasks) if t.matrix in names and not done[i]]
        if missing:
            hint = "rerun the same command to resume it"
            if meta["shard_count"] > 1:
                hint = (f"this is shard {meta['shard_index']} of {meta['shard_count']}: finish every "
                        "shard (rerun the same commands to resume), then merge them with merge_kernel_files")
            raise IncompleteKernelsError(
                f"{path} is incomplete: {len(missing)} of {len(tasks)} tasks are missing "
                f"({_list_tasks(tasks, missing, 4)}); {hint}"
            )
        out: dict[str, Any] = {}
        for name in names:
            ds = store.dataset(name)
            arr = np.empty(ds.shape, dtype=ds.dtype)
            if name == "Kxx":
                for t in tasks:
                    if t.matrix == "Kxx":
                        ds.read_direct(arr, t.selection, t.selection)
                _mirror_upper(arr, [t for t in tasks if t.matrix == "Kxx"])
            elif arr.size:
                ds.read_direct(arr)
            out[name] = arr
    out["config"] = json.loads(meta["config"])
    return out


def _mirror_upper(K: np.ndarray, blocks: Sequence[Task]) -> None:
    """Fill the lower triangle of ``K`` from its upper-triangle blocks, in place."""
    for t in blocks:
        (r0, r1), (c0, c1) = t.rows, t.cols
        if r0 == c0:
            sub = K[r0:r1, c0:c1]
            lower = np.tril_indices(r1 - r0, -1)
            sub[lower] = sub.T[lower]
        else:
            K[c0:c1, r0:r1] = K[r0:r1, c0:c1].T
