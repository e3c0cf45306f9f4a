"""``tfbdl bdl posterior-adaptivity``: the predictive class distributions of single prior
samples, of the prior predictive (their average), and of posterior samples after observing
10, 100 and 1,000 examples per class (Wilson & Izmailov 2020, "adaptivity of the posterior
with data"; the reference's ``experiments/priors/cifar_posterior_predictions.ipynb``).

Under a vague N(0, 10 I) prior on the weights, single prior draws are confident (each puts
nearly all images in one class) while their average is uncertain; posterior samples, SGLD
chains run on class-balanced training sets nested in one another, should adapt to the data:
confident where the data say so, agreeing with each other more as the data grow.

Run directory: ``prior.npz`` (the prior draws' test logits), ``chains/n<k>-chain<c>/`` (one
sub-run per training-set size and chain: its Trainer checkpoints while it runs, then its test
logits), ``metrics.json``, ``posterior_adaptivity.png`` and ``summary.md``. A rerun skips what is
done and resumes a chain from its last checkpoint.
"""

from __future__ import annotations

import dataclasses

import click
import numpy as np

from tfbdl.cli.bdl.data import prepare_images
from tfbdl.cli.bdl.group import bdl
from tfbdl.cli.bdl.presets import PRESETS
from tfbdl.cli.bdl.prior_presets import ADAPTIVITY_PRESETS, CHAIN_INITS, AdaptivityPreset
from tfbdl.cli.common import open_run, record_run, typed_option
from tfbdl.cli.options import FiniteFloatRange, comma_separated, common_run_options

__all__ = ["EXPERIMENT", "adaptivity_command", "fitted_counts", "load_data", "nested_per_class", "parse_per_class",
           "resolve_data", "run_posterior_adaptivity"]

EXPERIMENT = "bdl-posterior-adaptivity"


def parse_per_class(ctx, param, value):
    """Callback of ``--per-class``: comma-separated positive counts -> sorted distinct tuple."""
    if value is None or isinstance(value, tuple):
        return value
    try:
        counts = comma_separated(value)
    except ValueError:
        counts = ()
    if not counts or counts[0] < 1:
        raise click.BadParameter(f"{value!r}: give comma-separated positive counts such as 10,100,1000",
                                 ctx=ctx, param=param)
    return counts


def fitted_counts(train, asked, option: str | None = None) -> tuple[int, ...]:
    """The per-class counts a run can use: each at most the smallest class of ``train`` (a preset's
    larger count is cut to it with a note; a typed one is an error), sorted and distinct."""
    available = int(np.unique(train.labels, return_counts=True)[1].min())
    return tuple(sorted({train.fit_count(k, option=option, available=available, what="images per class")
                         for k in asked}))


def nested_per_class(labels: np.ndarray, counts, seed: int) -> dict[int, np.ndarray]:
    """``{k: sorted indices of k examples of every class}`` for each k of ``counts``: the first k of
    each class in one seeded order, so every set holds the smaller ones."""
    from tfbdl.data.subsets import first_per_class

    order = np.random.default_rng(seed).permutation(labels.size)
    return {k: np.sort(order[first_per_class(labels[order], k)]) for k in counts}


def load_data(preset: AdaptivityPreset, scale: str, data_dir, seed: int):
    """``(train, test, counts, test_indices)``: the loaded data, the fitted per-class counts and
    ``test_per_class`` seeded test images of every class."""
    from tfbdl.data import load_for_run
    from tfbdl.data.subsets import stratified_indices

    train, test = (load_for_run(preset.dataset, split, scale, data_dir) for split in ("train", "test"))
    counts = fitted_counts(train, preset.per_class, typed_option("per_class"))
    (per_test,) = fitted_counts(test, (preset.test_per_class,), typed_option("test_per_class"))
    return train, test, counts, stratified_indices(test.labels, per_test, seed=seed + 1)


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``bdl posterior-adaptivity`` at ``scale`` reads, sizes fitted to the data here."""
    train, test, _, _ = load_data(ADAPTIVITY_PRESETS[scale], scale, data_dir, seed)
    return [train.provenance, test.provenance]


def run_posterior_adaptivity(*, preset: AdaptivityPreset, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Prior draws and SGLD posterior samples per training-set size; metrics, figure, summary."""
    from tfbdl.cli.bdl.adaptivity_metrics import sample_statistics
    from tfbdl.cli.bdl.adaptivity_report import adaptivity_figure, adaptivity_summary
    from tfbdl.io import default_run_id
    from tfbdl.seeding import derive_seed

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **dataclasses.asdict(preset)}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume,
                   run_id=f"{preset.model}-{default_run_id(config, scale)}")
    if run.is_complete:
        record_run(run)
        return run
    train, test, counts, test_keep = load_data(preset, scale, data_dir, seed)
    run.record_data([train.provenance, test.provenance])
    x_test, y_test = prepare_images(test.images[test_keep], preset.model), test.labels[test_keep]
    subsets = nested_per_class(train.labels, counts, seed)
    bn_inputs = prepare_images(train.images[subsets[counts[-1]][:preset.bn_images]], preset.model)
    runner = None
    if not (run.is_done("prior") and all(_chain_run(run, config, k, c).is_complete for k in counts
                                         for c in range(preset.chains))):
        from tfbdl.cli.bdl.adaptivity_fit import ChainRunner

        runner = ChainRunner(preset, x_test.shape[1:], train.num_classes)
    prior = _prior_stage(run, runner, preset, x_test, bn_inputs, seed)
    posterior, fits = {}, {}
    for k in counts:
        x, y = prepare_images(train.images[subsets[k]], preset.model), train.labels[subsets[k]]
        samples = []
        for chain in range(preset.chains):
            chain_run = _chain_run(run, config, k, chain)
            if not chain_run.is_complete:
                click.echo(f"{k} per class, chain {chain + 1}/{preset.chains}", err=True)
                _chain_stage(chain_run, runner, (x, y), x_test, derive_seed(seed, chain))
            with np.load(chain_run.file("logits.npz")) as archive:
                samples.append(archive["logits"])
            fits.setdefault(str(k), []).append(chain_run.done_info("fit"))
        posterior[str(k)] = sample_statistics(np.stack(samples), y_test)
    metrics = {"prior": sample_statistics(prior, y_test), "posterior": posterior, "fits": fits,
               "per_class": list(counts), "n_test": int(y_test.size), "num_classes": int(train.num_classes)}
    run.write_metrics(metrics)
    adaptivity_figure(run, preset, metrics)
    run.finish(adaptivity_summary(run, preset, metrics))
    record_run(run)
    return run


