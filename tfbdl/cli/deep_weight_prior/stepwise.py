"""Plain Adam steps on a chosen set of variables, traced once and reused across runs.

The random-feature and convergence studies train many small networks of one shape (one per arm and
seed); a fresh Keras optimizer per network would retrace the step each time. Here one traced step
serves them all: :meth:`AdamSteps.reset` zeroes the moments between runs and the caller assigns the
next network's starting weights. Adam with PyTorch's defaults (betas 0.9 / 0.999, eps 1e-8), as the
release's ``torch.optim.Adam``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AdamSteps", "DenseHeadAdam", "accuracy", "batches", "cross_entropy"]


def cross_entropy(forward):
    """The loss ``(x, y) -> mean CE(forward(x), y)`` for :class:`AdamSteps`; ``forward`` maps ``x [b, ...]`` to
    logits ``[b, classes]``, ``y [b]`` holds integer labels."""
    import tensorflow as tf

    def loss(x, y):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=forward(x)))

    return loss


class AdamSteps:
    """Adam on ``variables`` of a scalar ``loss(x, y)`` (e.g. :func:`cross_entropy`); every other
    variable the loss reads stays as it is (frozen)."""

    def __init__(self, loss, variables, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        import tensorflow as tf

        self.loss, self.variables = loss, list(variables)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.t = tf.Variable(0.0, trainable=False)
        self._step = tf.function(self._eager_step, reduce_retracing=True)

    def reset(self) -> None:
        """Zero the moments and the step count (a new run)."""
        for slot in self.m + self.v:
            slot.assign(np.zeros(slot.shape, np.float32))
        self.t.assign(0.0)

    def _eager_step(self, x, y, lr):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = self.loss(x, y)
        grads = tape.gradient(loss, self.variables)
        t = self.t.assign_add(1.0)
        correction = tf.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        for var, g, m, v in zip(self.variables, grads, self.m, self.v):
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            var.assign_sub(lr * correction * m / (tf.sqrt(v) + self.eps * tf.sqrt(1.0 - self.beta2 ** t)))
        return loss

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One Adam step on the batch ``(x, y)`` at learning rate ``lr``; the loss before the step."""
        import tensorflow as tf

        return float(self._step(tf.convert_to_tensor(x), tf.convert_to_tensor(y), tf.constant(lr, tf.float32)))


def batches(n: int, batch_size: int, rng: np.random.Generator):
    """Index arrays of one shuffled epoch over ``n`` examples (the last batch may be smaller)."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def accuracy(forward, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Fraction of ``x`` whose argmax logit under ``forward`` equals ``y``."""
    hits = 0
    for start in range(0, len(x), batch_size):
        logits = np.asarray(forward(x[start:start + batch_size]))
        hits += int(np.sum(np.argmax(logits, axis=1) == y[start:start + batch_size]))
    return hits / max(len(x), 1)


def _softmax_grads(f: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray):
    """Mean cross-entropy of ``softmax(f w + b)`` and its gradients in ``w [d, c]`` and ``b [c]``."""
    logits = f @ w + b
    logits = logits - logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    n = len(y)
    delta = np.exp(log_p)
    delta[np.arange(n), y] -= 1.0
    delta /= n
    return float(-np.mean(log_p[np.arange(n), y])), f.T @ delta, delta.sum(axis=0)


class DenseHeadAdam:
    """A dense softmax layer ``logits = f w + b`` on fixed features trained by Adam (PyTorch's defaults),
    in numpy: with the features frozen the gradients are closed-form, so no graph is needed."""

    def __init__(self, w: np.ndarray, b: np.ndarray, *, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.params = [np.array(w, np.float64), np.array(b, np.float64)]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t, self.beta1, self.beta2, self.eps = 0, beta1, beta2, eps

    def __call__(self, f: np.ndarray) -> np.ndarray:
        return f @ self.params[0] + self.params[1]

    def step(self, f: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One Adam step on the batch ``(f [b, d], y [b])``; the batch's mean loss before the step."""
        loss, *grads = _softmax_grads(f, y, *self.params)
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            p -= lr * (m / (1.0 - self.beta1 ** self.t)) / (np.sqrt(v / (1.0 - self.beta2 ** self.t)) + self.eps)
        return loss
