"""``tfbdl bdl multiswag``: deep ensembles vs MultiSWA vs MultiSWAG.

M independent SWAG runs (members, each a resumable sub-run, trainable in shards) are averaged
into three ensembles; their NLL against the number of models is measured on the test set and
on every CIFAR-10-C corruption and severity of part of it.
"""

from __future__ import annotations

import dataclasses

import click
import numpy as np

from tfbdl.cli.bdl.data import load_training_data, prepare_images
from tfbdl.cli.bdl.group import bdl, strategy_option
from tfbdl.cli.bdl.member import train_member
from tfbdl.cli.bdl.presets import MULTI_PRESETS, MultiPreset
from tfbdl.cli.bdl.swag import model_run_id
from tfbdl.cli.bdl.swag_report import MULTISWAG_METHODS, corruption_figures, curves_figure, multiswag_summary
from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.options import common_run_options, shard_option

__all__ = ["MULTI_EXPERIMENT", "corrupted_sets", "corruption_inputs", "ensemble_curves", "multiswag_command",
           "resolve_data", "run_multiswag"]

MULTI_EXPERIMENT = "bdl-multiswag"


def resolve_data(scale: str, data_dir=None, seed: int = 0, model: str = "lenet5") -> list[dict]:
    """What ``bdl multiswag --model MODEL`` at ``scale`` reads (no training, no corruption)."""
    preset = MULTI_PRESETS[model][scale]
    provenance = load_training_data(preset.member, scale, data_dir, seed)[-1]
    test, _ = corruption_inputs(preset, scale, data_dir, seed)
    return provenance + [test.provenance]


def corruption_inputs(preset: MultiPreset, scale: str, data_dir, seed: int):
    """``(test data, indices)``: the ``n_corrupt`` seeded test images that get corrupted."""
    from tfbdl.data import load_for_run

    test = load_for_run(preset.member.dataset, "test", scale, data_dir)
    return test, test.subset(preset.n_corrupt, seed + 3)


def corrupted_sets(run, preset: MultiPreset, scale: str, data_dir, seed: int, texture_dir=None):
    """``({"<corruption>/<severity>": images}, labels, corruption names)``: the CIFAR-10-C
    corruptions of ``n_corrupt`` seeded test images, written (resumably) under ``corrupted/``."""
    import os

    from tfbdl.data.corruptions import FROST_DIR_ENV, SEVERITIES, informative_corruptions, make_corrupted_set

    texture_dir = texture_dir or os.environ.get(FROST_DIR_ENV)
    test, keep = corruption_inputs(preset, scale, data_dir, seed)
    names, _ = informative_corruptions(test.images.shape[-1], texture_dir)
    paths = make_corrupted_set(test.images[keep], test.labels[keep], run.file("corrupted"), names=names, seed=seed,
                               texture_dir=texture_dir)
    sets = {}
    for name, path in paths.items():
        with np.load(path) as archive:
            for severity in SEVERITIES:
                sets[f"{name}/{severity}"] = prepare_images(archive[f"severity_{severity}"], preset.member.model)
    return sets, test.labels[keep], names


