"""Laplace approximations of a weight posterior: a Gaussian at the MAP weights.

The posterior ``p(theta | D)`` is approximated by ``N(theta*, H^-1)``, where ``theta*`` are the
MAP weights and ``H`` the Hessian of the negative log joint ``-log p(D | theta) - log p(theta)``
at ``theta*``. The same second-order expansion gives the Laplace evidence

    log p(D) ~= log p(D | theta*) + log p(theta*) + (d / 2) log 2 pi - 1/2 log det H.

Three entry points, one posterior type underneath:

- :func:`laplace_from_hessian`: the functional core, numpy only. Give it the mode, the Hessian
  of the negative log joint (a full ``[d, d]`` matrix or its diagonal ``[d]``) and the value of
  the negative log joint there; get a :class:`LaplacePosterior`. For a linear-Gaussian model the
  Hessian is exact and so are the posterior and the evidence.
- :func:`diagonal_laplace`: a Keras model's trainable weights (or a subset), precision = prior
  precision + the diagonal of the generalised Gauss-Newton (GGN, the Fisher for these
  likelihoods) or of the empirical Fisher of the negative log-likelihood, summed over a dataset.
- :func:`last_layer_laplace`: only the final ``Dense`` layer, with its full GGN / empirical-Fisher
  block (the features below it are held at their MAP values).

Both Keras variants return a :class:`KerasLaplace`, which wraps the model's variables rather
than the model: ``sample(seed)`` gives lists of weight arrays, ``predict(model, x, ...)`` averages
the predictive distribution over weight samples with ``model.stateless_call``, so the model's
variables always keep (are "restored to") the MAP values, and ``log_marginal_likelihood()`` gives
the evidence. The reference (understandingbdl ``swag/posteriors/diag_laplace.py``) uses a
sampled-label Fisher and a fixed prior precision; here the Fisher is computed exactly (the
expectation over labels in closed form) and ``with_prior_precision`` re-uses the curvature to
compare prior precisions by evidence.

Likelihoods (``likelihood=``): ``"categorical"`` (the model returns logits; labels are integer
classes or one-hot rows) and ``"gaussian"`` (the model returns the mean; ``noise_scale`` is the
known observation standard deviation, so the negative log-likelihood is MSE / (2 sigma^2) plus
its normaliser).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.linalg

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.gp.cholesky import NotPositiveDefiniteError, cholesky_inplace
from tfbdl.shapes import declare_shapes
from tfbdl.validate import positive_int, positive_number

__all__ = [
    "HessianNotPositiveDefiniteError",
    "KerasLaplace",
    "LaplacePosterior",
    "Likelihood",
    "diagonal_laplace",
    "laplace_from_hessian",
    "last_layer_laplace",
]

_LOG_2PI = math.log(2.0 * math.pi)


class HessianNotPositiveDefiniteError(NotPositiveDefiniteError):
    """The Laplace precision (Hessian of the negative log joint) is not positive definite."""


# --------------------------------------------------------------------------- structure


@dataclasses.dataclass(frozen=True)
class _Structure:
    """How a flat parameter vector maps to the caller's arrays: one array or a list of them."""

    shapes: tuple[tuple[int, ...], ...]
    is_list: bool

    @classmethod
    def of(cls, theta) -> tuple["_Structure", np.ndarray]:
        if isinstance(theta, (list, tuple)):
            if not theta:
                raise ShapeError("theta_map must be an array or a non-empty list of arrays")
            arrays = [np.asarray(t, dtype=np.float64) for t in theta]
            flat = np.concatenate([a.ravel() for a in arrays])
            return cls(tuple(a.shape for a in arrays), True), flat
        array = np.asarray(theta, dtype=np.float64)
        return cls((array.shape,), False), array.ravel().copy()

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(s, dtype=np.int64)) for s in self.shapes]

    def unflatten(self, flat: np.ndarray):
        """``flat [..., d]`` -> the caller's structure, each array with the leading axes kept."""
        lead = flat.shape[:-1]
        parts, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            parts.append(flat[..., start:start + size].reshape(lead + tuple(shape)))
            start += size
        return parts if self.is_list else parts[0]


# --------------------------------------------------------------------------- Cholesky


_MAX_JITTER_TRIES = 6


