"""``linearized run``: every part in one run directory, ``OUT/linearized/<run-id>/<part>/``, each
part a resumable sub-run skipped when finished; then the parts' figures are copied to the top and
the summary is written from their metrics."""

from __future__ import annotations

import dataclasses

import click

from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.linearized.presets import EXPERIMENT, Presets
from tfbdl.cli.linearized.report import pipeline_summary
from tfbdl.cli.linearized.rundirs import read_json, stage_config, stage_run
from tfbdl.cli.linearized.stages import (
    stage_cifar2, stage_compute_nads, stage_compute_ntk, stage_pretrained, stage_train_nads, stage_train_ntk)

__all__ = ["FIGURES", "run_pipeline"]

#: Each stage's figures, copied into the top run directory (REPORT.md shows those).
FIGURES = {"compute-ntk": ("ntk_spectrum.png",),
           "train-ntk": ("eigenfunction_accuracy.png", "ntk_alignment.png"),
           "compute-nads": ("nads.png", "nad_spectrum.png"),
           "train-nads": ("nad_accuracy.png",),
           "pretrained-ntk-comparison": ("pretrained_ntk_comparison.png",),
           "train-cifar2": ("cifar2_curves.png",)}


def run_pipeline(presets: Presets, *, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Every part in ``OUT/linearized/<run-id>/<part>/`` (each skipped when finished), then the summary."""
    from tfbdl.io import atomic_write_bytes

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **{name: dataclasses.asdict(getattr(presets, name)) for name in _fields(presets)}}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    common = {"scale": scale, "seed": seed}
    stages = {}

    def stage(name, preset, work, **inputs):
        stages[name] = stage_run(run, name, stage_config(name, preset, **common, **inputs))
        if not stages[name].is_complete:
            click.echo(f"== {name}", err=True)
            work(stages[name])

    stage("compute-ntk", presets.ntk,
          lambda r: stage_compute_ntk(r, presets.ntk, scale=scale, data_dir=data_dir, seed=seed), data_dir=data_dir)
    stage("train-ntk", presets.tasks,
          lambda r: stage_train_ntk(r, presets.tasks, stages["compute-ntk"].path, seed=seed), ntk_run="compute-ntk")
    stage("compute-nads", presets.nads, lambda r: stage_compute_nads(r, presets.nads, seed=seed))
    stage("train-nads", presets.nad_tasks,
          lambda r: stage_train_nads(r, presets.nad_tasks, stages["compute-nads"].path, seed=seed),
          nads_run="compute-nads")
    stage("pretrained-ntk-comparison", presets.pretrained,
          lambda r: stage_pretrained(r, presets.pretrained, stages["compute-ntk"].path, seed=seed),
          ntk_run="compute-ntk")
    stage("train-cifar2", presets.cifar2,
          lambda r: stage_cifar2(r, presets.cifar2, scale=scale, data_dir=data_dir, seed=seed), data_dir=data_dir)

    for name, figures in FIGURES.items():
        for figure in figures:
            atomic_write_bytes(run.file(figure), stages[name].file(figure).read_bytes())
    provenance = sum((read_json(stages[name].file("config.json")).get("data", [])
                      for name in ("compute-ntk", "train-cifar2")), [])
    run.record_data(provenance)
    metrics = {name: read_json(r.file("metrics.json")) for name, r in stages.items()}
    run.write_metrics(metrics)
    run.finish(pipeline_summary(presets, metrics, provenance))
    record_run(run)
    return run


def _fields(obj) -> list[str]:
    """The field names of the dataclass ``obj``."""
    return [f.name for f in dataclasses.fields(obj)]