def run_multiswag(*, preset: MultiPreset, scale: str, out: str, data_dir, seed: int, resume: bool,
                  strategy: str, shard=(0, 1), texture_dir=None):
    """Train ``preset.models`` independent SWAG runs (members ``shard[0]::shard[1]`` in this
    process), then, once all exist, NLL against the number of models for the three ensembles on
    the test set and on every corruption and severity."""
    from tfbdl.io import RunDir, atomic_path

    member_preset, models = preset.member, preset.models
    config = {"experiment": MULTI_EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              "strategy": strategy, "models": models, "n_corrupt": preset.n_corrupt,
              **dataclasses.asdict(member_preset)}
    run = open_run(MULTI_EXPERIMENT, config, out=out, scale=scale, resume=True if shard[1] > 1 else resume,
                   run_id=model_run_id(member_preset, config, scale))
    if run.is_complete:
        record_run(run)
        return run, 0
    x_train, y_train, x_test, y_test, num_classes, provenance = load_training_data(member_preset, scale, data_dir,
                                                                                   seed)
    run.record_data(provenance)
    corrupted, y_corrupt, names = corrupted_sets(run, preset, scale, data_dir, seed, texture_dir)
    eval_sets = {"test": x_test, **corrupted}

    def member_dir(m):
        return RunDir.open(run.path, "members", f"member-{m}", {**config, "member": m})

    for member in range(shard[0], models, shard[1]):
        member_run = member_dir(member)
        if member_run.is_complete:
            continue
        click.echo(f"member {member + 1}/{models}", err=True)
        probs = train_member(member_run, member_preset, (x_train, y_train), num_classes=num_classes,
                             seed=seed + 1000 * member, strategy=strategy, eval_sets=eval_sets)
        with atomic_path(member_run.file("predictions.npz")) as temp:
            np.savez(temp, **{f"{name}|{method}": p.astype(np.float32) for name, by_method in probs.items()
                              for method, p in by_method.items()})
        member_run.finish()
    missing = [m for m in range(models) if not member_dir(m).is_complete]
    if missing:
        return run, len(missing)
    labels = {name: (y_test if name == "test" else y_corrupt) for name in eval_sets}
    curves = ensemble_curves(run, models, labels)
    run.write_metrics({"curves": curves, "n_train": int(y_train.size), "n_test": int(y_test.size),
                       "n_corrupt": int(y_corrupt.size), "corruptions": names})
    curves_figure(run, curves["test"])
    corruption_figures(run, curves, names)
    run.finish(multiswag_summary(run, member_preset, models, curves, names, int(y_train.size), int(y_test.size),
                                 int(y_corrupt.size)))
    record_run(run)
    return run, 0


def ensemble_curves(run, models: int, labels: dict) -> dict:
    """{set: {method: [{models, nll, accuracy, ece, brier}]}}: the first k members averaged, k = 1..M."""
    from tfbdl.metrics import classification_metrics

    archives = [np.load(run.path / "members" / f"member-{m}" / "predictions.npz") for m in range(models)]
    try:
        curves = {}
        for name, y in labels.items():
            curves[name] = {}
            for method in MULTISWAG_METHODS:
                total, rows = 0.0, []
                for k, archive in enumerate(archives, 1):
                    total = total + archive[f"{name}|{method}"].astype(np.float64)
                    rows.append({"models": k, **classification_metrics(total / k, y)})
                curves[name][method] = rows
        return curves
    finally:
        for archive in archives:
            archive.close()


@bdl.command("multiswag")
@click.option("--model", type=click.Choice(tuple(MULTI_PRESETS)), default="lenet5", show_default=True,
              help="Network and its data: lenet5 on MNIST, preresnet20 on CIFAR-10 (replaced at tiny/smoke when "
                   "absent, zero-padded to 32x32; REPORT.md says so).")
@click.option("--models", type=click.IntRange(min=1), default=None, help="Independent runs (default: scale preset).")
@click.option("--n-corrupt", type=click.IntRange(min=1), default=None,
              help="Test images per corruption and severity (default: scale preset; paper: the whole test set).")
@click.option("--texture-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder with the frost texture images (else $TFBDL_FROST_DIR; frost is skipped without them).")
@shard_option("Train only members i, i+n, ... (0-based i/n); rerun without it once all are done to merge.")
@strategy_option
@common_run_options
def multiswag_command(model, models, n_corrupt, texture_dir, shard, strategy, scale, out, data_dir, seed, resume):
    """Deep ensembles vs MultiSWA vs MultiSWAG: NLL against the number of independent models, on the
    test set and on each CIFAR-10-C corruption and severity of it."""
    preset = MULTI_PRESETS[model][scale]
    preset = dataclasses.replace(preset, models=models or preset.models,
                                 n_corrupt=n_corrupt if n_corrupt is not None else preset.n_corrupt)
    run, missing = run_multiswag(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed,
                                 resume=resume, strategy=strategy, shard=shard, texture_dir=texture_dir)
    if missing:
        click.echo(f"{missing} member(s) still to train (other shards); rerun once they are done to merge")
    else:
        click.echo(f"bdl multiswag run written to {run.path}")
