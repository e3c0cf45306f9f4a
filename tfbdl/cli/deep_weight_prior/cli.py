"""The ``tfbdl dwp`` Click commands: option parsing, the preset with the given options, the run
directory; the stages do the work (:mod:`.source`, :mod:`.kernels`, :mod:`.bnn`,
:mod:`.initialisation`, :mod:`.pipeline`)."""

from __future__ import annotations

import click

from tfbdl.cli.common import open_run, record_run
from tfbdl.cli.deep_weight_prior.bnn import stage_bnn
from tfbdl.cli.deep_weight_prior.initialisation import stage_init
from tfbdl.cli.deep_weight_prior.kernels import stage_kernels, stage_vae
from tfbdl.cli.deep_weight_prior.pipeline import run_pipeline
from tfbdl.cli.deep_weight_prior.presets import (INITS, PRESETS, PRIORS, STAGE_EXPERIMENTS, Presets, bnn_preset,
                                                  replace_given)
from tfbdl.cli.deep_weight_prior.rundirs import (bank_file, finished_stage, release_vae_folder, stage_config,
                                                  vae_input)
from tfbdl.cli.deep_weight_prior.source import stage_source
from tfbdl.cli.options import FINITE_FLOAT, FiniteFloatRange, common_run_options
from tfbdl.errors import InvalidOptionError

__all__ = ["collect_kernels_command", "convergence_command", "dwp", "dwp_init_command", "random_features_command",
           "run_command", "train_bnn_command",
           "train_source_command", "train_vae_command"]


@click.group("dwp")
def dwp():
    """The Deep Weight Prior (Atanov et al., ICLR 2019): kernel bank, kernel VAEs, Bayesian networks with
    standard-normal / log-uniform / DWP priors, DWP initialisation."""


def _widths_option(what: str):
    return click.option("--widths", type=click.IntRange(min=1), nargs=2, default=None,
                        help=f"Channels of the 7x7 and 5x5 convolutions of the {what}, e.g. --widths 32 128 "
                             "(default: scale preset).")


_epochs = click.IntRange(min=1)
_rate = FiniteFloatRange(min=0, min_open=True)


def _standalone(stage: str, preset, *, scale, out, data_dir, seed, resume, **inputs):
    """Open (or resume) ``OUT/dwp-<stage>/<run-id>/`` for a standalone command."""
    config = {"experiment": STAGE_EXPERIMENTS[stage],
              **stage_config(stage, preset, scale=scale, seed=seed, data_dir=data_dir, **inputs)}
    return open_run(STAGE_EXPERIMENTS[stage], config, out=out, scale=scale, resume=resume)


def _done(run, what: str) -> None:
    record_run(run)
    click.echo(f"dwp {what} run written to {run.path}")


@dwp.command("train-source")
@click.option("--nets", type=click.IntRange(min=1), default=None, help="Source networks, one seed each (paper: 100).")
@_widths_option("source networks (paper: 256 512)")
@click.option("--epochs", type=_epochs, default=None, help="Training epochs per network (paper: 100).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size (paper: 256).")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate, decayed linearly to 0 (paper: 1e-3).")
@click.option("--l2", type=FiniteFloatRange(min=0), default=None,
              help="Weight of the squared norm of the convolutions' parameters in the loss (paper: 1e-3).")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Source training images used (default: scale preset; paper: all).")
@click.option("--n-test", type=click.IntRange(min=1), default=None,
              help="Source test images evaluated (default: scale preset; paper: all).")
