#!/usr/bin/env python
"""Seconds per 1,000 32x32x3 images for each CIFAR-10-C corruption at one severity (default 3).

    python bench/corruptions_speed.py [--images 1000] [--severity 3] [--repeat 3]

The images are synthetic (colour gradients with discs and rectangles). Frost reads its textures
from $TFBDL_FROST_DIR; when that is unset, synthetic 320x320 textures are written to a temporary
folder (the speed does not depend on their content, only on their size after the 0.2 scaling).
"""

import argparse
import os
import pathlib
import tempfile
import time

import numpy as np

from tfbdl.data.corruptions import CORRUPTIONS, FROST_DIR_ENV, FROST_FILES


def synthetic_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    base = rng.uniform(0.1, 0.9, (n, 1, 1, 3))
    slopes = rng.uniform(-0.4, 0.4, (n, 2, 1, 1, 3))
    images = np.clip(base + xx[None, ..., None] * slopes[:, 0] + yy[None, ..., None] * slopes[:, 1], 0, 1)
    for i in range(n):
        cy, cx = rng.uniform(6, size - 6, 2)
        disc = (yy * (size - 1) - cy) ** 2 + (xx * (size - 1) - cx) ** 2 <= rng.uniform(3, 8) ** 2
        images[i][disc] = rng.uniform(0, 1, 3)
        r0, c0 = rng.integers(0, size - 8, 2)
        images[i, r0:r0 + 8, c0:c0 + 10] = rng.uniform(0, 1, 3)
    return np.rint(images * 255).astype(np.uint8)


def synthetic_frost(folder: pathlib.Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in FROST_FILES:
        texture = np.clip(120 + 60 * rng.standard_normal((320, 320, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(texture).save(folder / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="batch size timed")
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per corruption (best is reported)")
    args = parser.parse_args()
    images = synthetic_images(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        if not os.environ.get(FROST_DIR_ENV):
            synthetic_frost(pathlib.Path(tmp))
            os.environ[FROST_DIR_ENV] = tmp
            print(f"frost: synthetic textures in {tmp} (set ${FROST_DIR_ENV} for the real ones)")
        print(f"{args.images} images 32x32x3, severity {args.severity}, best of {args.repeat}")
        print(f"{'corruption':<20}{'s / 1000 images':>16}")
        total = 0.0
        for name, func in CORRUPTIONS.items():
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                func(images, args.severity, np.random.default_rng(0))
                times.append(time.perf_counter() - start)
            per_thousand = min(times) * 1000 / args.images
            total += per_thousand
            print(f"{name:<20}{per_thousand:>16.3f}")
        print(f"{'all 19':<20}{total:>16.3f}")


if __name__ == "__main__":
    main()
