"""Training one feature-amounts variant (SGD + momentum, SGDR, OOM-safe micro-batching) in a run
directory, resumable from its checkpoint, and the variant's line of ``variants.csv``.

Each epoch's row (epoch, lr, train loss and accuracy, seconds, validation loss and accuracy,
micro-batch, OOM retries) is appended to ``architectures/<variant-id>.csv`` as the epoch ends.
"""

from __future__ import annotations

from tfbdl.cli.feature_amounts.presets import Preset

__all__ = ["RESULT_COLUMNS", "ValidationMetrics", "csv_name", "result_row", "train_variant"]

RESULT_COLUMNS = ("id", "depth", "mean", "scale", "skew", "widths", "parameters", "early_fraction", "centre",
                  "best_val_accuracy", "best_epoch", "train_accuracy_at_best", "final_val_accuracy",
                  "final_train_accuracy", "final_val_loss", "micro_batch", "seconds")


class ValidationMetrics:
    """Adds ``val_loss`` and ``val_accuracy`` (inference mode) to every epoch's row."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def on_epoch_end(self, trainer, epoch, logs):
        """The validation loss and accuracy after epoch ``epoch``."""
        result = trainer.evaluate((self.x, self.y), batch_size=500)
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}


def csv_name(variant_id: str) -> str:
    """The per-epoch CSV of a variant, relative to the run directory."""
    return f"architectures/{variant_id}.csv"


def train_variant(run, variant, preset: Preset, data, *, num_classes: int, seed: int, verbose: bool = True,
                  callbacks=()) -> dict:
    """Train one variant in ``run`` (resumable: checkpoints/<id>/, architectures/<id>.csv) and
    return its result row. ``data`` is ``(x_train, y_train, x_val, y_val)``, images ``[N, H, W, C]``."""
    import keras

    from tfbdl.nn.feature_amounts import build_variant
    from tfbdl.train.oom import AdaptiveMicroBatchTrainer
    from tfbdl.train.sgdr import make_sgdr

    x_train, y_train, x_val, y_val = data
    keras.utils.set_random_seed(seed)
    model = build_variant(variant, num_classes, x_train.shape[1:], batch_norm_epsilon=preset.batch_norm,
                          dropout=preset.dropout, init=preset.init, seed=seed)
    budget = None if preset.memory_budget_mb is None else int(preset.memory_budget_mb * 2 ** 20)
    trainer = AdaptiveMicroBatchTrainer(
        model, lambda: keras.optimizers.SGD(preset.lr, momentum=preset.momentum, nesterov=preset.nesterov),
        weight_decay=preset.weight_decay, micro_batch=preset.micro_batch, memory_budget=budget)
    schedule = make_sgdr(preset.lr, preset.wr_epochs, preset.wr_mul, preset.lr_min)
    history = trainer.fit((x_train, y_train), preset.epochs, run_dir=run, lr_schedule=schedule, lr_per_step=True,
                          callbacks=[ValidationMetrics(x_val, y_val), *callbacks], seed=seed,
                          batch_size=preset.batch_size, name=variant.id, metrics_file=csv_name(variant.id),
                          verbose=verbose)
    return result_row(variant, history, int(model.count_params()))


def result_row(variant, history: list[dict], params: int) -> dict:
    """One variant's line of ``variants.csv`` (the reference's BestVal, BestEpoch, LastValPrec, ...)."""
    best = max(range(len(history)), key=lambda i: history[i]["val_accuracy"])
    return {"id": variant.id, "depth": variant.depth, "mean": variant.mean, "scale": variant.scale,
            "skew": variant.skew, "widths": " ".join(map(str, variant.widths)), "parameters": params,
            "early_fraction": round(variant.early_fraction, 6), "centre": round(variant.centre, 6),
            "best_val_accuracy": history[best]["val_accuracy"], "best_epoch": history[best]["epoch"],
            "train_accuracy_at_best": history[best]["train_accuracy"],
            "final_val_accuracy": history[-1]["val_accuracy"], "final_train_accuracy": history[-1]["train_accuracy"],
            "final_val_loss": history[-1]["val_loss"], "micro_batch": history[-1]["micro_batch"],
            "seconds": round(sum(r["seconds"] for r in history), 3)}
