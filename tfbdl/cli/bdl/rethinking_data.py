"""The images and labels of ``bdl rethinking-generalization``: option parsers, the data of a
run (network, GP and binary subsets) and each fraction's corrupted labels.

The inputs are the same at every fraction, only the labels change; each fraction's labels are
saved in its sub-run, so a rerun reads them back instead of drawing them again.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfbdl.cli.bdl.presets import RethinkingPreset
from tfbdl.cli.common import typed_option
from tfbdl.errors import InvalidOptionError

__all__ = ["RethinkingData", "binary_labels", "fraction_labels", "fraction_name", "load_data", "parse_classes",
           "parse_fractions"]


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` -> ``(0.0, 0.5, 1.0)``: distinct numbers in [0, 1], sorted."""
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise InvalidOptionError(f"--fractions must be comma-separated numbers in [0, 1], e.g. 0,0.5,1; "
                                 f"got {text!r}") from None
    if not values:
        raise InvalidOptionError(f"--fractions needs at least one number in [0, 1], got {text!r}")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise InvalidOptionError(f"--fractions must lie in [0, 1]; {bad[0]:g} does not")
    if len(set(values)) != len(values):
        raise InvalidOptionError(f"--fractions has a repeated value: {text!r}")
    return tuple(sorted(values))


def parse_classes(text: str) -> tuple[int, int]:
    """``"3,5"`` -> ``(3, 5)``: the two distinct classes of the binary task."""
    try:
        values = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise InvalidOptionError(f"--classes must be two class indices like 0,1; got {text!r}") from None
    if len(values) != 2 or values[0] == values[1] or min(values) < 0:
        raise InvalidOptionError(f"--classes must be two distinct non-negative class indices like 0,1; got {text!r}")
    return values


def binary_labels(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Binary labels with a fraction ``fraction`` randomised: exactly ``round(f N / 2)`` flipped."""
    from tfbdl.data.labels import corrupt_labels

    corrupted, _ = corrupt_labels(labels, fraction / 2.0, 2, seed)
    return corrupted


def fraction_name(fraction: float) -> str:
    """The sub-run folder of a fraction: ``fraction-0``, ``fraction-0.25``, ``fraction-1``."""
    return f"fraction-{fraction:.6g}"


@dataclasses.dataclass
class RethinkingData:
    """The images and true labels of a run, with the GP and binary subsets."""

    x_train: np.ndarray  # float32 [N, H, W, C] in [0, 1]
    y_train: np.ndarray  # int64 [N], true labels
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    provenance: list
    n_gp: int  # the GP training set is x_train[:n_gp]
    binary_index: np.ndarray  # indices into the GP set of the two classes
    binary_y: np.ndarray  # their true binary labels (1 for classes[1])


def load_data(preset: RethinkingPreset, scale: str, data_dir, seed: int) -> RethinkingData:
    """The run's training subset, test subset, GP subset and binary-pair indices (images float32
    in [0, 1]; subsets drawn as in ``bdl swag``: seeded random, kept in dataset order)."""
    from tfbdl.data import load_for_run
    from tfbdl.data.transforms import to_float01

    train, test = (load_for_run(preset.dataset, split, scale, data_dir) for split in ("train", "test"))
    keep = train.subset(preset.n_train, seed, option=typed_option("n_train"))
    x_train, y_train = to_float01(train.images[keep]), train.labels[keep]
    keep = test.subset(preset.n_test, seed + 1, option=typed_option("n_test"))
    x_test, y_test = to_float01(test.images[keep]), test.labels[keep]
    num_classes, provenance = train.num_classes, [train.provenance, test.provenance]
    n_gp = y_train.size if preset.n_gp is None else preset.n_gp
    if n_gp > y_train.size:
        raise InvalidOptionError(f"--n-gp {n_gp} is more than the {y_train.size} training images; lower it "
                                 f"or raise --n-train")
    if max(preset.classes) >= num_classes:
        raise InvalidOptionError(f"--classes {preset.classes[0]},{preset.classes[1]}: the data has classes "
                                 f"0..{num_classes - 1}")
    gp_labels = y_train[:n_gp]
    binary_index = np.flatnonzero(np.isin(gp_labels, preset.classes))
    binary_y = (gp_labels[binary_index] == preset.classes[1]).astype(np.int64)
    if np.unique(binary_y).size < 2:
        raise InvalidOptionError(f"the {n_gp} GP training images hold fewer than two images of each of classes "
                                 f"{preset.classes}; raise --n-gp")
    return RethinkingData(x_train, y_train, x_test, y_test, num_classes, provenance, n_gp, binary_index, binary_y)


def fraction_labels(frac_run, data: RethinkingData, fraction: float, seed: int) -> np.ndarray:
    """The corrupted training labels of one fraction, saved in its sub-run (re-read on rerun)."""
    from tfbdl.data.labels import corrupt_labels, load_labels, save_labels

    path = frac_run.file("labels.npz")
    if path.exists():
        labels, _, _ = load_labels(path)
        return labels
    labels, corrupted = corrupt_labels(data.y_train, fraction, data.num_classes, seed)
    save_labels(path, labels, corrupted, {"fraction": fraction, "seed": seed, "n_train": int(labels.size)})
    return labels
