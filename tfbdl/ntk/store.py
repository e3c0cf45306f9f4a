"""The resumable file of an empirical NTK computation (numpy and h5py; no TensorFlow).

:func:`tfbdl.ntk.empirical.compute_ntk` with ``path`` writes each finished block of ``Θ(x, x2)``
into a crash-safe :class:`tfbdl.io.blocks.BlockStore` (see there: the file is laid out once, a
block is written and synced before it is marked done, so a process killed at any instant, even
by SIGKILL, leaves a readable file whose marked blocks are complete). The file holds:

- ``ntk`` [N*Kf, N'*Kf] (``Kf = K`` for ``output="full"``, else 1; row ``i*Kf + k``), stored in
  the ``dtype`` the blocks are computed in (so storing loses nothing), in chunks of
  ``block_size*Kf`` rows and columns;
- ``task_done`` [n_tasks]: one mark per block, the blocks in row-major order; for ``Θ(x, x)``
  only the blocks on and above the diagonal, each written together with its mirror image below
  the diagonal, so a complete file holds the whole symmetric matrix;
- root attributes: ``format`` (``"tfbdl-ntk-blocks"``), ``format_version`` (2), ``strategy``,
  ``dtype``, ``block_size``, ``output``, ``n``, ``n2``, ``symmetric``, ``num_outputs``,
  ``num_params``, ``model`` (its name), ``inputs_sha256``, ``params_sha256`` and ``n_tasks``.

A file started with other parameters, inputs or options is refused (RunDirectoryError), as is a
file of another format version (DataFormatError; version 1 was an HDF5 matrix with a growing
list of done blocks, whose metadata changed at every block): its blocks are never mixed in.
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import numpy as np

from tfbdl.errors import RunDirectoryError, TfbdlError
from tfbdl.io.blocks import BlockStore, StoreFormat, create_store

__all__ = [
    "DATASET",
    "FORMAT",
    "FORMAT_VERSION",
    "STORE_FORMAT",
    "IncompleteNTKError",
    "check_metadata",
    "inputs_fingerprint",
    "open_store",
    "read_metadata",
    "read_ntk_file",
]

FORMAT = "tfbdl-ntk-blocks"
FORMAT_VERSION = 2
DATASET = "ntk"

#: What the stored values depend on (besides ``params_sha256`` and ``strategy``), with the
#: words that name them in messages.
_LABELS = {
    "dtype": "dtype",
    "block_size": "block size",
    "output": "output",
    "n": "number of rows (x)",
    "n2": "number of columns (x2)",
    "symmetric": "x2 (given or not)",
    "num_outputs": "number of model outputs",
    "num_params": "number of parameters",
    "inputs_sha256": "inputs (x / x2)",
}
STORE_FORMAT = StoreFormat(FORMAT, FORMAT_VERSION, "NTK", (DATASET,),
                           ("strategy", *_LABELS, "model", "params_sha256"))


class IncompleteNTKError(TfbdlError):
    """An NTK file does not yet hold every block."""


def inputs_fingerprint(*arrays: np.ndarray | None) -> str:
    """SHA-256 (hex) of the dtypes, shapes and bytes of ``arrays`` (``None`` counted as absent),
    read in slices of about 16 MiB."""
    h = hashlib.sha256(b"tfbdl-ntk-inputs-v1\0")
    for x in arrays:
        if x is None:
            h.update(b"none\0")
            continue
        h.update(f"{x.dtype.str}:{x.shape}\0".encode())
        step = max(1, (16 << 20) // max(1, x[0].nbytes))
        for start in range(0, len(x), step):
            h.update(np.ascontiguousarray(x[start:start + step]).data)
    return h.hexdigest()


def read_metadata(path: pathlib.Path) -> dict[str, Any]:
    """The root attributes of the NTK file ``path`` (DataFormatError if it is none, or of
    another format version)."""
    with BlockStore(path, STORE_FORMAT) as store:
        return dict(store.attrs)


def check_metadata(path: pathlib.Path, stored: dict, meta: dict) -> None:
    """RunDirectoryError unless the file ``path`` was started with ``meta`` (strategy too, if set)."""
    if stored.get("params_sha256") != meta["params_sha256"]:
        raise RunDirectoryError(
            f"{path} was started with other model parameters (weights or batch-norm statistics "
            f"differ: params_sha256 {str(stored.get('params_sha256'))[:12]}... vs {meta['params_sha256'][:12]}...); "
            "the NTK depends on them, so it cannot be resumed: load the same weights, or use another path "
            "or delete the file to start over"
        )
    diff = [label for key, label in _LABELS.items() if stored.get(key) != meta[key]]
    if diff:
        raise RunDirectoryError(f"{path} was started with a different {', '.join(diff)}; rerun with the same "
                                "inputs and options to resume it, or use another path or delete the file")
    if meta.get("strategy") is not None and stored.get("strategy") != meta["strategy"]:
        raise RunDirectoryError(
            f"{path} was started with strategy {stored.get('strategy')!r}, not {meta['strategy']!r}; strategies "
            "differ in the last bits, so pass the same one (or strategy='auto', which reuses the file's), or "
            "use another path or delete the file"
        )


def open_store(path: pathlib.Path, meta: dict, shape: tuple[int, int], chunk: int, n_tasks: int) -> BlockStore:
    """The NTK file of ``meta`` opened for writing: created (atomically) if absent, else checked
    against ``meta`` (:func:`check_metadata`). ``shape`` is the 2-D ``ntk`` matrix, ``chunk``
    the block edge in its rows/columns, ``n_tasks`` the number of blocks."""
    if not path.exists():
        create_store(path, STORE_FORMAT, {DATASET: shape}, meta["dtype"], chunk, n_tasks, meta)
    store = BlockStore(path, STORE_FORMAT, writable=True)
    try:
        check_metadata(path, store.attrs, meta)
    except BaseException:
        store.close()
        raise
    return store


def read_ntk_file(path) -> tuple[np.ndarray, dict]:
    """A complete NTK file's matrix (``[N, N']`` or ``[N, N', K, K]``, float64; ``Θ(x, x)`` whole
    and symmetric) and its attributes. IncompleteNTKError if blocks are missing.

    Opens the file read-only (safe while another process writes it).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise RunDirectoryError(f"{path} does not exist; compute it first with compute_ntk(..., path=...)")
    with BlockStore(path, STORE_FORMAT) as store:
        attrs = dict(store.attrs)
        missing = int(np.count_nonzero(~store.done))
        if missing:
            raise IncompleteNTKError(f"{path} is incomplete: {missing} of {store.n_tasks} blocks are missing; "
                                     "rerun the same compute_ntk call to resume it")
        out = store.read(DATASET, dtype=np.float64)
    n, n2 = int(attrs["n"]), int(attrs["n2"])
    k = int(attrs["num_outputs"]) if attrs["output"] == "full" else 1
    if k > 1:
        out = out.reshape(n, k, n2, k).transpose(0, 2, 1, 3)
    return out, attrs
