"""Options shared by every experiment command, spelled the same everywhere."""

import click

from tfbdl.data.sources import SCALES


def scale_option(default="smoke"):
    return click.option("--scale", type=click.Choice(SCALES), default=default, show_default=True,
                        help="Preset of sizes: tiny (seconds, for CI), smoke (real data subsets, "
                             "trends visible on a CPU), paper (the paper's own settings).")


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=str), default=None,
    help="Folder searched first for dataset files (then $TFBDL_DATA_DIR, ~/.cache/tfbdl/datasets, "
         "system dataset folders); downloads go here when given.")

out_option = click.option(
    "--out", type=click.Path(file_okay=False, path_type=str), default="runs", show_default=True,
    help="Output root; a run writes OUT/<experiment>/<run-id>/.")

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
