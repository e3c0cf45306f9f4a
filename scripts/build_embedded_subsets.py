#!/usr/bin/env python
"""Rebuild the stratified subsets shipped in tfbdl/data/embedded/ from the full datasets.

    TFBDL_DATA_DIR=/path/to/datasets python scripts/build_embedded_subsets.py

Fashion-MNIST: 100 images per class from the official train split and 50 per class from the
official test split. MNIST sample: the same counts from its seeded train / test halves. The
choice depends only on SEED, so a rebuild gives the same arrays (tests check that).
"""

import json
import sys
from pathlib import Path

import numpy as np

from tfbdl.data.datasets import load_dataset
from tfbdl.data.subsets import stratified_indices

SEED = 0
PER_CLASS = {"train": 100, "test": 50}
SOURCES = {"fashion_mnist": ("train", "test"), "mnist_sample": ("train", "test")}


def build(name: str, data_dir=None) -> dict[str, np.ndarray]:
    """The arrays of one embedded subset: {split}_images, {split}_labels, {split}_indices, info."""
    arrays, info = {}, {"source": name, "seed": SEED, "per_class": PER_CLASS, "splits": {}}
    for split in SOURCES[name]:
        images, labels = load_dataset(name, split, data_dir, download=False)
        keep = stratified_indices(labels, PER_CLASS[split], seed=SEED)
        arrays[f"{split}_images"] = images[keep]
        arrays[f"{split}_labels"] = labels[keep]
        arrays[f"{split}_indices"] = keep
        info["splits"][split] = {"from": f"{name}/{split}", "count": int(keep.size)}
    arrays["info"] = np.array(json.dumps(info, sort_keys=True))
    return arrays


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        target = out_dir / f"{name}.npz"
        np.savez_compressed(target, **build(name))
        print(f"wrote {target} ({target.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tfbdl/data/embedded")
