"""Micro-batching that never runs out of memory: estimate, then halve and retry on OOM.

:class:`AdaptiveMicroBatchTrainer` is a :class:`~tfbdl.train.loop.Trainer` whose step cuts each
mini-batch of ``b`` examples into consecutive micro-batches of at most ``micro_batch`` examples,
computes the gradient of each micro-batch's *summed* loss divided by ``b``, adds them up and
takes one optimizer step with the total, so the optimizer always sees the gradient of the
requested mini-batch (up to float rounding). ``micro_batch`` starts at a first estimate
(:func:`estimate_micro_batch`: parameter and activation memory against a budget). When a
micro-batch raises ``tf.errors.ResourceExhaustedError`` the partial sums are dropped, the
model's non-trainable variables (batch-norm moving statistics, dropout seed states) are put
back to their values before the step, the micro-batch is halved and the SAME step is run
again; the smaller size is kept for the rest of training. The weights, the optimizer's state
and the step counter change only after every micro-batch of the step has run, so a failed try
leaves nothing else to undo, and the retried step is (on a CPU, bitwise) the step that a run
with the smaller size from the start takes (tests/test_oom_microbatch.py). Below
``min_micro_batch`` the error is raised as :class:`OutOfMemory`. The size in use is added to
every metrics row (``micro_batch``) and the halvings are counted in ``oom_retries``.

Batch norm under micro-batching: in training mode each micro-batch is normalised with its own
mean and variance (as "ghost batch norm"), so with batch norm the accumulated gradient is the
sum of the micro-batches' gradients, not the gradient of the full mini-batch normalised as
one, and the moving statistics are updated once per micro-batch. Without batch-dependent
layers the two are equal. Dropout draws its masks per micro-batch, so its masks (not its
distribution) depend on the micro-batch size.

Estimate. The optimizer state is about 4 copies of the weights (weights, gradients, the
accumulated gradients, momentum); each example keeps every layer's output for the backward
pass and about as much again for its gradients, times ``overhead`` (3 by default: framework
workspace and temporaries; the reference's own heuristic used 4). The first guess is the
largest ``b / 2**k`` whose estimate fits the budget: ``memory_budget`` bytes if given, else
the free memory of the first GPU (``nvidia-smi``), else half of the free host memory.
Halving on the error is what makes it safe; the estimate only saves the first failures.

Only the default (single-device) strategy: a multi-device OOM would have to be agreed on by
every replica.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import warnings
from typing import Callable

import numpy as np
import tensorflow as tf

from tfbdl.errors import InvalidOptionError, TfbdlError
from tfbdl.train.loop import Trainer
from tfbdl.train.strategy import is_default_strategy

__all__ = ["AdaptiveMicroBatchTrainer", "OutOfMemory", "available_memory_bytes", "estimate_micro_batch",
           "fail_above", "model_memory_bytes"]


class OutOfMemory(TfbdlError):
    """Even the smallest allowed micro-batch does not fit in memory."""


def fail_above(limit: int) -> Callable[[int], None]:
    """A memory probe (for tests and drills) that raises ``ResourceExhaustedError`` for any
    micro-batch larger than ``limit`` examples, as a device with that little memory would."""

    def probe(size: int) -> None:
        if size > limit:
            raise tf.errors.ResourceExhaustedError(None, None, f"simulated OOM: micro-batch {size} > {limit}")

    return probe


def model_memory_bytes(model, dtype_bytes: int = 4) -> tuple[int, int]:
    """``(parameter_bytes, activation_bytes_per_example)`` of a built functional Keras model:
    all its variables, and the sum of its layers' output sizes (one example)."""
    params = sum(int(np.prod(v.shape)) for v in model.variables) * dtype_bytes
    acts = 0
    for layer in model.layers:
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        for out in outputs:
            acts += int(np.prod([d for d in out.shape[1:] if d is not None])) * dtype_bytes
    return params, acts


def available_memory_bytes() -> int:
    """Free memory of the first GPU (``nvidia-smi``) when TensorFlow sees one, else half of the
    host's available memory (``/proc/meminfo``; 2 GiB if unknown)."""
    if tf.config.list_physical_devices("GPU") and shutil.which("nvidia-smi"):
        try:
            text = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=10, check=True).stdout
            return int(float(text.split()[0]) * 2 ** 20)
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 2 * 2 ** 30


def estimate_micro_batch(model, batch_size: int, memory_budget: int | None = None, *,
                         overhead: float = 3.0, min_micro_batch: int = 1) -> int:
    """The first micro-batch size to try: the largest ``batch_size / 2**k`` (rounded up, at least
    ``min_micro_batch``) with ``4 * params + 2 * overhead * size * activations <= budget``."""
    budget = available_memory_bytes() if memory_budget is None else int(memory_budget)
    params, acts = model_memory_bytes(model)
    size = int(batch_size)
    while size > min_micro_batch and 4 * params + 2 * overhead * size * acts > budget:
        size = max(min_micro_batch, math.ceil(size / 2))
    return size


