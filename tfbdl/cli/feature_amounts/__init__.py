"""``tfbdl feature-amounts``: "Rethinking Layer-wise Feature Amounts in CNN Architectures".

Mundt, Majumder, Weis, Ramesh (NeurIPS 2018 CRACT workshop). A family of VGG networks of one
depth whose layer widths follow a skew-normal profile over the layers, with (about) the reference
VGG's total number of features (:mod:`tfbdl.nn.feature_amounts`; ``--family release``, the
default, is the paper's code's family, ``--family conv-only`` keeps the classifier at 512 and the
conv total exact), each trained with SGD + momentum, Kaiming-normal
initialisation and SGDR (:mod:`tfbdl.train.sgdr`), with OOM-safe micro-batching
(:mod:`tfbdl.train.oom`). ``sweep`` trains many variants, ``train`` the ones named by id,
``list-variants`` prints the family.

A run writes ``architectures/<variant-id>.csv`` (one row per epoch: epoch, lr, train loss and
accuracy, seconds, validation loss and accuracy, micro-batch, OOM retries), appended as each
epoch ends; ``variants.csv`` (one row per trained variant); ``feature_amounts.png`` (accuracy
against the share of features in the first half of the conv layers, coloured by depth) and
``variants_table.png``. An interrupted sweep resumes at the last finished epoch of the variant
it was training (its checkpoint) and skips finished variants; the CSVs are kept equal to the
checkpoints' histories, so no row is duplicated.

Importing the package registers every command on the :data:`feature_amounts` group.
"""

from tfbdl.cli.feature_amounts.cli import feature_amounts
from tfbdl.cli.feature_amounts.data import load_data, prepare_images, resolve_data
from tfbdl.cli.feature_amounts.presets import DATASETS, EXPERIMENT, FAMILIES, INITS, PRESETS, Preset, resolve_preset
from tfbdl.cli.feature_amounts.sweep import choose_variants, run_sweep, write_variants_csv
from tfbdl.cli.feature_amounts.training import RESULT_COLUMNS, ValidationMetrics, result_row, train_variant

__all__ = ["DATASETS", "EXPERIMENT", "FAMILIES", "INITS", "PRESETS", "Preset", "RESULT_COLUMNS", "ValidationMetrics",
           "choose_variants", "feature_amounts", "load_data", "prepare_images", "resolve_data", "resolve_preset",
           "result_row", "run_sweep", "train_variant", "write_variants_csv"]