def _precision_cholesky(H: np.ndarray) -> tuple[np.ndarray, float]:
    """Lower Cholesky factor of a symmetric ``H [d, d]`` and the jitter added to its diagonal (0.0 if
    none), by :func:`tfbdl.gp.cholesky.cholesky_inplace` on a copy (H is kept).

    Jitter starts at ``1e-10 * mean(diag H)`` and grows tenfold per try; a success after jitter
    emits a :class:`~tfbdl.errors.JitterWarning` with the amount.
    """
    diag = np.diagonal(H)
    mean_diag = float(np.mean(diag))
    if not np.isfinite(H).all():
        raise HessianNotPositiveDefiniteError(
            "the Laplace precision has NaN or infinite entries; check the loss at the MAP weights "
            "(and compute it in float64)")
    if mean_diag <= 0 or (diag <= 0).any():
        raise HessianNotPositiveDefiniteError(
            f"the Laplace precision has a non-positive diagonal entry (min {diag.min():.3g}); "
            "the weights are not at a minimum of the negative log joint, or the prior precision "
            "is zero: train to convergence or raise prior_precision")
    try:
        return cholesky_inplace(H, max_tries=_MAX_JITTER_TRIES, overwrite=False, name="Laplace precision")
    except NotPositiveDefiniteError:
        added = 1e-10 * mean_diag * 10.0 ** (_MAX_JITTER_TRIES - 1)
        raise HessianNotPositiveDefiniteError(
            f"the {H.shape[0]}x{H.shape[0]} Laplace precision is not positive definite even with "
            f"jitter {added:.3g} ({added / mean_diag:.0e} x mean diagonal): the weights are not at "
            "a minimum, or the Hessian is indefinite; use a Gauss-Newton / Fisher curvature, "
            "train to convergence, or raise the prior precision") from None


# --------------------------------------------------------------------------- functional core


