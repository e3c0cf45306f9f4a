"""Data for a run at a given scale, with fallbacks and a record of what was used.

``paper`` scale loads (and downloads) the real dataset. ``tiny`` and ``smoke`` never download:
they use the full files when present, else the subset embedded in the package, else the
closest available dataset, and say so in :attr:`LoadedData.provenance`, which runs copy into
their config and report.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import numpy as np

from tfbdl.data.datasets import get_spec, is_available, load_dataset
from tfbdl.errors import DatasetNotFound, InvalidOptionError

SCALES = ("tiny", "smoke", "paper")

# Datasets with a subset in tfbdl/data/embedded/<name>.npz (keys train_images, train_labels, ...).
EMBEDDED = ("fashion_mnist", "mnist_sample")

# Closest available stand-in when a paper's dataset is absent at tiny/smoke scale, and why.
SUBSTITUTES = {
    "mnist": ("mnist_sample", "the full MNIST files are absent; 10,000 real MNIST digits stand in"),
    "cifar10": ("fashion_mnist", "CIFAR-10 is absent; Fashion-MNIST is the closest available 10-class "
                                 "object-image set (grey-scale 28x28, not colour 32x32)"),
    "cifar100": ("fashion_mnist", "CIFAR-100 is absent; Fashion-MNIST stands in (10 classes, not 100)"),
    "notmnist": ("fashion_mnist", "notMNIST is absent; Fashion-MNIST stands in as another 28x28 "
                                  "grey-scale domain that is not digits"),
}


@dataclasses.dataclass
class LoadedData:
    """Images uint8 [N, H, W, C], labels int64 [N], and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    provenance: dict

    @property
    def num_classes(self) -> int:
        return get_spec(self.provenance["dataset"]).num_classes

    def describe(self) -> str:
        """One line for reports: which data, from where, and any substitution."""
        p = self.provenance
        text = f"{p['dataset']}/{p['split']} ({p['source']}, {len(self.labels)} examples)"
        if p["dataset"] != p["requested"]:
            text += f", standing in for {p['requested']}/{p['requested_split']}: {p['reason']}"
        return text


def embedded_path(name: str):
    """The packaged resource of a dataset's embedded subset."""
    return resources.files("tfbdl.data.embedded").joinpath(f"{name}.npz")


def load_embedded(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load the embedded subset of ``name`` ('train' or 'test')."""
    if name not in EMBEDDED:
        raise DatasetNotFound(f"no embedded subset of {name!r}; embedded ones: {', '.join(EMBEDDED)}")
    if split not in ("train", "test"):
        raise InvalidOptionError(f"embedded subsets have splits 'train' and 'test', not {split!r}")
    with embedded_path(name).open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        return archive[f"{split}_images"], archive[f"{split}_labels"].astype(np.int64)


def embedded_info(name: str) -> dict:
    """The build record stored with an embedded subset (source, seed, counts)."""
    with embedded_path(name).open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        return json.loads(str(archive["info"]))


def load_for_run(name: str, split: str, scale: str, data_dir=None) -> LoadedData:
    """The data a run at ``scale`` should use for ``name``/``split`` (see the module docstring)."""
    if scale not in SCALES:
        raise InvalidOptionError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    get_spec(name)  # unknown names fail here, before any fallback
    record = {"requested": name, "requested_split": split, "dataset": name, "split": split, "reason": ""}
    if scale == "paper" or is_available(name, split, data_dir):
        images, labels = load_dataset(name, split, data_dir, download=(scale == "paper"))
        return LoadedData(images, labels, {**record, "source": "full"})
    if name in EMBEDDED:
        used_split = split if split in ("train", "test") else "train"  # 'all' -> the training subset
        images, labels = load_embedded(name, used_split)
        return LoadedData(images, labels, {**record, "split": used_split, "source": "embedded subset",
                                           "reason": "the full files are absent"})
    if name in SUBSTITUTES:
        stand_in, reason = SUBSTITUTES[name]
        stand_in_split = split if split in get_spec(stand_in).splits else "train"
        loaded = load_for_run(stand_in, stand_in_split, scale, data_dir)
        loaded.provenance.update(requested=name, requested_split=split, reason=reason)
        return loaded
    raise DatasetNotFound(f"{name}/{split} is not on this machine and has no stand-in; fetch it with "
                          f"'tfbdl data fetch {name}'")