@common_run_options
def train_source_command(nets, widths, epochs, batch_size, lr, l2, n_train, n_test, scale, out, data_dir, seed,
                         resume):
    """Train many fconv networks with different seeds on the source data (notMNIST; Fashion-MNIST stands in
    at tiny/smoke when it is absent); finished networks are skipped on rerun."""
    preset = replace_given(PRESETS[scale].source, nets=nets, widths=widths, epochs=epochs, batch_size=batch_size,
                           learning_rate=lr, l2=l2, n_train=n_train, n_test=n_test)
    run = _standalone("source", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    if not run.is_complete:
        stage_source(run, preset, scale=scale, data_dir=data_dir, seed=seed)
    _done(run, "train-source")


@dwp.command("collect-kernels")
@click.option("--source-run", type=click.Path(file_okay=False, path_type=str), required=True,
              help="A finished `tfbdl dwp train-source` run directory (or a `tfbdl dwp run` directory).")
@click.option("--threshold", type=FiniteFloatRange(min=0), default=None,
              help="Drop slices whose Frobenius norm is below this (default: scale preset).")
@common_run_options
def collect_kernels_command(source_run, threshold, scale, out, data_dir, seed, resume):
    """Cut every 7x7 and 5x5 kernel slice of the source networks into an HDF5 kernel bank, dropping slices
    of almost-zero norm; the counts go to summary.md."""
    source = finished_stage(source_run, "source", "--source-run")
    preset = replace_given(PRESETS[scale].kernels, threshold=threshold)
    run = _standalone("kernels", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                      source_run=str(source.path.resolve()))
    if not run.is_complete:
        stage_kernels(run, source, preset)
    _done(run, "collect-kernels")


@dwp.command("train-vae")
@click.option("--bank", type=click.Path(exists=True, path_type=str), required=True,
              help="A kernel bank (kernel_bank.h5) or the `tfbdl dwp collect-kernels` / `tfbdl dwp run` "
                   "directory that holds it.")
@click.option("--epochs", type=_epochs, default=None, help="Training epochs of both VAEs (paper: 300).")
@click.option("--epochs-7x7", "epochs_7", type=_epochs, default=None, help="Training epochs of the 7x7 VAE only.")
@click.option("--epochs-5x5", "epochs_5", type=_epochs, default=None, help="Training epochs of the 5x5 VAE only.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Slices per mini-batch (paper: 128).")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate, decayed linearly (paper: 1e-3).")
@click.option("--hidden-7x7", "hidden_7", type=click.IntRange(min=1), default=None,
              help="Hidden channels of the 7x7 VAE (paper: 32).")
@click.option("--latent-7x7", "latent_7", type=click.IntRange(min=1), default=None,
              help="Latent dimension of the 7x7 VAE (paper: 2).")
@click.option("--hidden-5x5", "hidden_5", type=click.IntRange(min=1), default=None,
              help="Hidden channels of the 5x5 VAE (paper: 64).")
@click.option("--latent-5x5", "latent_5", type=click.IntRange(min=1), default=None,
              help="Latent dimension of the 5x5 VAE (paper: 4).")
@click.option("--val-fraction", type=FiniteFloatRange(0, 1, max_open=True), default=None,
              help="Fraction of the slices held out to report the ELBO on (default: scale preset).")
@common_run_options
def train_vae_command(bank, epochs, epochs_7, epochs_5, batch_size, lr, hidden_7, latent_7, hidden_5, latent_5,
                      val_fraction, scale, out, data_dir, seed, resume):
    """Train one kernel VAE per slice size (7x7 and 5x5) on the kernel bank; save them and plot their latent
    spaces and decoded samples."""
    bank_path = bank_file(bank)
    preset = replace_given(PRESETS[scale].vae, epochs_7=epochs_7 or epochs, epochs_5=epochs_5 or epochs,
                           batch_size=batch_size, learning_rate=lr, hidden_7=hidden_7,
                           latent_7=latent_7, hidden_5=hidden_5, latent_5=latent_5, validation_fraction=val_fraction)
    run = _standalone("vae", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                      bank=str(bank_path.resolve()))
    if not run.is_complete:
        stage_vae(run, bank_path, preset, seed=seed)
    _done(run, "train-vae")


_prior_option = click.option("--prior", "priors", type=click.Choice(PRIORS), multiple=True,
                            help="Prior on conv1 and conv2; repeat for several (default: all three).")
_init_option = click.option("--init", type=click.Choice(INITS), default=None,
                           help="Posterior means of the kernels: xavier (the reference's default), he, or dwp "
                                "(kernel-VAE decoder means, the reference's `--init_list vae vae`).")
_sizes_option = click.option("--sizes", default=None,
                            help="Numbers of training examples, comma-separated, e.g. 50,100,200,500,1000 (default: "
                                 "scale preset).")
_splits_option = click.option("--splits", type=click.IntRange(min=1), default=None,
                             help="Disjoint stratified training splits per size (paper: 10).")


@dwp.command("train-bnn")
@click.option("--vae-run", type=click.Path(file_okay=False, path_type=str), default=None,
              help="A finished `tfbdl dwp train-vae` (or `tfbdl dwp run`) directory; needed for --prior dwp and "
                   "--init dwp.")
@click.option("--release-vaes", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Instead of --vae-run: a folder with the deep weight prior release's trained kernel VAEs "
                   "(vae7x7.npz, vae5x5.npz; see KernelVAE.from_release).")
@_prior_option
@_init_option
@_sizes_option
@_splits_option
@click.option("--epochs", type=_epochs, default=None, help="Training epochs of each BNN (paper: 10000).")
@_widths_option("Bayesian network (paper: 32 128)")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size (paper: 256).")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate, decayed linearly to 0 (paper: 1e-3).")
@click.option("--n-test", type=click.IntRange(min=1), default=None,
              help="Target test images evaluated (default: scale preset; paper: all).")