class LaplacePosterior:
    """``N(theta_map, H^-1)`` over a flat parameter vector, with the Laplace evidence.

    Build it with :func:`laplace_from_hessian`. ``H`` is either full ``[d, d]`` (factorised once
    by Cholesky, with escalating jitter if needed) or diagonal ``[d]``. Arrays are float64.

    Attributes:
        neg_log_joint_value: ``-log p(D | theta*) - log p(theta*)`` as given.
        jitter: what was added to H's diagonal to factorise it (0.0 if nothing).
    """

    def __init__(self, theta_map, precision, neg_log_joint_value: float):
        self._structure, self._mean = _Structure.of(theta_map)
        d = self._mean.size
        if d == 0:
            raise ShapeError("theta_map has no entries")
        if not np.isfinite(self._mean).all():
            raise InvalidOptionError("theta_map has NaN or infinite entries")
        try:
            value = float(neg_log_joint_value)
        except (TypeError, ValueError):
            raise InvalidOptionError(f"neg_log_joint_value must be a number, got {neg_log_joint_value!r}") from None
        if not math.isfinite(value):
            raise InvalidOptionError(f"neg_log_joint_value must be finite, got {value!r}")
        self.neg_log_joint_value = value
        H = np.array(precision, dtype=np.float64)
        self.jitter = 0.0
        if H.ndim == 1 and H.shape == (d,):
            if not np.isfinite(H).all() or (H <= 0).any():
                raise HessianNotPositiveDefiniteError(
                    f"the diagonal Laplace precision has non-positive or non-finite entries (min "
                    f"{np.nanmin(H):.3g}); raise the prior precision or check the curvature")
            self._diag = H
            self._chol = None
            self._log_det = float(np.sum(np.log(H)))
        elif H.shape == (d, d):
            scale = float(np.max(np.abs(H))) or 1.0
            asym = float(np.max(np.abs(H - H.T))) / scale
            if asym > 1e-6:
                raise ShapeError(f"the Laplace precision is not symmetric (max |H - H^T| / max |H| = "
                                 f"{asym:.2e}); pass the Hessian of a scalar function")
            H = 0.5 * (H + H.T)
            self._diag = None
            self._chol, self.jitter = _precision_cholesky(H)
            self._log_det = float(2.0 * np.sum(np.log(np.diagonal(self._chol))))
        else:
            raise ShapeError(f"the Hessian must have shape [{d}, {d}] (full) or [{d}] (its diagonal) for "
                             f"{d} parameters, got {H.shape}")
        self._precision = H

    # -- properties
    @property
    def dim(self) -> int:
        """Number of parameters ``d``."""
        return int(self._mean.size)

    @property
    def is_diagonal(self) -> bool:
        return self._diag is not None

    @property
    def mean_flat(self) -> np.ndarray:
        """The mode ``theta* [d]`` (a copy)."""
        return self._mean.copy()

    @property
    def mean(self):
        """The mode in the structure of ``theta_map`` (an array or a list of arrays)."""
        return self._structure.unflatten(self._mean.copy())

    @property
    def precision(self) -> np.ndarray:
        """``H``: ``[d]`` when diagonal, else ``[d, d]`` (without jitter)."""
        return self._precision.copy()

    @property
    def covariance(self) -> np.ndarray:
        """``H^-1 [d, d]`` (dense even for a diagonal H: mind memory for large d)."""
        if self.is_diagonal:
            return np.diag(1.0 / self._diag)
        return scipy.linalg.cho_solve((self._chol, True), np.eye(self.dim))

    @property
    def variance(self) -> np.ndarray:
        """Marginal variances, the diagonal of ``H^-1 [d]``."""
        if self.is_diagonal:
            return 1.0 / self._diag
        Linv = scipy.linalg.solve_triangular(self._chol, np.eye(self.dim), lower=True)
        return np.sum(Linv * Linv, axis=0)

    @property
    def log_det_precision(self) -> float:
        """``log det H`` (of the jittered matrix when jitter was needed)."""
        return self._log_det

    # -- evidence and density
    def log_marginal_likelihood(self) -> float:
        """Laplace evidence ``-neg_log_joint + d/2 log 2 pi - 1/2 log det H``."""
        return -self.neg_log_joint_value + 0.5 * self.dim * _LOG_2PI - 0.5 * self._log_det

    def log_prob(self, theta) -> np.ndarray:
        """Gaussian log density at ``theta`` (the structure of theta_map, optional leading axes)."""
        flat = self._flatten(theta)
        delta = flat - self._mean
        if self.is_diagonal:
            quad = np.sum(delta * delta * self._diag, axis=-1)
        else:
            quad = np.sum((delta @ self._chol) ** 2, axis=-1)  # delta^T L L^T delta
        return -0.5 * (quad + self.dim * _LOG_2PI - self._log_det)

    def _flatten(self, theta) -> np.ndarray:
        s = self._structure
        parts = theta if s.is_list else [theta]
        if len(parts) != len(s.shapes):
            raise ShapeError(f"expected {len(s.shapes)} arrays, got {len(parts)}")
        flats = []
        lead = None
        for part, shape in zip(parts, s.shapes):
            a = np.asarray(part, dtype=np.float64)
            k = a.ndim - len(shape)
            if k < 0 or tuple(a.shape[k:]) != tuple(shape):
                raise ShapeError(f"an array of shape {a.shape} does not end in the parameter shape {shape}")
            if lead is not None and a.shape[:k] != lead:
                raise ShapeError("the arrays' leading (sample) axes differ")
            lead = a.shape[:k]
            flats.append(a.reshape(lead + (-1,)))
        return np.concatenate(flats, axis=-1)

    # -- sampling
    def sample_flat(self, seed=None, num_samples: int | None = None) -> np.ndarray:
        """Samples as flat vectors: ``[d]`` or ``[num_samples, d]``."""
        n = 1 if num_samples is None else positive_int(num_samples, "num_samples")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        z = rng.standard_normal((n, self.dim))
        if self.is_diagonal:
            eps = z / np.sqrt(self._diag)
        else:  # H = L L^T, so L^-T z has covariance H^-1
            eps = scipy.linalg.solve_triangular(self._chol, z.T, lower=True, trans="T").T
        out = self._mean + eps
        return out[0] if num_samples is None else out

    def sample(self, seed=None, num_samples: int | None = None):
        """Weights drawn from the posterior, in the structure of ``theta_map``.

        ``num_samples=None`` gives one draw; an int gives arrays with a leading sample axis.
        ``seed`` is an int (or a ``numpy.random.Generator``); the same seed gives the same draws.
        """
        return self._structure.unflatten(self.sample_flat(seed, num_samples))

    def __repr__(self) -> str:
        kind = "diagonal" if self.is_diagonal else "full"
        return f"LaplacePosterior(dim={self.dim}, {kind} precision, log_evidence={self.log_marginal_likelihood():.6g})"


def laplace_from_hessian(theta_map, neg_log_joint_hessian, neg_log_joint_value: float) -> LaplacePosterior:
    """The Laplace approximation at a mode, from the Hessian of the negative log joint there.

    Args:
        theta_map: the mode (MAP weights): an array, or a list of arrays (flattened and
            concatenated in order; samples come back in the same structure).
        neg_log_joint_hessian: ``H``, the Hessian of ``-log p(D | theta) - log p(theta)`` at the
            mode with respect to the flattened parameters: ``[d, d]``, or its diagonal ``[d]`` for a
            mean-field approximation.
        neg_log_joint_value: ``-log p(D | theta_map) - log p(theta_map)``, with the normalising
            constants of both densities (it fixes the evidence).

    Returns:
        A :class:`LaplacePosterior` ``N(theta_map, H^-1)`` with ``log_marginal_likelihood()``.

    Raises:
        HessianNotPositiveDefiniteError: H is not positive definite (not a minimum).
        ShapeError: H has the wrong shape, or is not symmetric.
    """
    return LaplacePosterior(theta_map, neg_log_joint_hessian, neg_log_joint_value)