def _chain_run(run, config: dict, per_class: int, chain: int):
    """The sub-run ``chains/n<per_class>-chain<chain>/`` of one chain."""
    from tfbdl.io import RunDir

    return RunDir.open(run.path, "chains", f"n{per_class}-chain{chain}", {**config, "per_class": per_class,
                                                                          "chain": chain})


def _prior_stage(run, runner, preset: AdaptivityPreset, x_test, bn_inputs, seed: int) -> np.ndarray:
    """The prior draws' test logits ``[S, N, C]``, computed once into ``prior.npz``."""
    from tfbdl.io import atomic_path

    path = run.file("prior.npz")
    if not run.is_done("prior"):
        from tfbdl.cli.bdl.adaptivity_fit import prior_logits

        logits = prior_logits(runner.model, x_test, bn_inputs, prior_var=preset.prior_var, draws=preset.prior_draws,
                              seed=seed)
        with atomic_path(path) as temp:
            np.savez(temp, logits=logits)
        run.mark_done("prior")
    with np.load(path) as archive:
        return archive["logits"]


def _chain_stage(chain_run, runner, data, x_test, seed: int) -> None:
    """Run one chain, store its test logits, mark it done (with its last training row), drop its checkpoints."""
    from tfbdl.cli.bdl.adaptivity_fit import drop_checkpoints
    from tfbdl.io import atomic_path

    logits, fit = runner.run(chain_run, data, x_test, seed)
    with atomic_path(chain_run.file("logits.npz")) as temp:
        np.savez(temp, logits=logits)
    chain_run.mark_done("fit", fit)
    chain_run.finish()
    drop_checkpoints(chain_run)


@bdl.command("posterior-adaptivity")
@click.option("--model", type=click.Choice(tuple(PRESETS)), default=None,
              help="Network and its data: lenet5 on MNIST; preresnet20, vgg16, vgg16_bn on CIFAR-10 (default: "
                   "scale preset: lenet5 at tiny/smoke, preresnet20 at paper).")
@click.option("--per-class", default=None, callback=parse_per_class,
              help="Training examples per class the posterior sees, comma-separated (default: scale preset; "
                   "smoke and paper: 10,100,1000).")
@click.option("--test-per-class", type=click.IntRange(min=1), default=None,
              help="Test images per class the predictive distributions are measured on (default: scale preset).")
@click.option("--prior-var", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Variance v of the N(0, v I) prior on every weight (default: 10, the reference's).")
@click.option("--draws", type=click.IntRange(min=2), default=None, help="Prior draws (default: scale preset).")
@click.option("--chains", type=click.IntRange(min=1), default=None,
              help="SGLD chains per training-set size, one posterior sample each (default: scale preset).")
@click.option("--init", type=click.Choice(CHAIN_INITS), default=None,
              help="Where a chain starts: a prior draw (the reference) or the network's standard initialisation "
                   "(default: scale preset).")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None,
              help="Adam steps that bring a chain to the data before its Langevin steps (default: scale preset; "
                   "the reference: 0).")
@click.option("--sgld-steps", type=click.IntRange(min=1), default=None,
              help="Langevin steps per chain (default: scale preset; the reference: 5,000).")
@click.option("--sgld-lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Initial Langevin learning rate per mean loss, cosine-annealed to 0 (the reference: 0.001).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Examples per step; a training set that fits is used whole (default: scale preset).")
@common_run_options
def adaptivity_command(model, per_class, test_per_class, prior_var, draws, chains, init, warmup_steps, sgld_steps,
                       sgld_lr, batch_size, scale, out, data_dir, seed, resume):
    """Class distributions of prior draws, of the prior predictive and of SGLD posterior samples
    after a growing number of examples per class."""
    preset = ADAPTIVITY_PRESETS[scale]
    if model is not None and model != preset.model:  # another network: its own data and widths
        preset = dataclasses.replace(preset, model=model, dataset=PRESETS[model][scale].dataset, conv_widths=None,
                                     dense_widths=None)
    overrides = {"per_class": per_class, "test_per_class": test_per_class, "prior_var": prior_var,
                 "prior_draws": draws, "chains": chains, "init": init, "warmup_steps": warmup_steps,
                 "sgld_steps": sgld_steps, "sgld_lr": sgld_lr, "batch_size": batch_size}
    preset = dataclasses.replace(preset, **{k: v for k, v in overrides.items() if v is not None})
    run = run_posterior_adaptivity(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"bdl posterior-adaptivity run written to {run.path}")
