"""``tfbdl convnet-gp``: "Deep Convolutional Networks as shallow Gaussian Processes".

save-kernels computes the kernel matrices block by block into OUT/convnet-gp/<run-id>/kernels.h5
(resumable, shardable); merge-kernels joins shard files; classify runs exact GP classification
on a kernel file; run does all three for the registered experiment; search is the paper's
hyperparameter search; learning-curve measures the test error for growing training sets.

Importing the package registers every command on the :data:`convnet_gp` group.
"""

from tfbdl.cli.convnet_gp.classify import check_kernel_file, classify_file
from tfbdl.cli.convnet_gp.cli import convnet_gp
from tfbdl.cli.convnet_gp.curve import classify_size, parse_sizes, run_learning_curve
from tfbdl.cli.convnet_gp.data import (load_curve_inputs, load_inputs, resolve_data, resolve_search_data,
                                       training_pool)
from tfbdl.cli.convnet_gp.experiment import run_experiment
from tfbdl.cli.convnet_gp.finite_width import finite_width_command  # noqa: F401 (registers finite-width)
from tfbdl.cli.convnet_gp.kernels import merge_shards, save_kernels
from tfbdl.cli.convnet_gp.presets import (CURVE_PRESETS, KERNEL_NAMES, PAPER_TEST_ERROR, PRESETS, SEARCH_PRESETS,
                                          CurvePreset, Preset, SearchPreset, resolve)
from tfbdl.cli.convnet_gp.report import projection
from tfbdl.cli.convnet_gp.search import run_search

__all__ = ["CURVE_PRESETS", "CurvePreset", "KERNEL_NAMES", "PAPER_TEST_ERROR", "PRESETS", "Preset", "SEARCH_PRESETS",
           "SearchPreset", "check_kernel_file", "classify_file", "classify_size", "convnet_gp", "load_curve_inputs",
           "load_inputs", "merge_shards", "parse_sizes", "projection", "resolve", "resolve_data",
           "resolve_search_data", "run_experiment", "run_learning_curve", "run_search", "save_kernels",
           "training_pool"]
