"""Class-balanced subsets, class selection and target encodings (numpy).

Labels are int64 ``[N]``; images are any array whose first axis is N (NHWC or flattened).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfbdl.data.labels import check_int, check_labels
from tfbdl.errors import InvalidOptionError, ShapeError

__all__ = ["stratified_indices", "select_classes", "binary_pair", "one_vs_all", "one_hot"]


def seeded_subset(n_total: int, n_keep: int | None, seed: int) -> np.ndarray:
    """Sorted seeded random indices of ``n_keep`` of ``n_total`` items (all of them when None or larger)."""
    if n_keep is None or n_keep >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n_keep])


def stratified_indices(labels, per_class: int, seed: int, exclude=None) -> np.ndarray:
    """Sorted int64 indices of ``per_class`` examples of every class present in ``labels [N]``.

    Within each class (in increasing class order) the examples are drawn uniformly without
    replacement by ``np.random.default_rng(seed)`` from the indices not in ``exclude`` (an
    iterable of indices, e.g. an earlier training subset, so a validation subset is disjoint from
    it). Balanced subsets keep small-data experiments (GP, NTK, kernel regression) comparable
    across classes. Raises InvalidOptionError if some class has fewer than ``per_class`` left.
    """
    arr = check_labels(labels)
    per_class = check_int(per_class, "per_class", 1)
    seed = check_int(seed, "seed", 0)
    n = arr.shape[0]
    allowed = np.ones(n, dtype=bool)
    if exclude is not None:
        ex = np.asarray(exclude)
        if ex.size:
            if ex.dtype == np.bool_ or not np.issubdtype(ex.dtype, np.integer):
                raise InvalidOptionError(
                    f"exclude must hold integer indices, got dtype {ex.dtype}; pass "
                    f"np.flatnonzero(mask) for a boolean mask"
                )
            ex = ex.reshape(-1)
            if ex.min() < 0 or ex.max() >= n:
                raise InvalidOptionError(
                    f"exclude holds indices outside 0..{n - 1} ({ex.min()}..{ex.max()}); "
                    f"pass indices into these labels"
                )
            allowed[ex] = False
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(arr):
        candidates = np.flatnonzero((arr == c) & allowed)
        if candidates.size < per_class:
            raise InvalidOptionError(
                f"class {c} has only {candidates.size} examples left after exclusion, fewer than "
                f"per_class={per_class}; lower per_class or exclude fewer examples"
            )
        chosen.append(rng.choice(candidates, size=per_class, replace=False))
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def select_classes(images, labels, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the examples of ``classes`` and relabel them 0..k-1 in the order given.

    ``images [N, ...], labels [N] -> images [M, ...], labels int64 [M]`` with the examples in
    their original order. ``select_classes(x, y, [3, 5])`` maps class 3 to 0 and 5 to 1 (the
    binary "CIFAR2"-style tasks). Every class must be distinct and present in ``labels``.
    """
    arr = check_labels(labels)
    imgs = np.asarray(images)
    if imgs.ndim < 1 or imgs.shape[0] != arr.shape[0]:
        raise ShapeError(
            f"images {imgs.shape} and labels {arr.shape} must have the same first axis N; "
            f"pass matching arrays"
        )
    cls = np.asarray(classes)
    if cls.ndim != 1 or cls.size == 0 or not np.issubdtype(cls.dtype, np.integer):
        raise InvalidOptionError(f"classes must be a non-empty list of ints, got {classes!r}")
    if np.unique(cls).size != cls.size:
        raise InvalidOptionError(f"classes must be distinct, got {list(cls)}")
    present = np.isin(cls, arr)
    if not present.all():
        raise InvalidOptionError(
            f"classes {list(cls[~present])} do not occur in labels; check the class indices"
        )
    keep = np.isin(arr, cls)
    # Position of each kept label within ``classes``.
    order = np.argsort(cls, kind="stable")
    new = order[np.searchsorted(cls, arr[keep], sorter=order)].astype(np.int64)
    return imgs[keep], new


def binary_pair(images, labels, pair: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two-class subset: examples of ``pair = (a, b)`` with labels 0 for ``a`` and 1 for ``b``."""
    if len(pair) != 2:
        raise InvalidOptionError(f"pair must hold exactly two classes (a, b), got {pair!r}")
    return select_classes(images, labels, pair)


def one_vs_all(labels, positive: int, negative_value: int = 0) -> np.ndarray:
    """Binary targets int64 ``[N]``: 1 where ``labels == positive``, ``negative_value`` elsewhere.

    ``negative_value`` is 0 for 0/1 targets or -1 for the +-1 targets of GP / kernel regression
    one-vs-all classifiers.
    """
    arr = check_labels(labels)
    positive = check_int(positive, "positive", 0)
    if isinstance(negative_value, bool) or negative_value not in (0, -1):
        raise InvalidOptionError(
            f"negative_value must be 0 (0/1 targets) or -1 (+-1 targets), got {negative_value!r}"
        )
    return np.where(arr == positive, 1, int(negative_value)).astype(np.int64)


def one_hot(labels, num_classes: int, dtype=np.float64) -> np.ndarray:
    """One-hot matrix ``[N, num_classes]`` of ``dtype`` (float64 for exact GP regression)."""
    num_classes = check_int(num_classes, "num_classes", 1)
    arr = check_labels(labels, num_classes)
    out = np.zeros((arr.shape[0], num_classes), dtype=dtype)
    out[np.arange(arr.shape[0]), arr] = 1
    return out
