"""The networks of ``tfbdl linearized`` and the reference's training loop.

Training is the reference's ``sgd_train``: one output logit ``z`` and the binary cross-entropy of
``sigmoid(z)``, SGD with momentum, the learning rate decayed linearly to 0 over the steps, no
weight decay; the test accuracy is measured after every epoch. The loss is computed on the two
logits ``[-z/2, z/2]`` with the softmax cross-entropy, which is the same function and whose argmax
is ``z > 0``, so :class:`tfbdl.train.loop.Trainer` reports the right accuracy.
"""

from __future__ import annotations

import functools

import numpy as np

from tfbdl.cli.linearized.presets import Net, Training, check_net

__all__ = ["accuracy_of", "build_net", "curve", "distance", "fit_binary", "logits", "net_at", "net_from_attrs",
           "train_both"]


def build_net(net: Net, input_shape, seed: int):
    """The one-logit network ``net`` for images of ``input_shape``, initialised by ``seed``."""
    check_net(net)
    if net.model == "lenet":
        from tfbdl.nn import ntk_lenet

        return ntk_lenet(1, input_shape, widths=net.widths, activation=net.activation, seed=seed)
    from tfbdl.nn import resnet18

    return resnet18(1, tuple(input_shape), widths=net.widths, seed=seed)


def net_at(net: Net, input_shape, weights):
    """``net`` built for ``input_shape`` holding ``weights`` (every variable, ``model.weights`` order)."""
    model = build_net(net, input_shape, seed=0)
    model.set_weights([np.asarray(w) for w in weights])
    return model


def net_from_attrs(attrs: dict) -> Net:
    """The :class:`Net` stored as a dict in a file's attributes."""
    stored = dict(attrs["net"])
    return Net(model=stored["model"], widths=tuple(stored["widths"]), activation=stored["activation"])


@functools.cache
def _binary_logits_class():
    import keras
    import tensorflow as tf

    class BinaryLogits(keras.Model):
        """``[-z/2, z/2]`` from a one-logit network ``z``: their softmax cross-entropy is the binary
        cross-entropy of ``sigmoid(z)`` and their argmax is ``z > 0`` (ties: class 0)."""

        def __init__(self, net, **kwargs):
            super().__init__(**kwargs)
            self.net = net
            self.built = True

        def call(self, x, training=None):
            z = self.net(x, training=training)
            return tf.concat([-0.5 * z, 0.5 * z], axis=-1)

    return BinaryLogits


def logits(model, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """The one-logit network's outputs ``[N]`` in inference mode (float64)."""
    return np.concatenate([np.asarray(model(x[i:i + batch], training=False), np.float64).reshape(-1)
                           for i in range(0, len(x), batch)])


def accuracy_of(z: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the predictions ``z > 0`` against 0/1 labels."""
    return float(np.mean((z > 0).astype(np.int64) == y))


def distance(model, weights0) -> float:
    """``||theta - theta0||_2`` over the trainable weights."""
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(v.numpy(), np.float64) - np.asarray(w0, np.float64)))
                             for v, w0 in zip(model.trainable_variables, weights0))))


# --------------------------------------------------------------------------- training


class _EpochEnd:
    """Trainer callback: test loss and accuracy after every epoch, and a tick of a progress bar."""

    def __init__(self, x, y, bar):
        self.x, self.y, self.bar = x, y, bar

    def on_epoch_end(self, trainer, epoch, logs):
        result = trainer.evaluate((self.x, self.y), batch_size=500)
        self.bar.update(1)
        return {"test_loss": result["loss"], "test_accuracy": result["accuracy"]}


def fit_binary(run, name: str, net, train, test, training: Training, *, seed: int, label: str) -> list[dict]:
    """Train the one-logit ``net`` (a network or a LinearizedModel) on ``train = (x, y)`` with the
    reference's loss and schedule, resumably in ``run`` (``checkpoints/<name>/``, ``<name>.csv``).

    Returns the metric rows of every epoch (with ``test_accuracy`` on ``test = (x, y)``).
    """
    import keras

    from tfbdl.progress import progress
    from tfbdl.train.loop import Trainer

    epochs, lr = training.epochs, training.lr
    trainer = Trainer(_binary_logits_class()(net),
                      lambda: keras.optimizers.SGD(learning_rate=lr, momentum=training.momentum))
    done = run.is_done(f"{name}/epoch-{epochs}")
    with progress(epochs, label, show=not done) as bar:
        return trainer.fit(train, epochs, run_dir=run, seed=seed, batch_size=training.batch_size,
                           lr_schedule=lambda t: lr * max(0.0, 1.0 - t / epochs), lr_per_step=True,
                           callbacks=[_EpochEnd(*test, bar)], name=name, metrics_file=f"{name}.csv", verbose=False)


def curve(rows: list[dict], init_accuracy: float, key: str = "test_accuracy") -> list[float]:
    """``[accuracy at initialisation, after epoch 1, ...]``."""
    return [float(init_accuracy)] + [float(r[key]) for r in rows]


def train_both(run, net, train, test, training: Training, *, seed: int, label: str) -> dict:
    """The network and its linearization, from ``net``'s current weights, on the same data with the
    same loop and optimizer settings. Returns final and per-epoch numbers of both."""
    from tfbdl.ntk.linearize import LinearizedModel

    weights0 = [v.numpy() for v in net.trainable_variables]
    lin = LinearizedModel(net)
    z_net, z_lin = logits(net, test[0]), logits(lin, test[0])
    init = {"max_abs_logit_difference": float(np.max(np.abs(z_net - z_lin))),
            "nonlinear_test_accuracy": accuracy_of(z_net, test[1]), "linear_test_accuracy": accuracy_of(z_lin, test[1])}
    out = {"init": init}
    for name, model in (("nonlinear", net), ("linear", lin)):
        rows = fit_binary(run, name, model, train, test, training, seed=seed, label=f"{label}: {name}")
        out[name] = {"test_accuracy": float(rows[-1]["test_accuracy"]),
                     "train_accuracy": float(rows[-1]["train_accuracy"]),
                     "test_curve": curve(rows, init[f"{name}_test_accuracy"]),
                     "train_curve": [float(r["train_accuracy"]) for r in rows],
                     "distance_to_init": lin.distance_to_init() if model is lin else distance(net, weights0)}
        if name == "nonlinear":
            out["trained_net"] = net
    return out
