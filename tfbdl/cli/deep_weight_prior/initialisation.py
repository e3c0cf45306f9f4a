"""Stage 5, DWP initialisation: ordinary fconv networks whose convolutions start from kernel-VAE
decoder means against Xavier initialisation, with the test accuracy after every epoch; each
network a resumable sub-run ``nets/<init>-seed<s>``."""

from __future__ import annotations

import json

import numpy as np

from tfbdl.cli.deep_weight_prior.data import target_data
from tfbdl.cli.deep_weight_prior.figures import init_figure
from tfbdl.cli.deep_weight_prior.presets import SEED_INIT, InitPreset
from tfbdl.cli.deep_weight_prior.report import init_summary
from tfbdl.cli.deep_weight_prior.rundirs import load_vaes, read_json
from tfbdl.data.subsets import stratified_splits
from tfbdl.seeding import derive_seed

__all__ = ["dwp_initialise", "stage_init", "train_init_net"]


class _TestAccuracy:
    """Trainer callback: test accuracy after every epoch."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> dict:
        return {"test_accuracy": trainer.evaluate((self.x, self.y), batch_size=1000)["accuracy"]}


def dwp_initialise(model, vaes, seed: int) -> None:
    """Set conv1's and conv2's kernels to kernel-VAE decoder means at ``z ~ N(0, I)`` (the reference's
    ``vae`` initialisation); biases and the dense layer keep their initialisation."""
    from tfbdl.dwp.kernel_bank import kernel_from_slices

    for i, name in enumerate(("conv1", "conv2")):
        layer = model.get_layer(name)
        k, _, cin, cout = layer.kernel.shape
        slices = vaes[int(k)].sample_kernels(int(cin * cout), derive_seed(seed, i), mean=True)
        layer.kernel.assign(kernel_from_slices(slices, int(cin), int(cout)))


def train_init_net(sub, preset: InitPreset, init: str, data: dict, train_index: np.ndarray, vaes,
                   seed: int) -> dict:
    """One ordinary fconv, Xavier- or DWP-initialised, trained on ``train_index`` (resumable in
    ``sub``); its test accuracy before training and after every epoch."""
    import keras

    from tfbdl.nn.fconv import fconv
    from tfbdl.train.loop import Trainer

    keras.utils.set_random_seed(seed)
    model = fconv(data["num_classes"], data["x_train"].shape[1:], widths=preset.widths, seed=seed)
    if init == "dwp":
        dwp_initialise(model, vaes, seed)
    trainer = Trainer(model, lambda: keras.optimizers.Adam(preset.learning_rate))
    if not sub.is_done("initial"):
        sub.mark_done("initial", trainer.evaluate((data["x_test"], data["y_test"]), batch_size=1000)["accuracy"])
    initial = json.loads((sub.path / "progress.json").read_text())["initial"]
    x, y = data["x_train"][train_index], data["y_train"][train_index]
    history = trainer.fit((x, y), preset.epochs, run_dir=sub, seed=seed, batch_size=preset.batch_size,
                          lr_schedule=preset.learning_rate,
                          callbacks=[_TestAccuracy(data["x_test"], data["y_test"])], verbose=False)
    return {"test_accuracy": [initial] + [row["test_accuracy"] for row in history],
            "train_loss": [row["train_loss"] for row in history], "seed": seed}


def stage_init(run, preset: InitPreset, vae_run, *, scale: str, data_dir, seed: int) -> dict:
    """Xavier vs DWP initialisation, ``preset.seeds`` networks each (resumable sub-runs
    ``nets/<init>-seed<s>``); mean learning curves, ``dwp_init_curves.png``; finishes ``run``."""
    from tfbdl.io import RunDir
    from tfbdl.progress import progress

    data, provenance = target_data(scale, data_dir, preset.n_test, seed)
    run.record_data(provenance)
    (train_index,) = stratified_splits(data["y_train"], preset.n_train, 1, derive_seed(seed, SEED_INIT))
    vaes = load_vaes(vae_run)
    curves: dict[str, list] = {"xavier": [], "dwp": []}
    with progress(2 * preset.seeds, "dwp-init nets") as bar:
        for s in range(preset.seeds):
            for init in curves:
                sub = RunDir.open(run.path, "nets", f"{init}-seed{s}", {**run.config, "init": init, "net": s})
                if not sub.is_complete:
                    # The same seed for both initialisations: same data order, same dense layer and biases.
                    result = train_init_net(sub, preset, init, data, train_index, vaes,
                                            derive_seed(seed, SEED_INIT, s))
                    sub.write_json("result.json", result)
                    sub.finish()
                curves[init].append(read_json(sub, "result.json")["test_accuracy"])
                bar.update(1)
    summary = {init: {"mean": np.mean(c, axis=0).tolist(), "std": np.std(c, axis=0).tolist(), "runs": c}
               for init, c in curves.items()}
    metrics = {"curves": summary, "n_train": preset.n_train, "n_test": int(data["y_test"].size),
               "epochs": preset.epochs, "seeds": preset.seeds}
    run.write_metrics(metrics)
    init_figure(run, metrics, preset)
    run.finish(init_summary(preset, metrics, provenance))
    return metrics
