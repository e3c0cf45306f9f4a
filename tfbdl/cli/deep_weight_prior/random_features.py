"""Random feature extraction (the paper's Section 4.3): an fconv whose conv kernels are drawn once from
a prior and frozen, only the dense layer trained; test accuracy against the width scale ``k``.

As the release's ``train-net.py --rfe 1``: the optimiser gets ``net.classifier``'s parameters only, so
the convolutions' kernels *and* biases stay at their initialisation (biases PyTorch's default
``U(+-1/sqrt(fan_in))``, kernels per arm, :mod:`.kernel_sources`). With every conv frozen the features
are a fixed map of the image, so they are computed once per network and the dense layer is trained on
them (the same gradients as a full forward pass, far cheaper). Each network is a resumable sub-run
``nets/<arm>-k<k>-seed<s>``.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.deep_weight_prior.data import target_data
from tfbdl.cli.deep_weight_prior.kernel_sources import initialise_kernels
from tfbdl.cli.deep_weight_prior.presets import RFE_SCALES, SEED_RFE, RfePreset
from tfbdl.cli.deep_weight_prior.rundirs import read_json
from tfbdl.cli.deep_weight_prior.stepwise import DenseHeadAdam, accuracy, batches
from tfbdl.data.subsets import seeded_subset
from tfbdl.seeding import derive_seed

__all__ = ["resolve_data", "scale_folder", "scaled_widths", "stage_random_features", "summarise",
           "train_random_features"]


def scaled_widths(base, scale: str) -> tuple[int, int]:
    """The fconv widths at width scale ``scale`` (a key of :data:`RFE_SCALES`), at least 1 channel."""
    return tuple(max(1, int(round(RFE_SCALES[scale] * w))) for w in base)


def scale_folder(scale: str) -> str:
    """``"1/16"`` -> ``"1_16"`` (a folder name)."""
    return scale.replace("/", "_")


def _features(model, *images: np.ndarray, batch_size: int = 500) -> list[np.ndarray]:
    """The frozen feature map (flattened output of conv2's pooling) ``[n, d]`` (float64) of each
    ``images [n, 28, 28, 1]``."""
    import keras

    extractor = keras.Model(model.input, model.get_layer("flatten").output)
    return [np.concatenate([np.asarray(extractor(x[i:i + batch_size], training=False))
                            for i in range(0, len(x), batch_size)]).astype(np.float64) for x in images]


def train_random_features(model, preset: RfePreset, data: dict, seed: int) -> dict:
    """Train only ``model``'s dense layer (``logits``) on its frozen conv features of ``data["x_train"]``
    (Adam, learning rate decayed linearly to 0 over the epochs); write the trained layer back into
    ``model``. Returns test/train accuracy and the last epoch's mean loss."""
    from tfbdl.train.schedules import linear_schedule

    f_train, f_test = _features(model, data["x_train"], data["x_test"])
    dense = model.get_layer("logits")
    head = DenseHeadAdam(np.asarray(dense.kernel), np.asarray(dense.bias))
    rng = np.random.default_rng(seed)
    y = data["y_train"].astype(np.int64)
    losses = []
    for epoch in range(preset.epochs):
        lr = linear_schedule(epoch, preset.learning_rate, preset.epochs)
        losses = [head.step(f_train[idx], y[idx], lr) for idx in batches(len(y), preset.batch_size, rng)]
    dense.kernel.assign(head.params[0].astype(np.float32)), dense.bias.assign(head.params[1].astype(np.float32))
    return {"test_accuracy": accuracy(head, f_test, data["y_test"]), "train_accuracy": accuracy(head, f_train, y),
            "train_loss": float(np.mean(losses)) if losses else float("nan"), "feature_dim": int(f_train.shape[1])}


def summarise(runs: dict, arms, scales) -> list[dict]:
    """One row per arm and scale: ``accuracies`` over seeds, their mean and std (ddof 1; None for one)."""
    rows = []
    for arm in arms:
        for scale in scales:
            acc = [float(a) for a in runs[arm][scale]]
            rows.append({"arm": arm, "scale": scale, "accuracies": acc, "accuracy_mean": float(np.mean(acc)),
                         "accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else None})
    return rows


def stage_random_features(run, preset: RfePreset, sources, *, scale: str, data_dir, seed: int) -> dict:
    """Every arm x width scale x seed (resumable sub-runs), the table, ``random_features.png`` and the
    summary; finishes ``run``."""
    from tfbdl.cli.deep_weight_prior.figures import rfe_figure
    from tfbdl.cli.deep_weight_prior.report import rfe_summary
    from tfbdl.io import RunDir
    from tfbdl.nn.fconv import fconv
    from tfbdl.progress import progress

    data, provenance = target_data(scale, data_dir, preset.n_test, seed)
    run.record_data(provenance)
    keep = seeded_subset(len(data["y_train"]), preset.n_train, derive_seed(seed, SEED_RFE))
    data = {**data, "x_train": data["x_train"][keep], "y_train": data["y_train"][keep]}
    arms = sources.arms()
    runs = {arm: {k: [] for k in preset.scales} for arm in arms}
    with progress(len(arms) * len(preset.scales) * preset.seeds, "dwp random features") as bar:
        for k in preset.scales:
            widths = scaled_widths(preset.base_widths, k)
            for s in range(preset.seeds):
                net_seed = derive_seed(seed, SEED_RFE, s)  # the same for every arm: same biases, dense init, order
                for arm in arms:
                    sub = RunDir.open(run.path, "nets", f"{arm}-k{scale_folder(k)}-seed{s}",
                                      {**run.config, "arm": arm, "width_scale": k, "net": s})
                    if not sub.is_complete:
                        model = fconv(data["num_classes"], data["x_train"].shape[1:], widths=widths, seed=net_seed)
                        initialise_kernels(model, arm, sources, net_seed)
                        result = train_random_features(model, preset, data, net_seed)
                        sub.write_json("result.json", {**result, "widths": list(widths), "seed": net_seed})
                        sub.finish()
                    runs[arm][k].append(read_json(sub, "result.json")["test_accuracy"])
                    bar.update(1)
    metrics = {"table": summarise(runs, arms, preset.scales), "arms": list(arms),
               "widths": {k: list(scaled_widths(preset.base_widths, k)) for k in preset.scales},
               "n_train": int(len(data["y_train"])), "n_test": int(len(data["y_test"])), "sources": sources.where}
    run.write_metrics(metrics)
    rfe_figure(run, metrics, preset)
    run.finish(rfe_summary(preset, metrics, provenance))
    return metrics


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``dwp random-features`` at ``scale`` reads: the MNIST training and test images."""
    from tfbdl.cli.deep_weight_prior.presets import RFE_PRESETS

    return target_data(scale, data_dir, RFE_PRESETS[scale].n_test, seed)[1]
