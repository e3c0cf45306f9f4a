"""``dwp run``: every stage in one run directory ``OUT/dwp/<run-id>/`` with a resumable sub-folder per
stage (``source/``, ``kernels/``, ``vae/``, ``bnn/``, ``init/``), the figures copied to the top and
one summary.md over all of them."""

from __future__ import annotations

import dataclasses

import click

from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.deep_weight_prior.bnn import stage_bnn
from tfbdl.cli.deep_weight_prior.initialisation import stage_init
from tfbdl.cli.deep_weight_prior.kernels import stage_kernels, stage_vae
from tfbdl.cli.deep_weight_prior.presets import EXPERIMENT, STAGES, Presets
from tfbdl.cli.deep_weight_prior.report import pipeline_summary
from tfbdl.cli.deep_weight_prior.rundirs import read_json, stage_config, stage_provenance, stage_run
from tfbdl.cli.deep_weight_prior.source import stage_source

__all__ = ["FIGURES", "run_pipeline"]

FIGURES = {"kernels": ("kernel_norms.png",),
           "vae": ("vae_latent_7x7.png", "vae_samples_7x7.png", "vae_latent_5x5.png", "vae_samples_5x5.png"),
           "bnn": ("bnn_accuracy.png",), "init": ("dwp_init_curves.png",)}  # copied from each stage to the top


def run_pipeline(*, presets: Presets, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Every stage in ``OUT/dwp/<run-id>/<stage>/`` (each skipped when finished), then the summary."""
    from tfbdl.io import atomic_write_bytes

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **{stage: dataclasses.asdict(getattr(presets, stage)) for stage in STAGES}}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    common = {"scale": scale, "seed": seed}

    def stage(name, preset, **inputs):
        return stage_run(run, name, stage_config(name, preset, data_dir=data_dir, **common, **inputs))

    runs = {"source": stage("source", presets.source)}
    if not runs["source"].is_complete:
        click.echo("== source networks", err=True)
        stage_source(runs["source"], presets.source, scale=scale, data_dir=data_dir, seed=seed)
    runs["kernels"] = stage("kernels", presets.kernels, source_run="source")
    if not runs["kernels"].is_complete:
        click.echo("== kernel bank", err=True)
        stage_kernels(runs["kernels"], runs["source"], presets.kernels)
    runs["vae"] = stage("vae", presets.vae, bank="kernels/kernel_bank.h5")
    if not runs["vae"].is_complete:
        click.echo("== kernel VAEs", err=True)
        stage_vae(runs["vae"], runs["kernels"].file("kernel_bank.h5"), presets.vae, seed=seed)
    needs_vae = "dwp" in presets.bnn.priors or presets.bnn.init == "dwp"
    runs["bnn"] = stage("bnn", presets.bnn, vae_run="vae" if needs_vae else None)
    if not runs["bnn"].is_complete:
        click.echo("== Bayesian networks", err=True)
        stage_bnn(runs["bnn"], presets.bnn, runs["vae"] if needs_vae else None, scale=scale, data_dir=data_dir,
                  seed=seed)
    runs["init"] = stage("init", presets.init, vae_run="vae")
    if not runs["init"].is_complete:
        click.echo("== DWP initialisation", err=True)
        stage_init(runs["init"], presets.init, runs["vae"], scale=scale, data_dir=data_dir, seed=seed)

    for name, figures in FIGURES.items():
        for figure in figures:
            atomic_write_bytes(run.file(figure), runs[name].file(figure).read_bytes())
    provenance = stage_provenance(runs["source"]) + stage_provenance(runs["bnn"])
    run.record_data(provenance)
    metrics = {name: read_json(r, "metrics.json") for name, r in runs.items()}
    run.write_metrics(metrics)
    run.finish(pipeline_summary(presets, metrics, provenance))
    record_run(run)
    return run
