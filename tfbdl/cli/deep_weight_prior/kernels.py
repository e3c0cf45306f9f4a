"""Stages 2 and 3: the kernel bank (every 7x7 and 5x5 slice of the source networks, slices of
almost-zero norm dropped, in HDF5) and one kernel VAE per slice size trained on it, with the
checks of what the VAE prior knows beyond a Gaussian."""

from __future__ import annotations

import json

import click
import numpy as np

from tfbdl.cli.deep_weight_prior.figures import norms_figure
from tfbdl.cli.deep_weight_prior.presets import KERNEL_SIZES, SEED_VAE, KernelPreset, VaePreset
from tfbdl.cli.deep_weight_prior.report import kernels_summary, vae_summary
from tfbdl.cli.deep_weight_prior.rundirs import load_weights
from tfbdl.errors import InvalidOptionError
from tfbdl.seeding import derive_seed

__all__ = ["stage_kernels", "stage_vae", "vae_structure"]


def _quantiles(norms: np.ndarray) -> dict:
    q = np.quantile(norms, [0.0, 0.05, 0.5, 0.95, 1.0]) if norms.size else [float("nan")] * 5
    return dict(zip(("min", "q05", "median", "q95", "max"), (float(v) for v in q)))


def stage_kernels(run, source, preset: KernelPreset) -> dict:
    """Every 7x7 and 5x5 slice of the finished source run ``source`` into ``kernel_bank.h5``, slices
    with a norm below the threshold dropped; a histogram of the norms; finishes ``run``."""
    from tfbdl.dwp.kernel_bank import (collect_kernel_bank, kernel_slices, kernels_from_model, save_kernel_bank,
                                       slice_norms)
    from tfbdl.nn.fconv import fconv

    widths = tuple(source.config["widths"])
    paths = sorted((source.path / "nets").glob("net-*/weights.h5"))
    if len(paths) != source.config["nets"]:
        raise InvalidOptionError(f"{source.path} should hold {source.config['nets']} trained networks, found "
                                 f"{len(paths)}; rerun `tfbdl dwp train-source`")
    model = fconv(10, (28, 28, 1), widths=widths, seed=0)
    kernels: dict[int, list[np.ndarray]] = {k: [] for k in KERNEL_SIZES}
    for path in paths:
        load_weights(model, path)
        for k, found in kernels_from_model(model).items():
            kernels.setdefault(k, []).extend(found)
    bank, counts = collect_kernel_bank(kernels, preset.threshold)
    all_norms = {k: slice_norms(np.concatenate([kernel_slices(w) for w in kernels[k]])) for k in KERNEL_SIZES}
    save_kernel_bank(run.file("kernel_bank.h5"), bank, counts,
                     {"source_run": str(source.path), "nets": len(paths), "widths": list(widths),
                      "threshold": preset.threshold})
    norms_figure(run, all_norms, preset.threshold)
    metrics = {"counts": {f"{k}x{k}": counts[k] for k in KERNEL_SIZES}, "threshold": preset.threshold,
               "nets": len(paths), "norm_quantiles": {f"{k}x{k}": _quantiles(all_norms[k]) for k in KERNEL_SIZES}}
    run.write_metrics(metrics)
    run.finish(kernels_summary(metrics, widths))
    return metrics


def stage_vae(run, bank_path, preset: VaePreset, *, seed: int) -> dict:
    """One kernel VAE per slice size (resumable, ``kernel_vae_<k>x<k>.h5``), latent-space and
    decoded-sample figures; finishes ``run``."""
    from tfbdl.dwp.kernel_bank import load_kernel_bank
    from tfbdl.dwp.vae import plot_decoded_samples, plot_latent_space, train_kernel_vae

    bank, counts, _ = load_kernel_bank(bank_path)
    results = {}
    for k in KERNEL_SIZES:
        key = f"vae-{k}x{k}"
        name = f"kernel_vae_{k}x{k}"
        slices = bank.get(k)
        if slices is None or len(slices) < 2:
            held = 0 if slices is None else len(slices)
            raise InvalidOptionError(f"the kernel bank {bank_path} holds {held} {k}x{k} slices, too few to train "
                                     "a VAE; lower --threshold or train more source nets")
        if not run.is_done(key):
            hidden, latent = preset.architecture(k)
            vae_seed = derive_seed(seed, SEED_VAE, k)
            vae, history = train_kernel_vae(slices, hidden=hidden, latent=latent, epochs=preset.epochs(k),
                                            batch_size=preset.batch_size, learning_rate=preset.learning_rate,
                                            run_dir=run, seed=vae_seed, verbose=False,
                                            validation_fraction=preset.validation_fraction, name=name)
            plot_latent_space(vae, slices, run.file(f"vae_latent_{k}x{k}.png"), seed=vae_seed)
            plot_decoded_samples(vae, run.file(f"vae_samples_{k}x{k}.png"), num=64, seed=vae_seed)
            last = history[-1]
            run.mark_done(key, {"hidden": hidden, "latent": latent, "epochs": len(history), "slices": len(slices),
                                **{m: last[m] for m in ("train_elbo", "eval_elbo", "eval_log_lik", "eval_kl",
                                                        "eval_recon_mse")}})
            click.echo(f"{k}x{k} VAE: train ELBO {last['train_elbo']:.3f}, held-out ELBO {last['eval_elbo']:.3f}",
                       err=True)
        if not run.is_done(f"structure-{k}x{k}"):
            run.mark_done(f"structure-{k}x{k}", vae_structure(run, slices, k, preset, derive_seed(seed, SEED_VAE, k)))
        progress = json.loads((run.path / "progress.json").read_text())
        results[f"{k}x{k}"] = {**progress[key], "structure": progress[f"structure-{k}x{k}"]}
    metrics = {"vaes": results, "bank_counts": {f"{k}x{k}": counts[k] for k in counts}}
    run.write_metrics(metrics)
    run.finish(vae_summary(preset, metrics))
    return metrics


def vae_structure(run, slices: np.ndarray, k: int, preset: VaePreset, vae_seed: int) -> dict:
    """The trained ``k x k`` VAE against a Gaussian fit and at the zero kernel, on the slices it held out
    (:func:`tfbdl.dwp.diagnostics.prior_structure`; on its training slices when none were held out).
    ``slices`` is ``[n, k, k]``."""
    from tfbdl.dwp.diagnostics import prior_structure
    from tfbdl.dwp.vae import KernelVAE, held_out_split

    vae = KernelVAE.load(run.path / f"kernel_vae_{k}x{k}.h5")
    train_idx, held_idx = held_out_split(len(slices), preset.validation_fraction, vae_seed)
    held = slices[held_idx] if len(held_idx) else slices[train_idx]
    return prior_structure(vae, slices[train_idx], held, seed=vae_seed)