@click.option("--test-samples", type=click.IntRange(min=1), default=None,
              help="Posterior samples averaged in the test predictive (paper: 10).")
@click.option("--dwp-samples", type=click.IntRange(min=1), default=None,
              help="Weight draws in the Monte Carlo estimate of the DWP's KL term (paper: 1).")
@click.option("--dwp-antithetic/--dwp-plain", default=None,
              help="Draw the DWP term's weight and latent noise in mirrored pairs (eps, eta), (-eps, -eta) "
                   "(unbiased; 4x less gradient noise on the kernels at twice the cost) or plainly, one draw each, "
                   "as the reference (default: plain).")
@click.option("--log-sigma2-init", type=FINITE_FLOAT, default=None,
              help="Initial log sigma^2 of every kernel entry of the posterior (paper: -10).")
@common_run_options
def train_bnn_command(vae_run, release_vaes, priors, init, sizes, splits, epochs, widths, batch_size, lr, n_test,
                      test_samples, dwp_samples, dwp_antithetic, log_sigma2_init, scale, out, data_dir, seed, resume):
    """Variational Bayesian fconv on the target (MNIST) with few examples, one prior per run on both
    convolutions; writes the table prior x number of examples -> test accuracy (mean ± std over splits)."""
    preset = bnn_preset(scale, priors=priors, init=init, sizes=sizes, splits=splits, epochs=epochs, widths=widths,
                        batch_size=batch_size, lr=lr, n_test=n_test, test_samples=test_samples,
                        dwp_samples=dwp_samples, dwp_antithetic=dwp_antithetic,
                        log_sigma2_init=log_sigma2_init)
    if release_vaes is not None:
        if vae_run is not None:
            raise InvalidOptionError("give either --vae-run or --release-vaes, not both")
        vaes = release_vae_folder(release_vaes)
        run = _standalone("bnn", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                          release_vaes=str(vaes))
    else:
        vaes = vae_input(vae_run, "dwp" in preset.priors or preset.init == "dwp", "--prior dwp / --init dwp")
        run = _standalone("bnn", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                          vae_run=str(vaes.path.resolve()) if vaes is not None else None)
    if not run.is_complete:
        stage_bnn(run, preset, vaes, scale=scale, data_dir=data_dir, seed=seed)
    _done(run, "train-bnn")


@dwp.command("dwp-init")
@click.option("--vae-run", type=click.Path(file_okay=False, path_type=str), required=True,
              help="A finished `tfbdl dwp train-vae` (or `tfbdl dwp run`) directory.")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Stratified target training examples (default: scale preset).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Networks per initialisation.")