# --------------------------------------------------------------------------- likelihoods


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """A per-example likelihood of a network's outputs, computed in float64 (TensorFlow ops).

    ``kind="categorical"``: outputs are logits ``[n, C]``; targets integer labels ``[n]`` or one-hot
    ``[n, C]``. ``kind="gaussian"``: outputs are means ``[n, K]``; targets ``[n, K]`` (or ``[n]``
    when K = 1); ``noise_scale`` is the known observation standard deviation.
    """

    kind: str = "categorical"
    noise_scale: float = 1.0

    def __post_init__(self):
        if self.kind not in ("categorical", "gaussian"):
            raise InvalidOptionError(f"likelihood must be 'categorical' or 'gaussian', got {self.kind!r}")
        positive_number(self.noise_scale, "noise_scale")

    @classmethod
    def make(cls, likelihood, noise_scale: float = 1.0) -> "Likelihood":
        if isinstance(likelihood, Likelihood):
            return likelihood
        if not isinstance(likelihood, str):
            raise InvalidOptionError(f"likelihood must be 'categorical', 'gaussian' or a Likelihood, got {likelihood!r}")
        return cls(likelihood, noise_scale)

    def _targets(self, y, f):
        import tensorflow as tf

        y = tf.convert_to_tensor(y)
        if self.kind == "categorical":
            if y.shape.rank == f.shape.rank:
                return tf.cast(y, tf.float64)
            return tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), _num_outputs(f), dtype=tf.float64)
        y = tf.cast(y, tf.float64)
        return tf.reshape(y, tf.shape(f))

    @declare_shapes("y: [n, ...]", "f: [n, K]", "return: [n]")
    def nll(self, y, f):
        """Per-example negative log-likelihood ``[n]`` (float64) of targets ``y`` given outputs ``f``."""
        import tensorflow as tf

        f = tf.cast(f, tf.float64)
        t = self._targets(y, f)
        if self.kind == "categorical":
            return -tf.reduce_sum(t * tf.nn.log_softmax(f, axis=-1), axis=-1)
        s = self.noise_scale
        k = tf.cast(tf.shape(f)[-1], tf.float64)
        return 0.5 * tf.reduce_sum(tf.square((t - f) / s), axis=-1) + k * (math.log(s) + 0.5 * _LOG_2PI)

    @declare_shapes("y: [n, ...]", "f: [n, K]", "return: [n, K, M]")
    def curvature_factor(self, y, f, curvature: str):
        """``B [n, K, M]`` with ``B_n B_n^T`` the per-example curvature in output space.

        ``"ggn"``: the Hessian of the NLL with respect to the outputs (``diag(p) - p p^T`` for the
        softmax, ``I / sigma^2`` for the Gaussian); ``"empirical_fisher"``: ``g g^T`` with ``g`` the
        gradient of the NLL with respect to the outputs at the observed targets.
        """
        import tensorflow as tf

        f = tf.cast(f, tf.float64)
        if curvature == "ggn":
            if self.kind == "categorical":
                p = tf.nn.softmax(f, axis=-1)
                eye = tf.eye(_num_outputs(f), dtype=tf.float64)
                # diag(p) - p p^T = sum_c p_c (e_c - p)(e_c - p)^T: column c is sqrt(p_c) (e_c - p)
                return (eye[None] - p[:, :, None]) * tf.sqrt(p)[:, None, :]
            eye = tf.eye(_num_outputs(f), dtype=tf.float64) / self.noise_scale
            return tf.tile(eye[None], [tf.shape(f)[0], 1, 1])
        t = self._targets(y, f)
        if self.kind == "categorical":
            g = tf.nn.softmax(f, axis=-1) - t
        else:
            g = (f - t) / self.noise_scale ** 2
        return g[:, :, None]

    @declare_shapes("f: [n, K]", "return: [n, K]")
    def link(self, f):
        """Outputs -> the predictive quantity averaged over weight samples (softmax or identity)."""
        import tensorflow as tf

        if self.kind == "categorical":
            return tf.nn.softmax(tf.cast(f, tf.float64), axis=-1)
        return tf.cast(f, tf.float64)


def _num_outputs(f):
    """The output width of ``f [n, K]``: static when known (so curvature factors have a static M)."""
    import tensorflow as tf

    k = f.shape[-1]
    return int(k) if k is not None else tf.shape(f)[-1]


