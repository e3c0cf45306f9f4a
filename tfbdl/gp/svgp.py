"""One-vs-all sparse variational GP classifiers (GPflow).

One ``gpflow.models.SVGP`` with a Bernoulli (probit) likelihood per class, trained on the
binary task "this class or not". Inputs are flattened images ``[N, D]`` (the CNN kernels of
:mod:`tfbdl.kernels` take flattened images). All class models are trained together, one
mini-batch per step: their ELBOs are independent, so minimising their sum trains each as if
alone. With ``natgrad=True`` the variational parameters ``(q_mu, q_sqrt)`` take natural-gradient
steps and Adam updates only the rest (kernel hyperparameters, inducing inputs if trainable),
the usual GPflow pattern.
"""

from __future__ import annotations

from typing import Callable

import gpflow
import numpy as np
import tensorflow as tf
import keras

from tfbdl.data.subsets import round_robin_indices
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.shapes import declare_shapes
from tfbdl.validate import integer

__all__ = ["OneVsAllSVGP"]


class OneVsAllSVGP:
    """``num_classes`` SVGP binary classifiers sharing ``num_inducing`` inducing inputs.

    ``kernel_factory()`` is called once per class, so every class has its own kernel
    hyperparameters (a shared kernel would couple the classes through Adam). The inducing
    inputs are training points picked stratified over classes with ``seed`` when :meth:`fit`
    first sees the data (all points if ``num_inducing >= N``); they stay fixed unless
    ``train_inducing=True`` (gradients with respect to image-sized inducing inputs are costly
    for CNN kernels). ``whiten`` uses the whitened parametrisation ``u = L v``.
    """

    def __init__(self, kernel_factory: Callable[[], gpflow.kernels.Kernel], num_classes: int,
                 num_inducing: int, *, seed: int = 0, whiten: bool = True,
                 train_inducing: bool = False):
        self.kernel_factory = kernel_factory
        self.num_classes = integer(num_classes, "num_classes", 2)
        self.num_inducing = integer(num_inducing, "num_inducing", 1)
        self.seed = int(seed)
        self.whiten = bool(whiten)
        self.train_inducing = bool(train_inducing)
        self.models: list[gpflow.models.SVGP] = []
        self.inducing_indices: np.ndarray | None = None
        self._data: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ data
    def _check(self, X, y=None) -> tuple[np.ndarray, np.ndarray | None]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ShapeError(f"X must be flattened inputs [N, D], got shape {X.shape}")
        if self.models and X.shape[1] != self.models[0].inducing_variable.Z.shape[1]:
            raise ShapeError(f"X has {X.shape[1]} features, the model was built with "
                             f"{self.models[0].inducing_variable.Z.shape[1]}")
        if y is None:
            return X, None
        y = np.asarray(y).astype(np.int64)
        if y.shape != (X.shape[0],):
            raise ShapeError(f"y must be labels [{X.shape[0]}], got shape {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= self.num_classes):
            raise InvalidOptionError(f"labels must lie in [0, {self.num_classes}), got "
                                     f"[{y.min()}, {y.max()}]")
        return X, y

    def _one_hot(self, y: np.ndarray) -> np.ndarray:
        """Binary targets ``[N, C]``: 1 for the point's class, 0 for the other classes."""
        return (y[:, None] == np.arange(self.num_classes)[None, :]).astype(np.float64)

    @declare_shapes("X: [N, D]", "y: [N]")
    def build(self, X, y) -> None:
        """Create the class models on training data ``X [N, D]``, ``y [N]`` (done by :meth:`fit`)."""
        X, y = self._check(X, y)
        self.inducing_indices = round_robin_indices(y, self.num_inducing, self.seed)
        Z = X[self.inducing_indices]
        self.models = []
        for c in range(self.num_classes):
            model = gpflow.models.SVGP(self.kernel_factory(), gpflow.likelihoods.Bernoulli(),
                                       Z.copy(), whiten=self.whiten, num_data=X.shape[0])
            gpflow.set_trainable(model.inducing_variable, self.train_inducing)
            self.models.append(model)

    # ------------------------------------------------------------------ training
    @declare_shapes("X: [N, D]", "y: [N]")
    def fit(self, X, y, *, steps: int = 1000, batch_size: int = 256, learning_rate: float = 0.01,
            natgrad: bool = True, natgrad_gamma: float = 0.1, seed: int | None = None,
            callback: Callable[[int, float], None] | None = None, log_every: int = 100
            ) -> list[dict]:
        """Train every class model for ``steps`` mini-batch steps on ``X [N, D]``, ``y [N]``.

        Mini-batches of ``batch_size`` (all N if smaller) are drawn without replacement, epoch
        by epoch, from a numpy Generator seeded by ``seed`` (default: the constructor's).
        Adam (``learning_rate``) updates the kernel hyperparameters; with ``natgrad`` the
        variational parameters take natural-gradient steps of size ``natgrad_gamma`` (0.1 is
        safe for a Bernoulli likelihood) and are hidden from Adam, else Adam trains them too.
        Builds the models on first call; later calls continue from the current parameters
        (with fresh optimiser state). Random labels are memorised when ``num_inducing`` is
        close to N and the kernel can be made short-ranged. ``callback(step,
        loss)`` is called every ``log_every`` steps and after the last. Returns the logged
        ``[{"step", "loss"}]``, loss being the summed negative mini-batch ELBO over classes.
        """
        X, y = self._check(X, y)
        steps, batch_size = integer(steps, "steps", 0), integer(batch_size, "batch_size", 1)
        if not self.models:
            self.build(X, y)
        self._data = (X, y)
        Y = self._one_hot(y)
        n = X.shape[0]
        batch = min(int(batch_size), n)
        rng = np.random.default_rng(self.seed if seed is None else seed)

        for m in self.models:
            gpflow.set_trainable(m.q_mu, not natgrad)
            gpflow.set_trainable(m.q_sqrt, not natgrad)
        adam_vars = [v for m in self.models for v in m.trainable_variables]
        adam = keras.optimizers.Adam(learning_rate=learning_rate)
        if adam_vars:
            adam.build(adam_vars)  # create its slots now, so that step() is traced only once
        ng = gpflow.optimizers.NaturalGradient(gamma=natgrad_gamma) if natgrad else None
        var_pairs = [(m.q_mu, m.q_sqrt) for m in self.models]
        models = self.models
        dim = X.shape[1]

        @tf.function(autograph=False,
                     input_signature=[tf.TensorSpec([None, dim], tf.float64),
                                      tf.TensorSpec([None, self.num_classes], tf.float64)])
        def step(xb, yb):
            def loss():
                return tf.add_n([-m.elbo((xb, yb[:, c:c + 1])) for c, m in enumerate(models)])

            if ng is not None:
                ng.minimize(loss, var_pairs)
            if not adam_vars:
                return loss()
            with tf.GradientTape() as tape:
                value = loss()
            adam.apply_gradients(zip(tape.gradient(value, adam_vars), adam_vars))
            return value

        history: list[dict] = []
        order = rng.permutation(n)
        pos = 0
        for i in range(1, int(steps) + 1):
            if pos + batch > n:
                order, pos = rng.permutation(n), 0
            idx = order[pos:pos + batch]
            pos += batch
            value = step(X[idx], Y[idx])
            if i % max(1, int(log_every)) == 0 or i == int(steps):
                record = {"step": i, "loss": float(value)}
                history.append(record)
                if callback is not None:
                    callback(i, record["loss"])
        return history

    # ------------------------------------------------------------------ prediction
    def _require_models(self) -> None:
        if not self.models:
            raise InvalidOptionError("the classifier has not been fitted: call fit(X, y) first")

    @declare_shapes("X: [N, D]", "return: [N, C]")
    def class_probabilities(self, X, *, batch_size: int = 1024) -> np.ndarray:
        """Each class model's own predictive probability of its class, ``[N, C]`` (unnormalised)."""
        self._require_models()
        X, _ = self._check(X)
        out = np.empty((X.shape[0], self.num_classes))
        for s in range(0, X.shape[0], batch_size):
            xb = X[s:s + batch_size]
            for c, m in enumerate(self.models):
                mean, _ = m.predict_y(xb)
                out[s:s + batch_size, c] = mean.numpy()[:, 0]
        return out

    @declare_shapes("X: [N, D]", "return: [N, C]")
    def predict_proba(self, X, *, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities ``[N, C]`` for ``X [N, D]``.

        Combination rule: ``p_c`` is model c's predictive ``P(y = c | x)`` (``predict_y`` mean,
        the Bernoulli probability with the latent marginalised); the rows are normalised,
        ``p_c / sum_k p_k``, so they sum to 1. (One-vs-all probabilities are not a joint
        model; normalising keeps their ranking and makes them usable as a distribution.)
        """
        p = self.class_probabilities(X, batch_size=batch_size)
        total = p.sum(axis=1, keepdims=True)
        return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / self.num_classes)

    @declare_shapes("X: [N, D]", "return: [N]")
    def predict(self, X, *, batch_size: int = 1024) -> np.ndarray:
        """Predicted classes ``[N]`` (argmax of :meth:`predict_proba`)."""
        return np.argmax(self.class_probabilities(X, batch_size=batch_size), axis=1)

    @declare_shapes("X: [N, D]", "y: [N]", "return: [C]")
    def elbo(self, X=None, y=None, *, batch_size: int = 1024) -> np.ndarray:
        """Full-data ELBO of each class model, ``[C]``, on ``X, y`` (default: the data of the
        last :meth:`fit`). Sums the expected log-likelihood over batches, minus the KL once."""
        self._require_models()
        if X is None:
            if self._data is None:
                raise InvalidOptionError("pass X and y, or call fit first")
            X, y = self._data
        X, y = self._check(X, y)
        Y = self._one_hot(y)
        out = np.empty(self.num_classes)
        for c, m in enumerate(self.models):
            total = 0.0
            for s in range(0, X.shape[0], batch_size):
                xb, yb = X[s:s + batch_size], Y[s:s + batch_size, c:c + 1]
                fmu, fvar = m.predict_f(xb)
                total += float(tf.reduce_sum(m.likelihood.variational_expectations(xb, fmu, fvar, yb)))
            out[c] = total - float(m.prior_kl())
        return out
