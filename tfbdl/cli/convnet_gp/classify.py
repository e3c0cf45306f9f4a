"""Exact GP classification of a complete convnet-gp kernel file (``classify``), and the check of
the file a user names before GPflow is imported."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np

from tfbdl.cli.convnet_gp.presets import DATA_FILE
from tfbdl.cli.options import check_hdf5
from tfbdl.errors import InvalidOptionError, TfbdlError

__all__ = ["check_kernel_file", "classify_file"]


def classify_file(kernel_file: Path, *, val_fraction: float, seed: int) -> dict:
    """Exact GP classification from a complete kernel file and the labels saved beside it."""
    from tfbdl.gp.exact import classify
    from tfbdl.kernels.blocks import read_kernels

    data_path = kernel_file.parent / DATA_FILE
    if not data_path.exists():
        raise TfbdlError(f"{data_path} is missing: classify reads the labels that save-kernels writes beside "
                         "the kernel file; rerun save-kernels for this run")
    with np.load(data_path, allow_pickle=False) as data:
        y_train, y_test = data["y_train"], data["y_test"]
    kernels = read_kernels(kernel_file, names=("Kxx", "Kxt"))
    num_classes = int(max(y_train.max(), y_test.max()) + 1)
    start = time.perf_counter()
    result = classify(kernels["Kxx"], kernels["Kxt"], y_train, y_test, num_classes, val_fraction=val_fraction,
                      seed=seed, overwrite=True)
    chosen = [row for row in result.validation if row["noise"] == result.noise]
    relative = chosen[0]["relative_noise"] if chosen else float("nan")
    return {"test_accuracy": result.test_accuracy, "test_error": result.test_error, "noise": result.noise,
            "relative_noise": relative,
            "jitter_used": result.jitter_used, "validation": result.validation, "n_train": int(y_train.size),
            "n_test": int(y_test.size), "seconds": time.perf_counter() - start}


def check_kernel_file(kernel_file: Path) -> None:
    """``--kernels``: an HDF5 kernel file with save-kernels' labels (data.npz) beside it; checked before
    GPflow is imported, so a wrong file fails at once."""
    what = "the kernels.h5 that save-kernels (or merge-kernels) wrote"
    check_hdf5(kernel_file, "--kernels", what)
    try:
        status = importlib.import_module("tfbdl.kernels.blocks").kernel_file_status(kernel_file)
    except TfbdlError as error:
        raise InvalidOptionError(f"--kernels: {error}") from None
    index, count = status["shard"]
    if count > 1:
        raise InvalidOptionError(f"--kernels {kernel_file} is shard {index} of {count}: finish every shard (rerun the "
                                 "same save-kernels commands to resume), then merge them with merge-kernels and "
                                 "classify the merged kernels.h5")
    if not status["complete"]:
        raise InvalidOptionError(f"--kernels {kernel_file} is incomplete: {status['done']} of {status['total']} "
                                 "tasks are done; rerun the same save-kernels command to resume it")
    if not (kernel_file.parent / DATA_FILE).is_file():
        raise InvalidOptionError(f"--kernels {kernel_file}: {DATA_FILE} is missing beside it; give {what} in its "
                                 "run folder (classify reads the labels save-kernels writes there)")
