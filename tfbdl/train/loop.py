"""A resumable training loop for Keras 3 models: a custom ``tf.function`` step, not ``model.fit``.

:class:`Trainer` runs SGD-type training with a ``tf.GradientTape`` step so that posteriors
(SWA/SWAG moment collection, SGLD noise, ensembles) can hook into it through callbacks, under
any ``tf.distribute`` strategy (see :mod:`tfbdl.train.strategy`).

Objective. For a batch ``B`` of ``b`` examples the step minimises::

    J(w) = (1/b) * sum_{i in B} loss(y_i, f(x_i; w))  +  weight_decay * ||w||^2

with ``||w||^2`` the sum of squares of every trainable variable (kernels, biases and
normalisation scales alike, as torch's ``weight_decay`` and the understandingbdl
``--prior_var`` regulariser). Over a training set of ``N`` examples, ``N * J`` is, up to a
constant, the negative log posterior ``-log p(D | w) - log p(w)`` with the Gaussian prior
``p(w) = N(0, s^2 I)`` where::

    1 / (2 s^2) = N * weight_decay,   i.e.   s^2 = 1 / (2 * weight_decay * N)

(the regulariser ``||w||^2 / (2 * prior_var * N)`` of ``experiments/train/run_swag.py`` in
izmailovpavel/understandingbdl is ``weight_decay = 1 / (2 * prior_var * N)``). Its gradient
is ``2 * weight_decay * w``, so torch SGD's ``weight_decay=lam`` (which adds ``lam * w`` to
the gradient) is ``weight_decay = lam / 2`` here. :func:`prior_variance` and
:func:`weight_decay_for_prior` convert. This is an L2 term in the loss, not the decoupled
``weight_decay`` argument of Keras optimizers (leave that one at its default, None).

Micro-batches. With ``micro_batches=m`` each batch is cut into ``m`` consecutive slices
(sizes differing by at most one); the gradient of every slice's *summed* loss, divided by
the whole batch size, is accumulated and one optimizer step is taken with the total, which
is the full batch's gradient up to float rounding while holding only ``b / m`` examples'
activations at once. Layers whose output depends on the batch (BatchNormalization) see
each micro-batch separately and update their moving statistics ``m`` times per step.

Resuming. With a :class:`~tfbdl.io.RunDir`, every finished epoch writes atomically
``checkpoints/<name>/epoch-NNNNN.npz`` (every model variable, including non-trainable ones
and the states of Keras seed generators such as Dropout's, every optimizer variable, and the
callbacks' array state), then ``checkpoints/<name>/checkpoint.json`` (epoch counter, global
step, seed, the metric rows so far, the callbacks' JSON state), then appends the epoch's row
to ``metrics.csv`` and marks ``<name>/epoch-<k>`` done in ``progress.json``. A rerun of
:meth:`Trainer.fit` with the same run dir, seed and data restores the last complete epoch
and continues; data order is a pure function of ``(seed, epoch)``, so on a CPU the resumed
run ends with bitwise the same weights as an uninterrupted one. A crash (an exception, a
kill) during an epoch leaves the previous epoch's checkpoint untouched. In a multi-worker
run only the chief writes (checkpoints, ``metrics.csv``, ``progress.json``); every worker reads
the checkpoint on resume, so the run dir must be one folder that all of them see (a shared
filesystem), and :meth:`Trainer.fit` raises RunDirectoryError on every worker when they would
start from different epochs. Every worker still collects the state each epoch (reading a
distributed variable can be a collective operation), the chief alone saves it. A killed worker
stops the others at their next collective step: they wait until TensorFlow notices its missing
heartbeats (seconds), then fail; rerun every worker with the same command to resume.

Epochs are counted from 0 in the API (``lr_schedule(epoch)``, ``data(epoch)``,
``on_epoch_end(trainer, epoch, logs)`` get the index of the epoch being run or just run);
the ``epoch`` column of ``metrics.csv`` is the number of finished epochs (index + 1).
"""

from __future__ import annotations

import math
import pathlib
import re
import time
import warnings
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfbdl.errors import InvalidOptionError, RunDirectoryError, ShapeError
from tfbdl.io import RunDir, atomic_path
from tfbdl.progress import progress
from tfbdl.seeding import derive_rng, derive_seed
from tfbdl.train.strategy import gather_from_workers, get_strategy, is_chief, is_default_strategy, is_multi_worker
from tfbdl.validate import integer, number

