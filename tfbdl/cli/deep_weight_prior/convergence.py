"""Faster convergence (the paper's Section 4.2, "ConvNet on MNIST"): ordinary fconv networks whose conv
kernels start from each arm (:mod:`.kernel_sources`), every parameter trained, the test accuracy after
every ``eval_every`` optimisation steps from step 0, bands over seeds.

As the release's ``train-net.py --fastconv 1`` (test accuracy logged every ``--eval_freq`` iterations):
Adam, batches of 256 drawn from the whole training set. Within the 300 steps the paper plots, the
release's linear decay over 100 epochs changes the rate by under 1%, so the rate is constant here.
One network of one shape serves every arm and seed (its weights re-assigned, the Adam state reset), so
the step is traced once; each (arm, seed) is a resumable sub-run ``nets/<arm>-seed<s>``.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.deep_weight_prior.data import target_data
from tfbdl.cli.deep_weight_prior.kernel_sources import initialise_kernels
from tfbdl.cli.deep_weight_prior.presets import SEED_CONVERGENCE, ConvergencePreset
from tfbdl.cli.deep_weight_prior.rundirs import read_json
from tfbdl.cli.deep_weight_prior.stepwise import AdamSteps, accuracy, batches, cross_entropy
from tfbdl.data.subsets import seeded_subset
from tfbdl.seeding import derive_seed

__all__ = ["eval_steps", "resolve_data", "stage_convergence", "train_convergence"]


def eval_steps(preset: ConvergencePreset) -> list[int]:
    """The steps after which the test accuracy is taken: 0, eval_every, ..., and the last."""
    return sorted(set(range(0, preset.steps + 1, preset.eval_every)) | {preset.steps})


def train_convergence(model, steps: AdamSteps, preset: ConvergencePreset, data: dict, seed: int) -> dict:
    """Train every parameter of ``model`` (its starting weights already set) for ``preset.steps`` Adam
    steps; the test accuracy at :func:`eval_steps` and the training loss per step."""
    def predict(x):
        return model(x, training=False)

    steps.reset()
    rng = np.random.default_rng(seed)
    x, y = data["x_train"], data["y_train"]
    wanted, curve, losses, done = eval_steps(preset), [], [], 0
    while True:
        for idx in batches(len(y), preset.batch_size, rng):
            if done in wanted:
                curve.append(accuracy(predict, data["x_test"], data["y_test"]))
            if done == preset.steps:
                return {"steps": wanted, "test_accuracy": curve, "train_loss": losses}
            losses.append(steps.step(x[idx], y[idx].astype(np.int32), preset.learning_rate))
            done += 1


def _curves(runs: dict) -> dict:
    return {arm: {"mean": np.mean(c, axis=0).tolist(), "std": np.std(c, axis=0).tolist(), "runs": c}
            for arm, c in runs.items()}


def stage_convergence(run, preset: ConvergencePreset, sources, *, scale: str, data_dir, seed: int) -> dict:
    """Every arm x seed (resumable sub-runs), mean ± std curves, ``convergence.png`` and the summary;
    finishes ``run``."""
    from tfbdl.cli.deep_weight_prior.figures import convergence_figure
    from tfbdl.cli.deep_weight_prior.report import convergence_summary
    from tfbdl.io import RunDir
    from tfbdl.nn.fconv import fconv
    from tfbdl.progress import progress

    data, provenance = target_data(scale, data_dir, preset.n_test, seed)
    run.record_data(provenance)
    keep = seeded_subset(len(data["y_train"]), preset.n_train, derive_seed(seed, SEED_CONVERGENCE))
    data = {**data, "x_train": data["x_train"][keep], "y_train": data["y_train"][keep]}
    arms = sources.arms()
    runs: dict[str, list] = {arm: [] for arm in arms}
    model = steps = None
    with progress(len(arms) * preset.seeds, "dwp convergence nets") as bar:
        for s in range(preset.seeds):
            net_seed = derive_seed(seed, SEED_CONVERGENCE, s)  # the same for every arm: biases, dense, order
            for arm in arms:
                sub = RunDir.open(run.path, "nets", f"{arm}-seed{s}", {**run.config, "arm": arm, "net": s})
                if not sub.is_complete:
                    start = fconv(data["num_classes"], data["x_train"].shape[1:], widths=preset.widths, seed=net_seed)
                    initialise_kernels(start, arm, sources, net_seed)
                    if model is None:
                        model = fconv(data["num_classes"], data["x_train"].shape[1:], widths=preset.widths, seed=0)
                        steps = AdamSteps(cross_entropy(model), model.trainable_variables)
                    model.set_weights(start.get_weights())
                    result = train_convergence(model, steps, preset, data, net_seed)
                    sub.write_json("result.json", {**result, "seed": net_seed})
                    sub.finish()
                runs[arm].append(read_json(sub, "result.json")["test_accuracy"])
                bar.update(1)
    metrics = {"steps": eval_steps(preset), "curves": _curves(runs), "arms": list(arms),
               "n_train": int(len(data["y_train"])), "n_test": int(len(data["y_test"])), "sources": sources.where}
    if preset.vae_steps:
        metrics["vae"] = _vae_panel(run, preset, sources, arms, data, seed)
    run.write_metrics(metrics)
    convergence_figure(run, metrics, preset)
    run.finish(convergence_summary(preset, metrics, provenance))
    return metrics


def _vae_panel(run, preset: ConvergencePreset, sources, arms, data: dict, seed: int) -> dict:
    """The VAE-on-MNIST panel: every arm x seed a resumable sub-run ``vae/<arm>-seed<s>``; the held-out
    ELBO curves (mean ± std over seeds)."""
    from tfbdl.cli.deep_weight_prior.mnist_vae import conv_vae, elbo_loss, train_vae_convergence
    from tfbdl.io import RunDir
    from tfbdl.progress import progress

    x_train, x_test = ((data[k] > 0.5).astype(np.float32) for k in ("x_train", "x_test"))
    runs: dict[str, list] = {arm: [] for arm in arms}
    pair = steps = None
    with progress(len(arms) * preset.seeds, "dwp convergence VAEs") as bar:
        for s in range(preset.seeds):
            vae_seed = derive_seed(seed, SEED_CONVERGENCE, s, 1)
            for arm in arms:
                sub = RunDir.open(run.path, "vae", f"{arm}-seed{s}", {**run.config, "arm": arm, "vae": s})
                if not sub.is_complete:
                    start = conv_vae(preset.vae_widths, preset.vae_latent, vae_seed)
                    initialise_kernels(start[0], arm, sources, vae_seed)
                    if pair is None:
                        pair = conv_vae(preset.vae_widths, preset.vae_latent, 0)
                        steps = AdamSteps(elbo_loss(*pair), pair[0].trainable_variables + pair[1].trainable_variables)
                    for model, source in zip(pair, start):
                        model.set_weights(source.get_weights())
                    result = train_vae_convergence(*pair, steps, preset, x_train, x_test, vae_seed)
                    sub.write_json("result.json", {**result, "seed": vae_seed})
                    sub.finish()
                runs[arm].append(read_json(sub, "result.json")["test_elbo"])
                bar.update(1)
    steps_done = read_json(sub, "result.json")["steps"]
    return {"steps": steps_done, "curves": _curves(runs)}


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``dwp convergence`` at ``scale`` reads: the MNIST training and test images."""
    from tfbdl.cli.deep_weight_prior.presets import CONVERGENCE_PRESETS

    return target_data(scale, data_dir, CONVERGENCE_PRESETS[scale].n_test, seed)[1]