def _curvature_name(hessian: str) -> str:
    names = {"ggn": "ggn", "fisher": "ggn", "empirical_fisher": "empirical_fisher", "ef": "empirical_fisher"}
    if hessian not in names:
        raise InvalidOptionError(f"hessian must be 'ggn' (generalised Gauss-Newton = Fisher) or "
                                 f"'empirical_fisher', got {hessian!r}")
    return names[hessian]


# --------------------------------------------------------------------------- data


def _batches(data, batch_size: int):
    """Yield ``(x, y)`` batches from a ``tf.data.Dataset`` of pairs or an ``(x, y)`` pair of arrays."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        for element in data:
            if not isinstance(element, (tuple, list)) or len(element) != 2:
                raise ShapeError("the dataset must yield (x, y) pairs; drop sample weights before passing it")
            yield element
        return
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        n = len(x)
        if len(y) != n:
            raise ShapeError(f"x has {n} examples but y has {len(y)}")
        for start in range(0, n, batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    raise InvalidOptionError("data must be a tf.data.Dataset of (x, y) batches or an (x, y) pair of arrays")


def _check_model(model):
    import keras

    if not isinstance(model, keras.Model):
        raise InvalidOptionError(f"expected a keras.Model, got {type(model).__name__}")
    if not model.built or not model.trainable_variables:
        raise InvalidOptionError(f"model {model.name!r} is not built or has no trainable weights: call it on "
                                 "a batch (and train it to the MAP) first")


def _variable_indices(model, variables) -> list[int]:
    trainable = model.trainable_variables
    indices = []
    for v in variables:
        found = [i for i, t in enumerate(trainable) if t is v]
        if not found:
            raise InvalidOptionError(f"variable {getattr(v, 'path', v)!r} is not one of the model's trainable variables")
        indices.append(found[0])
    if len(set(indices)) != len(indices):
        raise InvalidOptionError("the same variable was listed twice")
    return indices


# --------------------------------------------------------------------------- Keras posterior


class KerasLaplace:
    """A Laplace posterior over some of a Keras model's trainable variables.

    It holds the MAP values and the curvature, not the model: ``predict(model, x)`` takes any model
    of the same architecture and never changes its variables.

    Attributes:
        posterior: the flat :class:`LaplacePosterior`.
        variable_indices: positions of the covered variables in ``model.trainable_variables``.
        variable_paths: their Keras paths (for messages).
        curvature: the likelihood part of the precision (``[d]`` or ``[d, d]``), prior excluded.
        prior_precision, nll: the prior precision and ``-log p(D | theta*)``.
    """

    def __init__(self, *, theta_map: list[np.ndarray], curvature: np.ndarray, nll: float, prior_precision: float,
                 likelihood: Likelihood, variable_indices: list[int], variable_paths: list[str], kind: str):
        self.theta_map = [np.array(t, dtype=np.float64) for t in theta_map]
        self.curvature = curvature
        self.nll = float(nll)
        self.prior_precision = positive_number(prior_precision, "prior_precision")
        self.likelihood = likelihood
        self.variable_indices = list(variable_indices)
        self.variable_paths = list(variable_paths)
        self.kind = kind
        lam = self.prior_precision
        flat = np.concatenate([t.ravel() for t in self.theta_map])
        d = flat.size
        log_prior = -0.5 * lam * float(flat @ flat) + 0.5 * d * (math.log(lam) - _LOG_2PI)
        precision = curvature + lam if curvature.ndim == 1 else curvature + lam * np.eye(d)
        self.posterior = laplace_from_hessian(self.theta_map, precision, self.nll - log_prior)

    @property
    def dim(self) -> int:
        return self.posterior.dim

    @property
    def variance(self) -> list[np.ndarray]:
        """Marginal posterior variances in the variables' shapes."""
        return self.posterior._structure.unflatten(self.posterior.variance)

    @property
    def precision_diagonal(self) -> np.ndarray:
        """The diagonal of the posterior precision (prior + curvature), flat ``[d]``."""
        p = self.posterior.precision
        return p if p.ndim == 1 else np.diagonal(p).copy()

    def log_marginal_likelihood(self) -> float:
        """Laplace evidence ``log p(D | theta*) + log p(theta*) + d/2 log 2 pi - 1/2 log det H``."""
        return self.posterior.log_marginal_likelihood()

    def with_prior_precision(self, prior_precision: float) -> "KerasLaplace":
        """The same curvature around the same weights under another prior precision.

        Cheap (no pass over the data); compare ``log_marginal_likelihood()`` across values to
        choose the prior precision (the mode is not re-fit, as usual for post-hoc Laplace).
        """
        return KerasLaplace(theta_map=self.theta_map, curvature=self.curvature, nll=self.nll,
                            prior_precision=prior_precision, likelihood=self.likelihood,
                            variable_indices=self.variable_indices, variable_paths=self.variable_paths,
                            kind=self.kind)

    def sample(self, seed=None, num_samples: int | None = None) -> list[np.ndarray]:
        """Posterior weights: a list of arrays in the covered variables' order and shapes.

        With ``num_samples`` each array has a leading sample axis.
        """
        return self.posterior.sample(seed, num_samples)

    @declare_shapes("x: [n, ...]", "return: [S, n, K]")
    def sample_outputs(self, model, x, num_samples: int = 32, seed=None, batch_size: int | None = None) -> np.ndarray:
        """``link(model(x))`` under ``num_samples`` posterior weight draws: ``[num_samples, n, K]``."""
        import tensorflow as tf

        _check_model(model)
        num_samples = positive_int(num_samples, "num_samples")
        trainable = model.trainable_variables
        for i, t, path in zip(self.variable_indices, self.theta_map, self.variable_paths):
            if i >= len(trainable) or tuple(trainable[i].shape) != t.shape:
                raise ShapeError(f"model {model.name!r} does not match the posterior: trainable variable {i} "
                                 f"should have shape {t.shape} (as {path!r}); pass the same architecture")
        draws = self.sample(seed, num_samples)
        base = [tf.convert_to_tensor(v) for v in trainable]
        non_trainable = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
        link = self.likelihood.link

        @tf.function(reduce_retracing=True)
        def forward(values, xb):
            out, _ = model.stateless_call(values, non_trainable, xb, training=False)
            return link(out)

        x = np.asarray(x) if not isinstance(x, tf.Tensor) else x
        n = int(x.shape[0])
        step = n if batch_size is None else positive_int(batch_size, "batch_size")
        outs = []
        for s in range(num_samples):
            values = list(base)
            for i, draw in zip(self.variable_indices, draws):
                values[i] = tf.convert_to_tensor(draw[s], dtype=base[i].dtype)
            chunks = [forward(values, x[a:a + step]).numpy() for a in range(0, n, step)]
            outs.append(np.concatenate(chunks, axis=0))
        return np.stack(outs)

    @declare_shapes("x: [n, ...]", "return: [n, K]")
    def predict(self, model, x, num_samples: int = 32, seed=None, batch_size: int | None = None) -> np.ndarray:
        """Bayesian model average over ``num_samples`` weight draws: ``[n, K]``.

        Class probabilities (the mean softmax) for a categorical likelihood, the predictive mean for
        a Gaussian one. Weights are substituted through ``model.stateless_call``; the model's own
        variables keep their (MAP) values.
        """
        return self.sample_outputs(model, x, num_samples, seed, batch_size).mean(axis=0)

    def __repr__(self) -> str:
        return (f"KerasLaplace({self.kind}, dim={self.dim}, prior_precision={self.prior_precision:g}, "
                f"log_evidence={self.log_marginal_likelihood():.6g})")