__all__ = [
    "Callback",
    "Trainer",
    "epoch_seed",
]

def _loss_name(loss) -> str:
    """A loss callable's name for the checkpoint record (no memory address, so reruns agree)."""
    return getattr(loss, "__qualname__", None) or type(loss).__qualname__


_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy")
_BASE_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "seconds")
_CKPT_FORMAT = 1
_EPOCH_STREAM = 0x7EA1  # stream key of epoch_seed


# --------------------------------------------------------------------------- helpers


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for epoch ``epoch`` of a run seeded ``seed`` (numpy SeedSequence).

    Use it in data factories so that each epoch's order depends on ``(seed, epoch)`` only,
    e.g. ``lambda e: make_dataset(x, y, 128, shuffle=True, seed=epoch_seed(seed, e))``.
    """
    seed, epoch = integer(seed, "seed", 0), integer(epoch, "epoch", 0)
    return derive_seed(seed, epoch, _EPOCH_STREAM, bits=32)


class Callback:
    """Base class (optional: any object with these methods works) for training hooks.

    - ``on_step_end(trainer, step)``: after every optimizer step (``step`` counts steps from
      1 over the whole run); keep it cheap, it runs in Python between compiled steps.
    - ``on_epoch_end(trainer, epoch, logs) -> dict | None``: after epoch index ``epoch``
      (0-based) with that epoch's metric row; returned items are added to the row (return
      the same keys every epoch, None for "not measured").
    - ``state() -> dict`` and ``load_state(dict)``: the callback's own state, saved with each
      epoch checkpoint and given back on resume. Values are numpy arrays (or tensors), stored
      exactly in the checkpoint's ``.npz``, or JSON values. ``state_key`` (default: the class
      name) names the state in the checkpoint.
    """

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict) -> dict | None:
        return None


def _is_integer_dtype(dtype) -> bool:
    return tf.as_dtype(dtype).is_integer


# --------------------------------------------------------------------------- checkpoints


class _Checkpoints:
    """The checkpoint folder ``checkpoints/<name>/`` of a run dir."""

    def __init__(self, run_dir: RunDir, name: str, keep: int | None, write: bool):
        self.run_dir = run_dir
        self.folder = f"checkpoints/{name}"
        self.keep = keep
        self.write = write

    @property
    def json_path(self) -> pathlib.Path:
        return self.run_dir.path / self.folder / "checkpoint.json"

    def load(self) -> tuple[dict, dict[str, np.ndarray]] | None:
        import json

        path = self.json_path
        if not path.exists():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            file = self.run_dir.path / self.folder / meta["file"]
            with np.load(file, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunDirectoryError(
                f"cannot read the checkpoint {path} ({e}); rerun with --no-resume to start over"
            ) from e
        if meta.get("format") != _CKPT_FORMAT:
            raise RunDirectoryError(
                f"{path} has checkpoint format {meta.get('format')!r}, this tfbdl writes "
                f"{_CKPT_FORMAT}; rerun with --no-resume to start over"
            )
        return meta, arrays

    def save(self, epochs_done: int, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        if not self.write:
            return
        name = f"epoch-{epochs_done:05d}.npz"
        path = self.run_dir.file(f"{self.folder}/{name}")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
        self.run_dir.write_json(f"{self.folder}/checkpoint.json", {**meta, "file": name})
        self._prune(name)

    def _prune(self, current: str) -> None:
        if self.keep is None:
            return
        folder = self.run_dir.path / self.folder
        found = sorted(p.name for p in folder.glob("epoch-*.npz") if re.fullmatch(r"epoch-\d+\.npz", p.name))
        for old in [n for n in found if n != current][: max(len(found) - self.keep, 0)]:
            (folder / old).unlink(missing_ok=True)


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Train a Keras 3 model with a custom GradientTape step; see the module docstring.

    ``model`` returns logits. ``optimizer_factory()`` returns a new Keras optimizer (it is
    called inside the strategy's scope). ``loss`` is ``"sparse_categorical_crossentropy"``
    (integer labels, from logits), ``"categorical_crossentropy"`` (one-hot or soft labels,
    from logits) or a callable ``loss(y, logits) -> per-example losses [b]``.
    ``weight_decay`` adds ``weight_decay * ||w||^2`` to the loss (a Gaussian prior of variance
    ``1 / (2 weight_decay N)``). ``micro_batches`` splits every batch for gradient
    accumulation. ``strategy`` is a ``tf.distribute.Strategy``, a name for
    :func:`~tfbdl.train.strategy.get_strategy`, or None for the current one; the model must be
    created inside ``strategy.scope()`` unless it is the default strategy (a model that is not
    built yet is built inside the scope on the first batch).

    Attributes for callbacks: ``model``, ``optimizer``, ``strategy``, ``epoch`` (epochs
    finished), ``global_step`` (optimizer steps taken), ``run_dir``.
    """

    def __init__(self, model, optimizer_factory: Callable[[], Any],
                 loss: str | Callable = "sparse_categorical_crossentropy", *,
                 weight_decay: float = 0.0, micro_batches: int = 1, strategy=None):
        import keras

        if not isinstance(model, keras.Model):
            raise InvalidOptionError(f"model must be a keras.Model, got {type(model).__name__}")
        if not callable(optimizer_factory) or isinstance(optimizer_factory, keras.optimizers.Optimizer):
            raise InvalidOptionError(
                "optimizer_factory must be a function returning a new optimizer, e.g. "
                "lambda: keras.optimizers.SGD(0.1, momentum=0.9)"
            )
        if isinstance(loss, str):
            if loss not in _LOSSES:
                raise InvalidOptionError(
                    f"unknown loss {loss!r}; use one of {', '.join(_LOSSES)} or a callable"
                )
        elif not callable(loss):
            raise InvalidOptionError(f"loss must be a name or a callable, got {loss!r}")
        self.model = model
        self.loss = loss
        self.weight_decay = number(weight_decay, "weight_decay", nonnegative=True)
        self.micro_batches = integer(micro_batches, "micro_batches", 1)
        if strategy is None:
            strategy = tf.distribute.get_strategy()
        elif isinstance(strategy, str):
            strategy = get_strategy(strategy)
        elif not isinstance(strategy, tf.distribute.Strategy):
            raise InvalidOptionError(f"strategy must be a tf.distribute.Strategy or a name, got {strategy!r}")
        self.strategy = strategy
        self._optimizer_factory = optimizer_factory
        self.optimizer = None
        self.epoch = 0
        self.global_step = 0
        self.run_dir: RunDir | None = None
        self._train_fn = None
        self._eval_fn = None
        self._predict_fn = None
        self._has_accuracy = True
        self._history: list[dict] = []

    # ------------------------------------------------------------------ losses

    def _per_example_loss(self, y, logits):
        if self.loss == "sparse_categorical_crossentropy":
            if not _is_integer_dtype(y.dtype):
                raise InvalidOptionError(
                    f"sparse_categorical_crossentropy needs integer class labels, got {y.dtype.name}; "
                    "cast the labels to int, or use loss='categorical_crossentropy' for one-hot labels"
                )
            if logits.dtype in (tf.float16, tf.bfloat16):
                logits = tf.cast(logits, tf.float32)
            labels = tf.reshape(y, tf.shape(logits)[:-1])
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        if self.loss == "categorical_crossentropy":
            if logits.dtype in (tf.float16, tf.bfloat16):
                logits = tf.cast(logits, tf.float32)
            return tf.nn.softmax_cross_entropy_with_logits(labels=tf.cast(y, logits.dtype), logits=logits)
        out = tf.convert_to_tensor(self.loss(y, logits))
        if out.shape.rank == 0:
            raise InvalidOptionError("a loss callable must return per-example losses [batch], not a scalar")
        return out

    def _correct(self, y, logits):
        """Number of correct argmax predictions in the batch (float64); 0 where undefined."""
        if logits.shape.rank is not None and logits.shape.rank >= 2:
            pred = tf.argmax(logits, axis=-1)
            if _is_integer_dtype(y.dtype):
                labels = tf.cast(tf.reshape(y, tf.shape(pred)), tf.int64)
                return tf.reduce_sum(tf.cast(tf.equal(pred, labels), tf.float64))
            if y.shape.rank == logits.shape.rank:
                return tf.reduce_sum(tf.cast(tf.equal(pred, tf.argmax(y, axis=-1)), tf.float64))
        self._has_accuracy = False
        return tf.zeros([], tf.float64)

    def weight_penalty(self) -> float:
        """``weight_decay * ||w||^2`` at the current weights (float64)."""
        total = sum(float(np.sum(np.square(np.asarray(v.numpy(), np.float64))))
                    for v in self.model.trainable_variables)
        return self.weight_decay * total

    def objective(self, data, batch_size: int | None = None) -> float:
        """The training objective ``mean loss + weight_decay * ||w||^2`` on ``data`` (inference
        mode): :meth:`evaluate`'s loss plus :meth:`weight_penalty`."""
        return self.evaluate(data, batch_size=batch_size)["loss"] + self.weight_penalty()

    # ------------------------------------------------------------------ setup

    def _ensure_built(self, sample_x) -> None:
        if not self.model.built or not self.model.variables:
            with self.strategy.scope():
                self.model(sample_x, training=False)
        if not is_default_strategy(self.strategy):
            bad = [v.path for v in self.model.variables
                   if not self.strategy.extended.variable_created_in_scope(v.value)]
            if bad:
                raise InvalidOptionError(
                    f"the model's variables {bad[:3]} were created outside the strategy's scope; "
                    "create the model inside `with strategy.scope():` (or pass trainer.strategy)"
                )

    def _ensure_optimizer(self) -> None:
        if self.optimizer is not None:
            return
        import keras

        with self.strategy.scope():
            opt = self._optimizer_factory()
            if not isinstance(opt, keras.optimizers.Optimizer):
                raise InvalidOptionError(
                    f"optimizer_factory returned {type(opt).__name__}, not a keras optimizer"
                )
            opt.build(self.model.trainable_variables)
        self.optimizer = opt

    def _make_train_fn(self):
        model, opt, strategy = self.model, self.optimizer, self.strategy
        m, wd = self.micro_batches, self.weight_decay
        replicas = strategy.num_replicas_in_sync
        sum_op = tf.distribute.ReduceOp.SUM

        def chunk(x, y, n_global, tvars):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                losses = self._per_example_loss(y, logits)
                loss_sum = tf.reduce_sum(losses)
                scaled = loss_sum / tf.cast(n_global, loss_sum.dtype)
            grads = tape.gradient(scaled, tvars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = [tf.convert_to_tensor(g) for g in grads]
            return grads, tf.cast(loss_sum, tf.float64), self._correct(y, logits)

        def replica_step(x, y):
            tvars = model.trainable_variables
            n_local = tf.shape(tf.nest.flatten(y)[0])[0]
            ctx = tf.distribute.get_replica_context()
            n_global = ctx.all_reduce(sum_op, tf.cast(n_local, tf.float32))
            if m == 1:
                grads, loss_sum, correct = chunk(x, y, n_global, tvars)
            else:
                grads = [tf.zeros(v.shape, v.dtype) for v in tvars]
                loss_sum = tf.zeros([], tf.float64)
                correct = tf.zeros([], tf.float64)
                for i in tf.range(m):
                    start = (i * n_local) // m
                    end = ((i + 1) * n_local) // m
                    if end > start:
                        xs = tf.nest.map_structure(lambda t: t[start:end], x)
                        ys = tf.nest.map_structure(lambda t: t[start:end], y)
                        g, ls, c = chunk(xs, ys, n_global, tvars)
                        grads = [a + b for a, b in zip(grads, g)]
                        loss_sum += ls
                        correct += c
            if wd:
                grads = [g + tf.cast(2.0 * wd / replicas, g.dtype) * v.value for g, v in zip(grads, tvars)]
            opt.apply_gradients(zip(grads, tvars))
            return loss_sum, correct, tf.cast(n_local, tf.float64)

        @tf.function(reduce_retracing=True)
        def train_step(x, y):
            out = strategy.run(replica_step, args=(x, y))
            return [strategy.reduce(sum_op, v, axis=None) for v in out]

        return train_step

    # ------------------------------------------------------------------ data

    @staticmethod
    def _check_arrays(data) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise InvalidOptionError(
                "pass the data as a pair (x, y) of arrays or a function epoch -> dataset"
            )
        x, y = (np.asarray(a) for a in data)
        if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
            raise ShapeError(f"x {x.shape} and y {y.shape} must hold the same number of examples (axis 0)")
        if x.shape[0] == 0:
            raise ShapeError("the training arrays are empty; pass at least one example")
        return x, y

    def _array_dataset(self, x, y, batch_size, epoch, seed, shuffle):
        if shuffle:
            rng = derive_rng(seed, epoch)
            order = rng.permutation(x.shape[0])
            x, y = x[order], y[order]
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    def _distribute(self, ds):
        if is_default_strategy(self.strategy):
            return ds
        if not isinstance(ds, tf.data.Dataset):
            raise InvalidOptionError(
                "with a distribution strategy the data factory must return a tf.data.Dataset"
            )
        return self.strategy.experimental_distribute_dataset(ds)

    # ------------------------------------------------------------------ state

    def _stateful_callbacks(self, callbacks) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for cb in callbacks:
            if not hasattr(cb, "state"):
                continue
            base = str(getattr(cb, "state_key", None) or type(cb).__name__)
            key, k = base, 1
            while key in keys:
                k += 1
                key = f"{base}#{k}"
            keys[key] = cb
        return keys

    def _collect_state(self, callbacks) -> tuple[dict, dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        for i, v in enumerate(self.model.variables):
            arrays[f"model_{i:05d}"] = np.asarray(v.numpy())
        for i, v in enumerate(self.optimizer.variables):
            arrays[f"optimizer_{i:05d}"] = np.asarray(v.numpy())
        cb_json: dict[str, dict] = {}
        for j, (key, cb) in enumerate(self._stateful_callbacks(callbacks).items()):
            state = cb.state()
            if not isinstance(state, dict):
                raise InvalidOptionError(
                    f"callback {key}.state() must return a dict, got {type(state).__name__}"
                )
            plain, names = {}, []
            for name, value in state.items():
                if isinstance(value, np.ndarray) or hasattr(value, "numpy"):
                    arrays[f"callback_{j:03d}_{len(names):04d}"] = np.asarray(
                        value.numpy() if hasattr(value, "numpy") else value)
                    names.append(str(name))
                else:
                    plain[str(name)] = value
            cb_json[key] = {"index": j, "json": plain, "arrays": names}
        meta = {
            "model_variables": [[v.path, list(v.shape), str(v.dtype)] for v in self.model.variables],
            "optimizer_variables": [[v.path, list(v.shape), str(v.dtype)] for v in self.optimizer.variables],
            "callbacks": cb_json,
        }
        return meta, arrays

    def _restore(self, meta: dict, arrays: dict[str, np.ndarray], callbacks, where) -> None:
        for kind, variables in (("model", self.model.variables), ("optimizer", self.optimizer.variables)):
            stored = meta.get(f"{kind}_variables", [])
            if len(stored) != len(variables):
                raise RunDirectoryError(
                    f"{where} holds {len(stored)} {kind} variables but this {kind} has {len(variables)}; "
                    "resume with the same model and optimizer, or rerun with --no-resume"
                )
            for i, v in enumerate(variables):
                value = arrays[f"{kind}_{i:05d}"]
                if tuple(value.shape) != tuple(v.shape) or np.dtype(value.dtype) != np.dtype(v.dtype):
                    raise RunDirectoryError(
                        f"{where}: {kind} variable {i} ({v.path}) is {tuple(v.shape)} {v.dtype} here but "
                        f"{value.shape} {value.dtype} in the checkpoint; resume with the same model "
                        "and optimizer, or rerun with --no-resume"
                    )
        for kind, variables in (("model", self.model.variables), ("optimizer", self.optimizer.variables)):
            for i, v in enumerate(variables):
                v.assign(arrays[f"{kind}_{i:05d}"])
        stored_cb = meta.get("callbacks", {})
        for key, cb in self._stateful_callbacks(callbacks).items():
            if not hasattr(cb, "load_state"):
                continue
            entry = stored_cb.get(key)
            if entry is None:
                warnings.warn(f"{where} holds no state for callback {key}; it starts fresh", stacklevel=3)
                continue
            state = dict(entry["json"])
            for k, name in enumerate(entry["arrays"]):
                state[name] = arrays[f"callback_{entry['index']:03d}_{k:04d}"]
            cb.load_state(state)

    def _sync_metrics(self, history: list[dict], metrics_file: str, name: str) -> None:
        """Make the CSV log hold exactly the rows of ``history`` (the checkpoint's) and mark every
        epoch of it done: a kill between the checkpoint and these records loses neither."""
        run_dir = self.run_dir
        rows = run_dir.read_metrics_rows(metrics_file)
        logged = [r.get("epoch") for r in rows]
        wanted = [r["epoch"] for r in history]
        if logged == wanted:
            missing = []
        elif logged == wanted[: len(logged)]:
            missing = history[len(logged):]
        else:  # rows past the checkpoint, or out of order: rebuild from the checkpoint
            run_dir.file(metrics_file).unlink(missing_ok=True)
            missing = history
        for row in missing:
            run_dir.append_metrics_row(row, metrics_file)
        for row in history:
            key = f"{name}/epoch-{row['epoch']}"
            if not run_dir.is_done(key):
                run_dir.mark_done(key, row)

    # ------------------------------------------------------------------ fit

    def fit(self, data, epochs: int, run_dir: RunDir | None = None,
            lr_schedule: Callable[[float], float] | float | None = None,
            callbacks: Sequence = (), seed: int | None = None, *,
            batch_size: int | None = None, shuffle: bool = True,
            steps_per_epoch: int | None = None, lr_per_step: bool = False,
            name: str = "train", metrics_file: str = "metrics.csv",
            keep_checkpoints: int | None = 1, verbose: bool = True) -> list[dict]:
        """Train until ``epochs`` epochs are finished in total; return every epoch's metric row.

        ``data`` is a function ``epoch -> dataset`` (a ``tf.data.Dataset`` of ``(x, y)``
        batches, or for the default strategy any iterable of them) whose order depends on the
        epoch and a seed only (see :func:`epoch_seed`), or a pair of arrays ``(x, y)`` that is
        batched by ``batch_size`` in an order drawn from ``(seed, epoch)`` (``shuffle=False``
        keeps the array order). ``lr_schedule(epoch)`` gives the learning rate of each epoch
        (``epoch + step / steps`` per step with ``lr_per_step``; a number is a constant; None
        keeps the optimizer's own). ``steps_per_epoch`` truncates each epoch's dataset
        (required for an infinite one).

        With ``run_dir``: each finished epoch is checkpointed under ``checkpoints/<name>/``
        (the last ``keep_checkpoints`` kept; None keeps all) and logged to ``metrics_file``;
        a rerun resumes after the last finished epoch and skips the done ones. Without it,
        training continues from this trainer's own ``epoch``.
        """
        epochs = integer(epochs, "epochs", 0)
        callbacks = list(callbacks)
        if seed is not None:
            seed = integer(seed, "seed", 0)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            raise InvalidOptionError(f"name {name!r} must be letters, digits, '_', '-' or '.'")
        if keep_checkpoints is not None:
            keep_checkpoints = integer(keep_checkpoints, "keep_checkpoints", 1)
        if steps_per_epoch is not None:
            steps_per_epoch = integer(steps_per_epoch, "steps_per_epoch", 1)
        if lr_schedule is not None and not callable(lr_schedule):
            lr_value = number(lr_schedule, "lr_schedule", positive=True)
            lr_schedule = lambda epoch: lr_value  # noqa: E731

        if callable(data):
            factory = data
            sample = None
        elif isinstance(data, tf.data.Dataset):
            raise InvalidOptionError(
                "pass a function epoch -> dataset (or arrays (x, y)), not a dataset: the data order "
                "of every epoch must be reproducible for resuming"
            )
        else:
            x, y = self._check_arrays(data)
            if batch_size is None:
                raise InvalidOptionError("training on arrays needs batch_size")
            batch_size = integer(batch_size, "batch_size", 1)
            if shuffle and seed is None:
                raise InvalidOptionError(
                    "shuffling the arrays needs an explicit seed so runs are reproducible; pass seed=<int>"
                )
            factory = lambda epoch: self._array_dataset(x, y, batch_size, epoch, seed, shuffle)  # noqa: E731
            sample = x[:1]

        self.run_dir = run_dir
        ckpt = None
        loaded = None
        if run_dir is not None:
            ckpt = _Checkpoints(run_dir, name, keep_checkpoints, write=is_chief(self.strategy))
            loaded = ckpt.load()
        start = self.epoch
        history: list[dict] = list(self._history)[:start]
        if loaded is not None:
            meta, _ = loaded
            if meta.get("seed") != seed:
                raise RunDirectoryError(
                    f"{ckpt.json_path} was written with seed {meta.get('seed')!r}, not {seed!r}; "
                    "resume with the same seed or rerun with --no-resume"
                )
            start = int(meta["epoch"])
            columns = meta.get("columns") or []  # the rows' column order (the JSON keys are sorted)
            history = [{**{k: r[k] for k in columns if k in r}, **r} for r in meta.get("history", [])]
            if start > epochs:
                raise RunDirectoryError(
                    f"{ckpt.json_path} has already {start} epochs, more than the {epochs} asked; "
                    "ask for at least as many epochs or rerun with --no-resume"
                )
        if is_multi_worker(self.strategy):
            # Every worker must continue from the chief's checkpoint: one that starts from another
            # epoch (its own copy of the run folder, or none) would silently train other weights.
            starts = sorted({int(s) for s in gather_from_workers(self.strategy, start)})
            if len(starts) > 1:
                mine = (f"{ckpt.json_path}" if loaded is not None
                        else f"no checkpoint in {ckpt.json_path.parent}" if ckpt is not None else "no run dir")
                raise RunDirectoryError(
                    f"the workers would start from different epochs {starts} (this one from {start}: {mine}); "
                    "every worker must read the chief's checkpoints, so give them all the same run folder "
                    "on a filesystem they share"
                )
        if start >= epochs and loaded is None:
            return history

        if not self.model.built or not self.model.variables:
            if sample is None:
                first = next(iter(factory(min(start, max(epochs - 1, 0)))))
                sample = first[0]
            self._ensure_built(sample)
        else:
            self._ensure_built(None)
        self._ensure_optimizer()
        if loaded is not None:
            meta, arrays = loaded
            self._restore(meta, arrays, callbacks, ckpt.json_path)
            self.global_step = int(meta.get("global_step", 0))
            self.epoch = start
            if ckpt.write:
                self._sync_metrics(history, metrics_file, name)
        if self._train_fn is None:
            self._train_fn = self._make_train_fn()

        for epoch in range(start, epochs):
            row = self._run_epoch(epoch, epochs, factory, lr_schedule, callbacks, steps_per_epoch,
                                  lr_per_step, name, verbose)
            history.append(row)
            self._history = history
            if ckpt is not None:
                meta, arrays = self._collect_state(callbacks)
                meta.update({
                    "format": _CKPT_FORMAT, "epoch": epoch + 1, "global_step": self.global_step,
                    "seed": seed, "history": history, "columns": list(row),
                    "trainer": {"weight_decay": self.weight_decay, "micro_batches": self.micro_batches,
                                "loss": self.loss if isinstance(self.loss, str) else _loss_name(self.loss)},
                })
                ckpt.save(epoch + 1, meta, arrays)
                if ckpt.write:
                    run_dir.append_metrics_row(row, metrics_file)
                    run_dir.mark_done(f"{name}/epoch-{epoch + 1}", row)
        self._history = history
        return history

    def _run_epoch(self, epoch, epochs, factory, lr_schedule, callbacks, steps_per_epoch,
                   lr_per_step, name, verbose) -> dict:
        ds = factory(epoch)
        steps = steps_per_epoch
        if isinstance(ds, tf.data.Dataset):
            if steps is not None:
                ds = ds.take(steps)
            card = int(ds.cardinality())
            if card == tf.data.INFINITE_CARDINALITY:
                raise InvalidOptionError("the dataset is infinite (repeat()); pass steps_per_epoch")
            if card >= 0:
                steps = card
        elif steps is not None:
            ds = (b for b, _ in zip(ds, range(steps)))
        if lr_per_step and lr_schedule is not None and not steps:
            raise InvalidOptionError("lr_per_step needs a known number of steps; pass steps_per_epoch")

        lr = self._set_lr(lr_schedule, epoch)
        tot = [tf.zeros([], tf.float64)] * 3
        began = time.perf_counter()
        with progress(steps or 0, f"{name} epoch {epoch + 1}/{epochs}", show=verbose) as bar:
            for i, batch in enumerate(self._distribute(ds)):
                if lr_per_step and lr_schedule is not None and i > 0:
                    self._set_lr(lr_schedule, epoch + i / steps)
                x, y = batch
                out = self._train_fn(x, y)
                tot = [a + b for a, b in zip(tot, out)]
                self.global_step += 1
                for cb in callbacks:
                    hook = getattr(cb, "on_step_end", None)
                    if hook is not None:
                        hook(self, self.global_step)
                bar.update(1)
        loss_sum, correct, n = (float(t.numpy()) for t in tot)
        if n == 0:
            raise ShapeError(f"epoch {epoch} of the training data has no examples")
        self.epoch = epoch + 1
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss_sum / n,
            "train_accuracy": correct / n if self._has_accuracy else float("nan"),
            "seconds": round(time.perf_counter() - began, 3),
        }
        for cb in callbacks:
            hook = getattr(cb, "on_epoch_end", None)
            extra = hook(self, epoch, dict(row)) if hook is not None else None
            if extra:
                clash = set(extra) & set(_BASE_COLUMNS)
                if clash:
                    raise InvalidOptionError(
                        f"callback {type(cb).__name__} returned reserved keys {sorted(clash)}"
                    )
                row.update({str(k): (float(v) if isinstance(v, (np.floating, np.integer)) else v)
                            for k, v in extra.items()})
        return row

    def _set_lr(self, lr_schedule, epoch: float) -> float:
        if lr_schedule is None:
            return float(np.asarray(self.optimizer.learning_rate))
        lr = float(lr_schedule(epoch))
        if not math.isfinite(lr) or lr < 0:
            raise InvalidOptionError(f"the learning-rate schedule gave {lr} at epoch {epoch}")
        try:
            self.optimizer.learning_rate = lr
        except TypeError as e:
            raise InvalidOptionError(
                "the optimizer has its own LearningRateSchedule; pass lr_schedule=None or "
                "build the optimizer with a float learning rate"
            ) from e
        return lr

    # ------------------------------------------------------------------ evaluation

    def _batches(self, data, batch_size, with_labels: bool) -> Iterable:
        if isinstance(data, tf.data.Dataset):
            return data
        if with_labels:
            x, y = self._check_arrays(data)
            arrays = (x, y)
        else:
            arrays = np.asarray(data)
            if arrays.ndim == 0 or arrays.shape[0] == 0:
                raise ShapeError(f"x must hold examples along axis 0, got shape {arrays.shape}")
        if batch_size is None:
            batch_size = 256
        return tf.data.Dataset.from_tensor_slices(arrays).batch(integer(batch_size, "batch_size", 1))

    def evaluate(self, data, batch_size: int | None = None) -> dict:
        """``{"loss": mean per-example loss, "accuracy": argmax accuracy}`` in inference mode.

        ``data`` is a dataset of ``(x, y)`` batches or a pair of arrays (batched by
        ``batch_size``, default 256). The loss is the data term only (no weight decay).
        """
        if self._eval_fn is None:
            @tf.function(reduce_retracing=True)
            def eval_step(x, y):
                logits = self.model(x, training=False)
                losses = self._per_example_loss(y, logits)
                return (tf.reduce_sum(tf.cast(losses, tf.float64)), self._correct(y, logits),
                        tf.cast(tf.shape(losses)[0], tf.float64))
            self._eval_fn = eval_step
        loss_sum = correct = n = 0.0
        for x, y in self._batches(data, batch_size, with_labels=True):
            ls, c, k = self._eval_fn(x, y)
            loss_sum, correct, n = loss_sum + float(ls), correct + float(c), n + float(k)
        if n == 0:
            raise ShapeError("the evaluation data has no examples")
        return {"loss": loss_sum / n, "accuracy": correct / n if self._has_accuracy else float("nan")}

    def predict_proba(self, x, batch_size: int = 256) -> np.ndarray:
        """Softmax probabilities ``[N, K]`` of the model's logits for inputs ``x`` (inference mode).

        ``x`` is an array ``[N, ...]`` or a dataset of input batches (or of ``(x, y)`` batches).
        """
        if self._predict_fn is None:
            @tf.function(reduce_retracing=True)
            def predict_step(xb):
                return tf.nn.softmax(self.model(xb, training=False), axis=-1)
            self._predict_fn = predict_step
        out = []
        for batch in self._batches(x, batch_size, with_labels=False):
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            out.append(self._predict_fn(batch).numpy())
        if not out:
            raise ShapeError("no inputs to predict")
        return np.concatenate(out, axis=0)