class AdaptiveMicroBatchTrainer(Trainer):
    """A :class:`~tfbdl.train.loop.Trainer` with OOM-safe adaptive micro-batching (module docstring).

    ``micro_batch``: the first size to try (None: :func:`estimate_micro_batch` with
    ``memory_budget`` bytes at the first batch). ``memory_probe(size)`` is called before each
    micro-batch and may raise ``ResourceExhaustedError`` (see :func:`fail_above`).
    """

    def __init__(self, model, optimizer_factory, loss="sparse_categorical_crossentropy", *,
                 weight_decay: float = 0.0, micro_batch: int | None = None, min_micro_batch: int = 1,
                 memory_budget: int | None = None, memory_probe: Callable[[int], None] | None = None,
                 strategy=None, verbose: bool = True):
        super().__init__(model, optimizer_factory, loss, weight_decay=weight_decay, micro_batches=1,
                         strategy=strategy)
        if not is_default_strategy(self.strategy):
            raise InvalidOptionError("adaptive micro-batching runs on one device (the default strategy); "
                                     "use Trainer(micro_batches=...) under a distribution strategy")
        for name, value in (("micro_batch", micro_batch), ("min_micro_batch", min_micro_batch)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise InvalidOptionError(f"{name} must be a positive integer, got {value!r}")
        self.micro_batch = None if micro_batch is None else int(micro_batch)
        self.min_micro_batch = int(min_micro_batch)
        self.memory_budget = memory_budget
        self.memory_probe = memory_probe
        self.oom_retries = 0
        self.verbose = verbose

    # ------------------------------------------------------------------ the step

    def _make_train_fn(self):
        model, opt, wd = self.model, self.optimizer, self.weight_decay

        @tf.function(reduce_retracing=True)
        def grad_fn(x, y, n_total):
            tvars = model.trainable_variables
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss_sum = tf.reduce_sum(self._per_example_loss(y, logits))
                scaled = loss_sum / tf.cast(n_total, loss_sum.dtype)
            grads = tape.gradient(scaled, tvars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return ([tf.convert_to_tensor(g) for g in grads], tf.cast(loss_sum, tf.float64),
                    self._correct(y, logits))

        @tf.function(reduce_retracing=True)
        def apply_fn(grads):
            tvars = model.trainable_variables
            if wd:
                grads = [g + tf.cast(2.0 * wd, g.dtype) * v.value for g, v in zip(grads, tvars)]
            opt.apply_gradients(zip(grads, tvars))

        self._grad_fn, self._apply_fn = grad_fn, apply_fn
        return self.train_step

    def accumulated_gradients(self, x, y, micro_batch: int):
        """``(grads, loss_sum, correct)`` of the mini-batch ``(x, y)`` accumulated over micro-batches
        of ``micro_batch`` examples (no optimizer step; runs ``memory_probe``)."""
        if self._train_fn is None:
            self._ensure_built(x[:1])
            self._ensure_optimizer()
            self._train_fn = self._make_train_fn()
        n = int(tf.shape(tf.nest.flatten(y)[0])[0])
        total = None
        loss_sum = correct = tf.zeros([], tf.float64)
        for start in range(0, n, micro_batch):
            end = min(n, start + micro_batch)
            if self.memory_probe is not None:
                self.memory_probe(end - start)
            xs = tf.nest.map_structure(lambda t: t[start:end], x)
            ys = tf.nest.map_structure(lambda t: t[start:end], y)
            grads, ls, c = self._grad_fn(xs, ys, tf.constant(n, tf.int32))
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
            loss_sum, correct = loss_sum + ls, correct + c
        return total, loss_sum, correct

    def train_step(self, x, y):
        """One optimizer step on the mini-batch ``(x, y)``, halving the micro-batch and retrying
        on ``ResourceExhaustedError``; returns ``[loss_sum, correct, n]`` (float64 tensors)."""
        x = tf.nest.map_structure(tf.convert_to_tensor, x)
        y = tf.nest.map_structure(tf.convert_to_tensor, y)
        n = int(tf.shape(tf.nest.flatten(y)[0])[0])
        if self.micro_batch is None:
            self.micro_batch = estimate_micro_batch(self.model, n, self.memory_budget,
                                                    min_micro_batch=self.min_micro_batch)
        saved = [tf.identity(v.value) for v in self.model.non_trainable_variables]
        while True:
            size = min(self.micro_batch, n)
            try:
                grads, loss_sum, correct = self.accumulated_gradients(x, y, size)
                break
            except tf.errors.ResourceExhaustedError as error:
                self._halve(size, error)
                for v, value in zip(self.model.non_trainable_variables, saved):
                    v.assign(value)
        self._apply_fn(grads)
        return [loss_sum, correct, tf.constant(float(n), tf.float64)]

    def _halve(self, size: int, error) -> None:
        if size <= self.min_micro_batch:
            raise OutOfMemory(f"out of memory even with micro-batches of {size} examples ({error.message.strip()}); "
                              "use a smaller model or batch size, or a device with more memory") from None
        self.micro_batch = max(self.min_micro_batch, size // 2)
        self.oom_retries += 1
        if self.verbose:
            warnings.warn(f"out of memory with micro-batches of {size}; retrying the step with {self.micro_batch}",
                          stacklevel=3)

    # ------------------------------------------------------------------ logging

    def _run_epoch(self, *args, **kwargs) -> dict:
        row = super()._run_epoch(*args, **kwargs)
        row["micro_batch"] = int(self.micro_batch or 0)
        row["oom_retries"] = int(self.oom_retries)
        return row

