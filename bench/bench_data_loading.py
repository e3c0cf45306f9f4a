#!/usr/bin/env python
"""Time finding + verifying + parsing each dataset on this machine, and the peak memory.

    TFBDL_DATA_DIR=/path/to/datasets python bench/bench_data_loading.py [--repeat 3]
"""

import argparse
import resource
import time

from tfbdl.data import DATASETS, is_available, load_dataset, load_embedded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed loads per split (best is reported)")
    args = parser.parse_args()
    print(f"{'dataset/split':<28}{'examples':>10}{'best s':>10}{'MB/s':>10}")
    for name, spec in DATASETS.items():
        for split in spec.splits:
            if not is_available(name, split):
                continue
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                images, labels = load_dataset(name, split, download=False)
                times.append(time.perf_counter() - start)
            best = min(times)
            print(f"{name + '/' + split:<28}{labels.size:>10}{best:>10.3f}{images.nbytes / 1e6 / best:>10.1f}")
    for name in ("fashion_mnist", "mnist_sample"):
        start = time.perf_counter()
        images, labels = load_embedded(name, "train")
        print(f"{name + '/train (embedded)':<28}{labels.size:>10}{time.perf_counter() - start:>10.3f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
