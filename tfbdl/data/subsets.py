"""Class-balanced subsets, class selection and target encodings (numpy).

Labels are int64 ``[N]``; images are any array whose first axis is N (NHWC or flattened).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfbdl.data.labels import check_labels
from tfbdl.validate import integer
from tfbdl.errors import InvalidOptionError, ShapeError

__all__ = ["allocate_per_class", "balanced_indices", "binary_pair", "first_per_class", "one_hot", "one_vs_all",
           "round_robin_indices", "seeded_subset", "select_classes", "stratified_indices", "stratified_splits"]

# Which subset helper to use:
#   seeded_subset        n of N items, uniformly at random (no class structure)
#   stratified_indices   exactly ``per_class`` of every class
#   balanced_indices     n in total, as equal per class as possible (remainder to random classes)
#   round_robin_indices  n in total, classes visited in turn (short classes give their turn away)
#   first_per_class      the first ``count`` of every class, in data order (no randomness)
#   stratified_splits    disjoint subsets with the class proportions of the data (largest remainders)


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
    per_class = integer(per_class, "per_class", 1)
    seed = integer(seed, "seed", 0)
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
    positive = integer(positive, "positive", 0)
    if isinstance(negative_value, bool) or negative_value not in (0, -1):
        raise InvalidOptionError(
            f"negative_value must be 0 (0/1 targets) or -1 (+-1 targets), got {negative_value!r}"
        )
    return np.where(arr == positive, 1, int(negative_value)).astype(np.int64)


def one_hot(labels, num_classes: int, dtype=np.float64) -> np.ndarray:
    """One-hot matrix ``[N, num_classes]`` of ``dtype`` (float64 for exact GP regression)."""
    num_classes = integer(num_classes, "num_classes", 1)
    arr = check_labels(labels, num_classes)
    out = np.zeros((arr.shape[0], num_classes), dtype=dtype)
    out[np.arange(arr.shape[0]), arr] = 1
    return out


def balanced_indices(labels, n: int, seed: int) -> np.ndarray:
    """Sorted int64 indices of ``n`` examples, as equally many per class as possible, drawn by ``seed``.

    ``n // C`` per class and one more for ``n % C`` classes drawn at random (``C`` classes present).
    Raises InvalidOptionError when a class has fewer examples than its share.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = np.full(classes.size, n // classes.size)
    counts[rng.permutation(classes.size)[:n % classes.size]] += 1
    chosen = []
    for c, k in zip(classes, counts):
        candidates = np.flatnonzero(labels == c)
        if candidates.size < k:
            raise InvalidOptionError(f"class {c} has {candidates.size} examples, fewer than the {k} asked; "
                                     "lower --n-train / --n-test")
        chosen.append(rng.choice(candidates, size=k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def round_robin_indices(labels, n: int, seed: int) -> np.ndarray:
    """``n`` distinct sorted int64 indices into ``labels [N]``, taken round-robin over classes in a
    seeded random order, so each class gets an equal share as far as its size allows (a short
    class gives its turns to the others; never raises for a short class)."""
    labels = np.asarray(labels)
    n = min(int(n), labels.size)
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        for pool in pools:
            if depth < pool.size and len(picked) < n:
                picked.append(int(pool[depth]))
        depth += 1
    return np.sort(np.asarray(picked, dtype=np.int64))


def first_per_class(labels, count: int) -> np.ndarray:
    """Sorted int64 indices of the first ``count`` examples of every class in ``labels`` (data order)."""
    labels = np.asarray(labels)
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:count] for c in np.unique(labels)])).astype(np.int64)


def allocate_per_class(class_counts, size: int) -> np.ndarray:
    """Examples per class in a stratified subset of ``size``: proportional to ``class_counts``,
    rounded by largest remainders (ties go to the lower class index), summing to ``size``."""
    counts = np.asarray(class_counts, dtype=np.int64)
    exact = size * counts / counts.sum()
    base = np.floor(exact).astype(np.int64)
    remainder = exact - base
    order = np.lexsort((np.arange(counts.size), -remainder))
    base[order[:size - int(base.sum())]] += 1
    return base


def stratified_splits(labels, size: int, n_splits: int, seed: int) -> list[np.ndarray]:
    """``n_splits`` disjoint stratified training subsets of ``size`` examples each.

    Every split holds :func:`allocate_per_class` examples of each class (the class proportions of
    ``labels``, as sklearn's ``train_test_split(stratify=...)``), drawn without replacement; the
    splits share no example, so the spread over splits is over independent data. The draw depends
    on ``(seed, size)`` only. Returns sorted int64 index arrays.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise InvalidOptionError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if size < 1 or n_splits < 1:
        raise InvalidOptionError(f"need size >= 1 and at least one split, got size {size}, {n_splits} splits")
    if size * n_splits > labels.size:
        raise InvalidOptionError(f"{n_splits} disjoint splits of {size} examples need {size * n_splits} examples, "
                                 f"the training set has {labels.size}; use fewer splits or smaller sizes")
    classes, counts = np.unique(labels, return_counts=True)
    per_class = allocate_per_class(counts, size)
    short = np.flatnonzero(per_class * n_splits > counts)
    if short.size:
        c = short[0]
        raise InvalidOptionError(f"{n_splits} disjoint splits of {size} examples need {per_class[c] * n_splits} "
                                 f"examples of class {classes[c]}, the training set has {counts[c]}; use fewer "
                                 "splits or smaller sizes")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(size)]))
    parts: list[list[np.ndarray]] = [[] for _ in range(n_splits)]
    for c, k in zip(classes, per_class):
        members = rng.permutation(np.flatnonzero(labels == c))
        for j in range(n_splits):
            parts[j].append(members[j * k:(j + 1) * k])
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]
