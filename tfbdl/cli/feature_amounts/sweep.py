"""A feature-amounts sweep: the variants a run trains, trained one after another (or one shard
of them per process) in one run directory, then, once all are done, ``variants.csv``, the
figures and the summary.

An interrupted sweep resumes at the last finished epoch of the variant it was training (its
checkpoint) and skips finished variants; the CSVs are kept equal to the checkpoints' histories,
so no row is duplicated.
"""

from __future__ import annotations

import dataclasses
import json

import click

from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.feature_amounts.data import load_data
from tfbdl.cli.feature_amounts.figures import accuracy_figure, table_figure
from tfbdl.cli.feature_amounts.presets import EXPERIMENT, Preset
from tfbdl.cli.feature_amounts.report import sweep_summary
from tfbdl.cli.feature_amounts.training import RESULT_COLUMNS, train_variant
from tfbdl.errors import InvalidOptionError

__all__ = ["choose_variants", "run_sweep", "write_variants_csv"]


def choose_variants(preset: Preset, ids=()) -> list:
    """The variants a run trains: ``ids`` if given, else per depth the reference (if asked) and
    ``preset.variants`` spread over where the features sit (all when None)."""
    from tfbdl.nn.feature_amounts import enumerate_variants, get_variant, select_spread

    if ids:
        chosen = [get_variant(i, preset.width_scale) for i in ids]
        if len({v.id for v in chosen}) != len(chosen):
            raise InvalidOptionError(f"--variant repeats an id: {', '.join(ids)}")
        return chosen
    chosen = []
    for depth in preset.depths:
        family = enumerate_variants(depth, preset.width_scale, include_reference=preset.include_reference,
                                    family=preset.family)
        count = None if preset.variants is None else preset.variants + int(preset.include_reference)
        chosen += family if count is None else select_spread(family, count)
    return chosen


def run_sweep(*, preset: Preset, scale: str, out: str, data_dir, seed: int, resume: bool, ids=(), shard=(0, 1),
              verbose: bool = True, callbacks_for=None):
    """Train the chosen variants (``shard[0]::shard[1]`` of them in this process) in one run
    directory, then, once all are done, write variants.csv, the figures and the summary.
    ``callbacks_for(variant)`` may add training callbacks (tests use it to interrupt a run).
    Returns ``(run, number of variants still to train)``."""
    import shutil

    variants = choose_variants(preset, ids)
    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **dataclasses.asdict(preset), "variant_ids": [v.id for v in variants]}
    prefix = "train-" if ids else ""
    from tfbdl.io import default_run_id

    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=True if shard[1] > 1 else resume,
                   run_id=prefix + default_run_id(config, scale))
    if run.is_complete:
        record_run(run)
        return run, 0
    x_train, y_train, x_val, y_val, num_classes, provenance = load_data(preset, scale, data_dir, seed)
    run.record_data(provenance)
    for k, variant in enumerate(variants[shard[0]::shard[1]]):
        key = f"variant/{variant.id}"
        if run.is_done(key):  # also drops checkpoints a kill left between the mark and their removal
            shutil.rmtree(run.path / "checkpoints" / variant.id, ignore_errors=True)
            continue
        click.echo(f"variant {variant.id} ({k + 1}/{len(variants[shard[0]::shard[1]])}): widths "
                   f"{' '.join(map(str, variant.widths))}", err=True)
        extra = callbacks_for(variant) if callbacks_for else ()
        row = train_variant(run, variant, preset, (x_train, y_train, x_val, y_val), num_classes=num_classes,
                            seed=seed, verbose=verbose, callbacks=extra)
        run.mark_done(key, row)
        shutil.rmtree(run.path / "checkpoints" / variant.id, ignore_errors=True)  # ~60 MB each for VGG-16
    missing = [v.id for v in variants if not run.is_done(f"variant/{v.id}")]
    if missing:
        return run, len(missing)
    progress = json.loads((run.path / "progress.json").read_text(encoding="utf-8"))
    rows = [{k: progress[f"variant/{v.id}"][k] for k in RESULT_COLUMNS} for v in variants]
    write_variants_csv(run, rows)
    run.write_metrics({"variants": rows, "n_train": int(y_train.size), "n_val": int(y_val.size)})
    accuracy_figure(run, rows)
    table_figure(run, rows)
    run.finish(sweep_summary(run, preset, rows, int(y_train.size), int(y_val.size)))
    record_run(run)
    return run, 0


def write_variants_csv(run, rows: list[dict]) -> None:
    """``variants.csv``: one row per trained variant (:data:`~.training.RESULT_COLUMNS`)."""
    import csv
    import io

    from tfbdl.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run.file("variants.csv"), buffer.getvalue())
