"""The kernel files of convnet-gp: computed block by block into OUT/convnet-gp/<run-id>/kernels.h5
(resumable, shardable) beside the labels in data.npz, and shard files joined into one."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from tfbdl.cli.common import open_run
from tfbdl.cli.convnet_gp.data import load_inputs
from tfbdl.cli.convnet_gp.presets import DATA_FILE, EXPERIMENT, KERNEL_FILE, Preset
from tfbdl.cli.options import check_hdf5
from tfbdl.errors import TfbdlError

__all__ = ["kernel_config", "merge_shards", "save_kernels"]


def kernel_config(kernel: str, kind: str, dtype: str, dataset: str, scale: str, seed: int,
                  preset: Preset, data_dir) -> dict:
    """The config that names a kernel run's directory (and is stored in its kernel file)."""
    return {"experiment": EXPERIMENT, "kernel": kernel, "kind": kind, "dtype": dtype, "dataset": dataset,
            "scale": scale, "seed": seed, "data_dir": data_dir, **dataclasses.asdict(preset)}


def save_kernels(*, kernel: str, kind: str, dtype: str, dataset: str, scale: str, out: str, data_dir, seed: int,
                 resume: bool, preset: Preset, shard=(0, 1), progress: bool = True):
    """Compute (or resume) this shard's kernel blocks; returns (run, kernel file path, seconds)."""
    from tfbdl.io import atomic_path

    config = kernel_config(kernel, kind, dtype, dataset, scale, seed, preset, data_dir)
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    (x_train, y_train, train_idx, x_test, y_test, test_idx, image_shape,
     provenance, described) = load_inputs(dataset, scale, data_dir, preset, seed)
    import tensorflow as tf  # after the data: a missing or corrupt file fails without waiting for TensorFlow

    from tfbdl.kernels import paper_kernel
    from tfbdl.kernels.blocks import callables_from_gpflow, compute_kernel_file

    run.record_data(provenance)
    if not run.file(DATA_FILE).exists():
        with atomic_path(run.file(DATA_FILE)) as temp:
            np.savez(temp, y_train=y_train, y_test=y_test, train_indices=train_idx, test_indices=test_idx,
                     image_shape=np.asarray(image_shape), described=np.asarray(described))
    gp_kernel = paper_kernel(kernel, image_shape, kind=kind, normalise=False)
    pair_fn, diag_fn = callables_from_gpflow(gp_kernel)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    start = time.perf_counter()
    path = compute_kernel_file(run.file(KERNEL_FILE), pair_fn, diag_fn, x_train.astype(dtype), x_test.astype(dtype),
                               block=preset.block, shard=shard, config=config, progress=progress,
                               devices=gpus if len(gpus) > 1 else None)
    return run, path, time.perf_counter() - start


def merge_shards(run_dir: Path) -> tuple[Path, int]:
    """Join the shard files ``kernels.shard-*-of-N.h5`` in ``run_dir`` into ``run_dir/kernels.h5``;
    returns (merged file, number of shards)."""
    shards = sorted(run_dir.glob("kernels.shard-*-of-*.h5"))
    if not shards:
        raise TfbdlError(f"no shard files kernels.shard-*-of-*.h5 in {run_dir}; run save-kernels --shard i/n first")
    for shard in shards:
        check_hdf5(shard, "RUN_DIR: the shard file", "the shard files that save-kernels --shard i/n wrote")
    from tfbdl.kernels.blocks import merge_kernel_files

    return merge_kernel_files(shards, run_dir / KERNEL_FILE), len(shards)