@click.option("--epochs", type=_epochs, default=None, help="Training epochs of each network.")
@_widths_option("networks")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size.")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate (constant).")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Target test images evaluated every epoch.")
@common_run_options
def dwp_init_command(vae_run, n_train, seeds, epochs, widths, batch_size, lr, n_test, scale, out, data_dir, seed,
                     resume):
    """Ordinary fconv networks initialised from kernel-VAE decoder samples vs Xavier initialisation: test
    accuracy per epoch, mean over seeds (dwp_init_curves.png)."""
    vaes = vae_input(vae_run, True, "dwp-init")
    preset = replace_given(PRESETS[scale].init, n_train=n_train, seeds=seeds, epochs=epochs, widths=widths,
                           batch_size=batch_size, learning_rate=lr, n_test=n_test)
    run = _standalone("init", preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume,
                      vae_run=str(vaes.path.resolve()))
    if not run.is_complete:
        stage_init(run, preset, vaes, scale=scale, data_dir=data_dir, seed=seed)
    _done(run, "dwp-init")


@dwp.command("run")
@click.option("--nets", type=click.IntRange(min=1), default=None, help="Source networks (paper: 100).")
@click.option("--threshold", type=FiniteFloatRange(min=0), default=None,
              help="Drop kernel slices whose Frobenius norm is below this (default: scale preset).")
@click.option("--vae-epochs", type=_epochs, default=None, help="Training epochs of both kernel VAEs (paper: 300).")
@_prior_option
@_init_option
@_sizes_option
@_splits_option
@click.option("--bnn-epochs", type=_epochs, default=None, help="Training epochs of each BNN (paper: 10000).")
@common_run_options
def run_command(nets, threshold, vae_epochs, priors, init, sizes, splits, bnn_epochs, scale, out, data_dir, seed,
                resume):
    """The whole pipeline in one run directory, OUT/dwp/<run-id>/ with a resumable sub-folder per stage:
    source nets, kernel bank, kernel VAEs, BNNs with three priors, DWP initialisation."""
    base = PRESETS[scale]
    presets = Presets(
        source=replace_given(base.source, nets=nets), kernels=replace_given(base.kernels, threshold=threshold),
        vae=replace_given(base.vae, epochs_7=vae_epochs, epochs_5=vae_epochs),
        bnn=bnn_preset(scale, priors=priors, init=init, sizes=sizes, splits=splits, epochs=bnn_epochs, widths=None,
                       batch_size=None, lr=None, n_test=None, test_samples=None, dwp_samples=None),
        init=base.init)
    run = run_pipeline(presets=presets, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"dwp run written to {run.path}")


_sources_options = [
    click.option("--vae-run", type=click.Path(file_okay=False, path_type=str), default=None,
                 help="Our kernel VAEs: a finished `tfbdl dwp train-vae` (or `tfbdl dwp run`) directory; its kernel "
                      "bank gives the filters arm (default: the newest finished `tfbdl dwp run` under --out)."),
    click.option("--release-dir", type=click.Path(file_okay=False, path_type=str), default=None,
                 help="A folder with the deep weight prior release's vae7x7.npz, vae5x5.npz, conv7x7_train.npy and "
                      "conv5x5_test.npy: adds the dwp-release and filters-release arms."),
]


def _sources(options):
    for option in reversed(_sources_options):
        options = option(options)
    return options


def _open_study(experiment: str, preset, sources, *, scale, out, data_dir, seed, resume):
    import dataclasses

    config = {"experiment": experiment, "scale": scale, "seed": seed, "data_dir": data_dir, **sources.where,
              "arms": list(sources.arms()), **dataclasses.asdict(preset)}
    return open_run(experiment, config, out=out, scale=scale, resume=resume)


@dwp.command("random-features")
@_sources
@click.option("--scales", default=None,
              help="Width scales k, comma-separated from 1/16,1/8,1/4,1/2,1 (default: scale preset; paper: all).")
