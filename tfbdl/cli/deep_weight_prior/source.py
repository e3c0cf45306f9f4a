"""Stage 1, source networks: fconv networks trained with different seeds on the source data
(``train-net.py``: Adam decayed linearly to 0, an L2 penalty on the convolutions only), each a
resumable sub-run ``nets/net-<i>`` whose weights the kernel bank reads."""

from __future__ import annotations

import click
import numpy as np

from tfbdl.cli.deep_weight_prior.data import source_data
from tfbdl.cli.deep_weight_prior.presets import SEED_SOURCE, SourcePreset
from tfbdl.cli.deep_weight_prior.report import source_summary
from tfbdl.cli.deep_weight_prior.rundirs import read_json, save_weights
from tfbdl.seeding import derive_seed

__all__ = ["stage_source", "train_source_net"]


def _conv_l2_loss(model, l2: float):
    """Per-example cross-entropy plus ``l2 *`` the squared norm of conv1's and conv2's parameters (the
    reference penalises ``net.features`` only, not the classifier)."""
    import tensorflow as tf

    penalised = [v for name in ("conv1", "conv2") for v in model.get_layer(name).trainable_variables]

    def loss(labels, logits):
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int64),
                                                             logits=tf.cast(logits, tf.float32))
        if not l2:
            return nll
        return nll + l2 * tf.add_n([tf.reduce_sum(tf.square(v.value)) for v in penalised])

    return loss


def train_source_net(sub, preset: SourcePreset, data: dict, seed: int) -> dict:
    """Train one fconv in the sub-run ``sub`` (resumable), save its weights, return its test metrics."""
    import keras

    from tfbdl.metrics import classification_metrics
    from tfbdl.nn.fconv import fconv
    from tfbdl.train.loop import Trainer
    from tfbdl.train.schedules import linear_schedule

    keras.utils.set_random_seed(seed)
    model = fconv(data["num_classes"], data["x_train"].shape[1:], widths=preset.widths, seed=seed)
    trainer = Trainer(model, lambda: keras.optimizers.Adam(preset.learning_rate, epsilon=1e-8),
                      loss=_conv_l2_loss(model, preset.l2))
    history = trainer.fit((data["x_train"], data["y_train"]), preset.epochs, run_dir=sub, seed=seed,
                          lr_schedule=lambda e: linear_schedule(e, preset.learning_rate, preset.epochs),
                          batch_size=preset.batch_size, verbose=False)
    save_weights(model, sub.file("weights.h5"), {"widths": list(preset.widths), "num_classes": data["num_classes"],
                                                 "seed": seed})
    test = classification_metrics(trainer.predict_proba(data["x_test"], batch_size=1000).astype(np.float64),
                                  data["y_test"])
    return {"seed": seed, "test_accuracy": test["accuracy"], "test_nll": test["nll"],
            "train_loss": history[-1]["train_loss"], "train_accuracy": history[-1]["train_accuracy"]}


def stage_source(run, preset: SourcePreset, *, scale: str, data_dir, seed: int) -> dict:
    """Train ``preset.nets`` source networks (each a resumable sub-run ``nets/net-<i>``; finished
    ones are skipped), then write metrics and the summary and finish ``run``."""
    from tfbdl.io import RunDir
    from tfbdl.progress import progress

    data, provenance = source_data(preset, scale, data_dir, seed)
    run.record_data(provenance)
    results = []
    with progress(preset.nets, "dwp source nets") as bar:
        for i in range(preset.nets):
            sub = RunDir.open(run.path, "nets", f"net-{i:03d}", {**run.config, "net": i})
            if not sub.is_complete:
                result = train_source_net(sub, preset, data, derive_seed(seed, SEED_SOURCE, i))
                sub.write_json("result.json", result)
                sub.finish()
                click.echo(f"source net {i + 1}/{preset.nets}: test accuracy {result['test_accuracy']:.4f}", err=True)
            results.append({"net": i, **read_json(sub, "result.json")})
            bar.update(1)
    accuracies = [r["test_accuracy"] for r in results]
    metrics = {"nets": results, "test_accuracy_mean": float(np.mean(accuracies)),
               "test_accuracy_min": float(np.min(accuracies)), "test_accuracy_max": float(np.max(accuracies)),
               "n_train": int(data["y_train"].size), "n_test": int(data["y_test"].size)}
    run.write_metrics(metrics)
    run.finish(source_summary(preset, metrics, provenance))
    return metrics
