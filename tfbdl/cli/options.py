"""Options shared by every experiment command, spelled the same everywhere, and the checks that let a
bad value fail while the command line is parsed: before any data is read, any TensorFlow import or
any training, with one line that names the option and says what it allows."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import click

from tfbdl.data.sources import SCALES
from tfbdl.errors import TfbdlError


def comma_separated(text, convert=int) -> tuple:
    """``"30, 3,10,3"`` -> ``(3, 10, 30)``: the distinct values of a comma-separated list, sorted
    (blanks and empty words skipped). ValueError names nothing: each option words its own error."""
    return tuple(sorted({convert(word) for word in str(text).replace(" ", "").split(",") if word}))


# --------------------------------------------------------------------------- value types


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and ±inf (click's float accepts 'nan', 'inf' and '1e400',
    and nan passes every range comparison). With no bounds it is any finite number."""

    name = "float"

    def convert(self, value, param, ctx):
        number = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(number):
            allowed = "" if self.min is None and self.max is None else f" in the range {self._describe_range()}"
            self.fail(f"must be a finite number{allowed}, got {value!r}.", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()


FINITE_FLOAT = FiniteFloatRange()


# --------------------------------------------------------------------------- folders


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (without resolving symbolic links)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def _folder_blocker(path: Path) -> Path | None:
    """The first component of ``path`` that exists and is not a folder (it would stop mkdir -p)."""
    existing = _nearest_existing(path)
    try:
        return None if existing.is_dir() else existing
    except OSError:
        return None


def folder_path(ctx, param, value):
    """Callback of a folder option: refuse a path below a file (``--data-dir notes.txt/x``); click's
    own check (file_okay=False) only looks at the path itself."""
    if value is None:
        return value
    blocker = _folder_blocker(Path(value))
    if blocker is not None:
        raise click.BadParameter(f"{value!r} cannot be a folder: {str(blocker)!r} is a file, not a folder; "
                                 "give a folder path", ctx=ctx, param=param)
    return value


def writable_folder(ctx, param, value):
    """Callback of an output folder option: the folder (created on first write) must be creatable and
    writable: no file on its path, and its closest existing folder takes a new sub-folder (tried with a
    temporary one that is removed at once), so a read-only or foreign folder fails here and not after
    hours of work."""
    value = folder_path(ctx, param, value)
    if value is None:
        return value
    existing = _nearest_existing(Path(value))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tfbdl-write-test-", dir=existing))
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise click.BadParameter(f"{value!r} is not writable: cannot create a folder in {str(existing)!r} "
                                 f"({reason}); choose a folder you can write to", ctx=ctx, param=param) from None
    return value


# --------------------------------------------------------------------------- checks that use the library


def shard_pair(ctx, param, value):
    """Callback of ``--shard I/N``: the pair ``(I, N)``, checked by tfbdl.kernels.blocks.parse_shard."""
    if value is None or isinstance(value, tuple):
        return value
    from tfbdl.kernels.blocks import parse_shard  # numpy only: no GPflow import

    return parse_shard(value)


def shard_option(help: str):
    return click.option("--shard", default="0/1", show_default=True, callback=shard_pair, help=help)


def dataset_name(ctx, param, value):
    """Callback of a free-text ``--dataset``: a registered dataset name (tfbdl.data.DATASETS)."""
    if value is None:
        return value
    from tfbdl.data import get_spec

    try:
        get_spec(value)
    except TfbdlError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None
    return value


def check_hdf5(path, option: str, what: str) -> None:
    """Raise a one-line error naming ``option`` unless ``path`` is an HDF5 file (``what`` says which)."""
    import h5py

    try:
        ok = h5py.is_hdf5(str(path))
    except OSError as error:
        ok, reason = False, error.strerror or str(error)
    else:
        reason = "no HDF5 signature"
    if not ok:
        from tfbdl.errors import InvalidOptionError

        raise InvalidOptionError(f"{option} {path} is not an HDF5 file ({reason}); give {what}")


# --------------------------------------------------------------------------- the common options


def scale_option(default="smoke"):
    return click.option("--scale", type=click.Choice(SCALES), default=default, show_default=True,
                        help="Preset of sizes: tiny (seconds, for CI), smoke (real data subsets, "
                             "trends visible on a CPU), paper (the paper's own settings).")


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=str), default=None, callback=folder_path,
    help="Folder searched first for dataset files (then $TFBDL_DATA_DIR, ~/.cache/tfbdl/datasets, "
         "system dataset folders); downloads go here when given.")

out_option = click.option(
    "--out", type=click.Path(file_okay=False, path_type=str), default="runs", show_default=True,
    callback=writable_folder, help="Output root; a run writes OUT/<experiment>/<run-id>/.")

seed_option = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                           help="Seed of every random choice; the same seed gives the same numbers.")

resume_option = click.option(
    "--resume/--no-resume", default=True, show_default=True,
    help="Resume the run directory of the same command if it exists (--no-resume moves it aside "
         "and starts afresh).")


def common_run_options(function):
    """Decorate an experiment command with --scale --out --data-dir --seed --resume."""
    for option in (resume_option, seed_option, data_dir_option, out_option, scale_option()):
        function = option(function)
    return function
