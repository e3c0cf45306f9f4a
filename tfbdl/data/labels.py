"""Label noise with an exact rate, and fixed label files so a run reuses the same corruption.

Labels are int64 ``[N]`` class indices in ``0 .. num_classes - 1``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from tfbdl.errors import DataFormatError, DatasetNotFound, InvalidOptionError, ShapeError
from tfbdl.validate import integer, probability

__all__ = ["check_labels", "corrupt_labels", "load_labels", "save_labels"]


def check_labels(labels, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as int64 ``[N]``; raise ShapeError / InvalidOptionError if they are not.

    With ``num_classes`` every label must also lie in ``0 .. num_classes - 1``.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ShapeError(
            f"{name} must be a 1-D array [N] of class indices, got shape {arr.shape}; "
            f"convert one-hot labels with labels.argmax(axis=1)"
        )
    if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise InvalidOptionError(
            f"{name} must be integer class indices, got dtype {arr.dtype}; "
            f"convert them with labels.astype(np.int64)"
        )
    arr = arr.astype(np.int64)
    if num_classes is not None and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_classes:
            raise InvalidOptionError(
                f"{name} must lie in 0..{num_classes - 1} for num_classes={num_classes}, "
                f"got values in {lo}..{hi}; check num_classes"
            )
    return arr


def corrupt_labels(labels, fraction: float, num_classes: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace an exact fraction of labels by wrong ones: ``[N] -> (new [N], corrupted [N])``.

    ``k = round(fraction * N)`` (half rounded up) indices are chosen uniformly without
    replacement, and each gets a label drawn uniformly from the other ``num_classes - 1``
    classes, so exactly ``k`` labels are wrong and ``corrupted`` (bool) marks exactly them.
    This is the random-label experiment of Zhang et al. (2017, "Understanding deep learning
    requires rethinking generalization"), except that there a corrupted label may by chance equal
    the true one; here the rate of wrong labels is exact and can be checked. The draws come from
    ``np.random.default_rng(seed)``: same seed, same result.
    """
    arr = check_labels(labels)
    num_classes = integer(num_classes, "num_classes", 2)
    arr = check_labels(arr, num_classes)
    seed = integer(seed, "seed", 0)
    fraction = probability(fraction, "fraction")
    n = arr.shape[0]
    k = int(np.floor(fraction * n + 0.5))
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, size=k, replace=False)
    # Adding 1..C-1 modulo C maps the true class uniformly onto the C-1 other classes.
    shift = rng.integers(1, num_classes, size=k)
    new = arr.copy()
    new[idx] = (arr[idx] + shift) % num_classes
    corrupted = np.zeros(n, dtype=bool)
    corrupted[idx] = True
    return new, corrupted


def save_labels(path, labels, corrupted, meta: dict) -> None:
    """Write ``labels`` (int64 [N]), ``corrupted`` (bool [N]) and ``meta`` to one ``.npz`` file.

    ``meta`` (e.g. ``{"fraction": 0.2, "seed": 0, "dataset": "cifar10"}``) must be
    JSON-serialisable; it is stored as a JSON string so the file loads without pickle. The write
    is atomic (temp file in the same folder, fsync, ``os.replace``), so a crash never leaves a
    half-written label file for a resumed run to trust. ``path`` is used exactly as given.
    """
    lab = check_labels(labels)
    cor = np.asarray(corrupted)
    if cor.dtype != np.bool_ or cor.shape != lab.shape:
        raise ShapeError(
            f"corrupted must be a bool array of the labels' shape {lab.shape}, got "
            f"{cor.dtype} {cor.shape}; pass the mask returned by corrupt_labels"
        )
    if not isinstance(meta, dict):
        raise InvalidOptionError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise InvalidOptionError(
            f"meta must be JSON-serialisable ({err}); convert numpy values with int()/float()"
        ) from None
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, labels=lab, corrupted=cor, meta=np.array(meta_json))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_labels(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read a :func:`save_labels` file: ``-> (labels int64 [N], corrupted bool [N], meta dict)``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetNotFound(
            f"label file {path} does not exist; create it with save_labels "
            f"(e.g. from corrupt_labels with the run's seed)"
        )
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with data:
            labels = data["labels"]
            corrupted = data["corrupted"]
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataFormatError(
            f"{path} is not a label file written by save_labels ({err}); delete it and "
            f"create it again"
        ) from None
    if (labels.ndim != 1 or labels.dtype != np.int64 or corrupted.dtype != np.bool_
            or corrupted.shape != labels.shape or not isinstance(meta, dict)):
        raise DataFormatError(
            f"{path} holds labels {labels.dtype} {labels.shape} and mask {corrupted.dtype} "
            f"{corrupted.shape}, not int64 [N] and bool [N]; delete it and create it again"
        )
    return labels, corrupted, meta