# --------------------------------------------------------------------------- Keras: diagonal


def diagonal_laplace(model, data, prior_precision: float, *, likelihood="categorical", noise_scale: float = 1.0,
                     hessian: str = "ggn", variables=None, batch_size: int = 128) -> KerasLaplace:
    """Diagonal Laplace around a Keras model's current (MAP) weights.

    Precision = ``prior_precision`` + the diagonal of ``sum_n J_n^T Lambda_n J_n`` over the data,
    where ``J_n`` is the Jacobian of the outputs for example n with respect to the weights and
    ``Lambda_n`` the output-space curvature of the negative log-likelihood (the GGN, equal to the
    Fisher for these likelihoods and to the exact Hessian for a linear model with a Gaussian
    likelihood), or ``g_n g_n^T`` (empirical Fisher). The per-example terms come from vectorised
    per-example Jacobians, so memory grows as ``batch x parameters``: lower the batch size for
    large models.

    Args:
        model: a built ``keras.Model`` at its MAP weights (trained with weight decay
            ``prior_precision / 2`` per example-sum, i.e. a ``N(0, 1/prior_precision)`` prior).
        data: a ``tf.data.Dataset`` of ``(x, y)`` batches or an ``(x, y)`` pair of arrays; the whole
            training set (the curvature is summed, not averaged).
        prior_precision: precision of the isotropic Gaussian prior on the covered weights.
        likelihood: ``"categorical"`` (logits) or ``"gaussian"`` (mean, with ``noise_scale``).
        hessian: ``"ggn"`` (default) or ``"empirical_fisher"``.
        variables: the trainable variables to cover (default: all of them).
        batch_size: batch size when ``data`` is a pair of arrays.

    Returns:
        A :class:`KerasLaplace` with a diagonal precision.
    """
    import tensorflow as tf

    _check_model(model)
    lik = Likelihood.make(likelihood, noise_scale)
    lam = positive_number(prior_precision, "prior_precision")
    curvature = _curvature_name(hessian)
    batch_size = positive_int(batch_size, "batch_size")
    variables = list(model.trainable_variables if variables is None else variables)
    indices = _variable_indices(model, variables)

    @tf.function(reduce_retracing=True)
    def batch_terms(x, y):
        with tf.GradientTape(persistent=True) as tape:
            f = model(x, training=False)
            f64 = tf.cast(f, tf.float64)
            B = tf.stop_gradient(lik.curvature_factor(y, f64, curvature))  # [n, K, M]
            proj = tf.einsum("nk,nkm->mn", f64, B)  # [M, n]
            rows = [proj[m] for m in range(B.shape[-1])]  # sliced under the tape, so differentiable
        sums = [tf.zeros(v.shape, tf.float64) for v in variables]
        for row in rows:
            jac = tape.jacobian(row, variables, experimental_use_pfor=True)
            sums = [s + tf.reduce_sum(tf.square(tf.cast(j, tf.float64)), axis=0) for s, j in zip(sums, jac)]
        del tape
        return sums, tf.reduce_sum(lik.nll(y, f64))

    total = [np.zeros(tuple(v.shape)) for v in variables]
    nll = 0.0
    seen = 0
    for x, y in _batches(data, batch_size):
        x = tf.convert_to_tensor(x)
        sums, batch_nll = batch_terms(x, tf.convert_to_tensor(y))
        total = [t + s.numpy() for t, s in zip(total, sums)]
        nll += float(batch_nll)
        seen += int(x.shape[0])
    if seen == 0:
        raise ShapeError("the data has no examples")
    flat_curv = np.concatenate([t.ravel() for t in total])
    return KerasLaplace(theta_map=[np.asarray(v) for v in variables], curvature=flat_curv, nll=nll,
                        prior_precision=lam, likelihood=lik, variable_indices=indices,
                        variable_paths=[v.path for v in variables], kind="diagonal")