@click.option("--base-widths", type=click.IntRange(min=1), nargs=2, default=None,
              help="Widths of the 7x7 and 5x5 convolutions at k = 1 (paper: 32 128).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Networks per arm and scale.")
@click.option("--epochs", type=_epochs, default=None, help="Training epochs of the dense layer (release: 100).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size (release: 256).")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate, decayed linearly to 0 (release: 1e-3).")
@click.option("--n-train", type=click.IntRange(min=1), default=None, help="MNIST training images (paper: all).")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="MNIST test images (paper: all).")
@common_run_options
def random_features_command(vae_run, release_dir, scales, base_widths, seeds, epochs, batch_size, lr, n_train, n_test,
                            scale, out, data_dir, seed, resume):
    """Random feature extraction: conv kernels drawn from the DWP, Xavier or the kernel bank ("filters") and
    frozen, the dense layer trained; test accuracy against the width scale k (random_features.png)."""
    from tfbdl.cli.deep_weight_prior.kernel_sources import kernel_sources
    from tfbdl.cli.deep_weight_prior.presets import RFE_PRESETS, parse_scales
    from tfbdl.cli.deep_weight_prior.random_features import stage_random_features

    preset = replace_given(RFE_PRESETS[scale], scales=parse_scales(scales), base_widths=base_widths, seeds=seeds,
                           epochs=epochs, batch_size=batch_size, learning_rate=lr, n_train=n_train, n_test=n_test)
    sources = kernel_sources(vae_run, release_dir, out)
    run = _open_study("dwp-random-features", preset, sources, scale=scale, out=out, data_dir=data_dir, seed=seed,
                      resume=resume)
    if not run.is_complete:
        stage_random_features(run, preset, sources, scale=scale, data_dir=data_dir, seed=seed)
    _done(run, "random-features")


@dwp.command("convergence")
@_sources
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimisation steps (paper's figure: 300).")
@click.option("--eval-every", type=click.IntRange(min=1), default=None,
              help="Test accuracy after every this many steps (and at step 0).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Networks per arm.")
@_widths_option("networks (paper: 32 128)")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Mini-batch size (release: 256).")
@click.option("--lr", type=_rate, default=None, help="Adam learning rate, constant (release: 1e-3).")
@click.option("--n-train", type=click.IntRange(min=1), default=None, help="MNIST training images (paper: all).")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="MNIST test images (paper: all).")
@click.option("--vae-steps", type=click.IntRange(min=0), default=None,
              help="Optimisation steps of the VAE-on-MNIST panel (paper's figure: 1000; 0: skip the panel).")
@common_run_options
def convergence_command(vae_run, release_dir, steps, eval_every, seeds, widths, batch_size, lr, n_train, n_test,
                        vae_steps, scale, out, data_dir, seed, resume):
    """Faster convergence: fconv networks (and a convolutional VAE) whose conv kernels start from the DWP, Xavier
    or the kernel bank ("filters"), all trained; test accuracy (and the VAE's lower bound) per optimisation step,
    bands over seeds (convergence.png)."""
    from tfbdl.cli.deep_weight_prior.convergence import stage_convergence
    from tfbdl.cli.deep_weight_prior.kernel_sources import kernel_sources
    from tfbdl.cli.deep_weight_prior.presets import CONVERGENCE_PRESETS

    preset = replace_given(CONVERGENCE_PRESETS[scale], steps=steps, eval_every=eval_every, seeds=seeds,
                           widths=widths, batch_size=batch_size, learning_rate=lr, n_train=n_train, n_test=n_test,
                           vae_steps=vae_steps)
    sources = kernel_sources(vae_run, release_dir, out)
    run = _open_study("dwp-convergence", preset, sources, scale=scale, out=out, data_dir=data_dir, seed=seed,
                      resume=resume)
    if not run.is_complete:
        stage_convergence(run, preset, sources, scale=scale, data_dir=data_dir, seed=seed)
    _done(run, "convergence")