# --------------------------------------------------------------------------- Keras: last layer


def _last_dense(model, layer):
    import keras

    if layer is None:
        dense = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dense)]
        if not dense:
            raise InvalidOptionError(f"model {model.name!r} has no top-level keras.layers.Dense layer; "
                                     "pass layer= explicitly")
        layer = dense[-1]
    elif isinstance(layer, str):
        layer = model.get_layer(layer)
    if not isinstance(layer, keras.layers.Dense):
        raise InvalidOptionError(f"last_layer_laplace needs a keras.layers.Dense layer, got {type(layer).__name__}")
    activation = getattr(layer.activation, "__name__", "")
    if activation != "linear":
        raise InvalidOptionError(f"layer {layer.name!r} has activation {activation!r}; the last-layer Laplace "
                                 "needs a linear Dense layer that outputs logits / means")
    return layer


def last_layer_laplace(model, data, prior_precision: float, *, likelihood="categorical", noise_scale: float = 1.0,
                       hessian: str = "ggn", layer=None, batch_size: int = 128) -> KerasLaplace:
    """Laplace with the full curvature of the last ``Dense`` layer (kernel and bias); the rest fixed.

    With features ``phi_n`` (the layer's input, plus a constant 1 for the bias) the GGN of the
    layer's parameters ``vec([W; b])`` is ``sum_n (phi_n phi_n^T) kron Lambda_n`` with ``Lambda_n``
    the output-space curvature (see :func:`diagonal_laplace`); it is accumulated as ``G^T G`` with
    ``G`` the per-example Jacobians scaled by ``Lambda_n``'s factor. Size ``(D + 1) C`` squared.

    A functional or Sequential model gives ``phi_n`` from its layer graph (and must have ``layer``
    produce its output). A subclassed model has no graph: ``G`` then comes from per-example
    Jacobians of the outputs with respect to ``[kernel, bias]`` (the same numbers for the layer
    that makes the outputs; memory ``batch x outputs x (D + 1) C``, as ``G`` itself).

    Args:
        model: a built ``keras.Model`` (functional, Sequential or subclassed with a ``call``) whose
            output is produced by ``layer``.
        data, prior_precision, likelihood, noise_scale, hessian, batch_size: as in
            :func:`diagonal_laplace`.
        layer: the ``Dense`` layer (or its name); default the model's last top-level Dense layer
            (for a subclassed model: the last one assigned as an attribute; pass it to be sure).

    Returns:
        A :class:`KerasLaplace` with a full precision over ``[kernel, bias]``.
    """
    import keras
    import tensorflow as tf

    _check_model(model)
    lik = Likelihood.make(likelihood, noise_scale)
    lam = positive_number(prior_precision, "prior_precision")
    curvature = _curvature_name(hessian)
    batch_size = positive_int(batch_size, "batch_size")
    layer = _last_dense(model, layer)
    variables = [layer.kernel] + ([layer.bias] if layer.use_bias else [])
    indices = _variable_indices(model, variables)
    D, C = (int(d) for d in layer.kernel.shape)
    P = (D + (1 if layer.use_bias else 0)) * C
    feature_model, has_graph = None, True
    try:
        layer_input, layer_output = layer.input, layer.output
        model_inputs, model_outputs = model.inputs, model.outputs
        if not model_inputs or not model_outputs:
            raise ValueError("no symbolic inputs / outputs")
    except (AttributeError, ValueError):
        has_graph = False  # a subclassed model (no layer graph): per-example Jacobians below
    if has_graph:
        if len(model_outputs) != 1 or layer_output is not model_outputs[0]:
            raise InvalidOptionError(f"layer {layer.name!r} does not produce the output of model {model.name!r}; "
                                     "the last-layer Laplace needs the Dense layer whose output is the model's")
        single_input = len(model_inputs) == 1
        if not (single_input and layer_input is model_inputs[0]):
            feature_model = keras.Model(model_inputs[0] if single_input else model_inputs, layer_input)

    @tf.function(reduce_retracing=True)
    def batch_terms(x, y):
        phi = x if feature_model is None else feature_model(x, training=False)
        phi = tf.cast(tf.reshape(phi, [tf.shape(phi)[0], D]), tf.float64)
        f = tf.cast(model(x, training=False), tf.float64)
        if layer.use_bias:
            phi = tf.concat([phi, tf.ones_like(phi[:, :1])], axis=1)
        B = lik.curvature_factor(y, f, curvature)  # [n, C, M]
        G = tf.einsum("ni,nkm->mnik", phi, B)  # per-example Jacobian rows scaled by Lambda's factor
        G = tf.reshape(G, [-1, P])
        return tf.matmul(G, G, transpose_a=True), tf.reduce_sum(lik.nll(y, f))

    @tf.function(reduce_retracing=True)
    def batch_terms_jacobian(x, y):
        # No graph to read the layer's input from: differentiate the outputs [n, K] with respect to
        # [kernel, bias] instead. For the layer that makes the outputs, J[n, k, (i, c)] is
        # phi[n, i] delta_kc exactly, so G equals the feature construction's; for any other
        # placement it is still the exact GGN of these weights with the rest held fixed.
        with tf.GradientTape() as tape:
            out = model(x, training=False)
        K = int(out.shape[-1])
        jac = tape.jacobian(out, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO,
                            experimental_use_pfor=True)  # [n, K, *variable shape] each
        n = tf.shape(out)[0]
        J = tf.concat([tf.reshape(tf.cast(j, tf.float64), [n, K, -1]) for j in jac], axis=-1)  # [n, K, P]
        f = tf.cast(out, tf.float64)
        B = lik.curvature_factor(y, f, curvature)  # [n, K, M]
        G = tf.reshape(tf.einsum("nkp,nkm->mnp", J, B), [-1, P])
        return tf.matmul(G, G, transpose_a=True), tf.reduce_sum(lik.nll(y, f))

    terms = batch_terms if has_graph else batch_terms_jacobian
    H = np.zeros((P, P))
    nll = 0.0
    seen = 0
    for x, y in _batches(data, batch_size):
        x = tf.convert_to_tensor(x)
        h, batch_nll = terms(x, tf.convert_to_tensor(y))
        H += h.numpy()
        nll += float(batch_nll)
        seen += int(x.shape[0])
    if seen == 0:
        raise ShapeError("the data has no examples")
    if not has_graph and not H.any():
        raise InvalidOptionError(f"the outputs of model {model.name!r} do not depend on layer {layer.name!r}; "
                                 "pass the Dense layer that produces the logits / means as layer=")
    return KerasLaplace(theta_map=[np.asarray(v) for v in variables], curvature=H, nll=nll,
                        prior_precision=lam, likelihood=lik, variable_indices=indices,
                        variable_paths=[v.path for v in variables], kind="last_layer")

