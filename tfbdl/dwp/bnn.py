"""Bayesian convolutional networks with a fully factorised Gaussian posterior (the DWP paper's BNNs).

Follows ``models/bayes.py``, ``models/lenet.py``, ``train-bnn.py`` and ``utils.py`` of
``SamsungLabs/deep-weight-prior``:

- :class:`BayesConv2D` / :class:`BayesDense`: posterior ``q(W) = prod N(mu, sigma^2)`` over the
  kernel, with a point-estimated bias (the reference's ``BayesConv2d`` is a mean convolution
  with bias plus a bias-free variance convolution). The variance is parameterised by
  ``log sigma^2`` (the reference's ``LogScaleConv2d`` holds ``log sigma^2`` and applies ``exp``),
  initialised to ``-10`` (``--logvarinit``). With ``variance="alpha"`` the layer is instead the
  reference's ``MuTruncAlphaFFGConv2d`` (``--net_cfg bayes-mtrunca``, the one its log-uniform
  prior runs on): ``sigma^2 = alpha * mu^2`` with ``alpha = sigmoid(logit) <= 1``, the logit
  initialised to ``-2``, so the log-uniform KL (a function of ``alpha`` only) never pulls the
  means to zero. In training the output is sampled by the local
  reparameterisation trick: ``mean = conv(x, mu) + b``, ``var = conv(x^2, sigma^2)``,
  ``out = mean + sqrt(var + 1e-12) * eps`` (``sampling="local"``); ``sampling="weights"``
  draws one kernel ``W ~ q`` per call instead. In inference (``training=False``) the layer uses
  the posterior mean (the reference's ``'det'`` mode) unless its ``inference`` is ``"sample"``.
  ``layer.kernel_posterior()`` is ``q(W)`` as a ``tfd.Independent(tfd.Normal)``;
  ``layer.kl(seed)`` is the layer's prior term, ``prior.kl(mu, log_sigma, seed)`` (see
  :mod:`tfbdl.dwp.priors`); weight draws for a Monte Carlo prior term are independent of the
  forward pass's noise, as in the reference.
- :func:`bayesian_fconv`: the Bayesian :func:`tfbdl.nn.fconv` (``FConvMNIST('bayes')``):
  Bayesian ``conv1`` (7x7) and ``conv2`` (5x5), LeakyReLU(0.01), max-pools, and a dense
  ``logits`` layer that is a plain point-estimated ``Dense`` as in the reference unless a prior
  is given for it.
- :func:`elbo_loss`: ``mean NLL + kl_weight * sum KL / num_train``, the reference's
  ``N / b * sum NLL + KL`` divided by ``N``.
- :func:`fit_bnn`: Adam (:func:`reference_adam`: epsilon scaled as the reference's) on that loss with :class:`tfbdl.train.Trainer` (per-epoch resumable
  checkpoints). The trainer takes a per-example loss callable but does not collect
  ``model.losses``, so the KL enters through the loss: each example's loss is its NLL plus
  ``kl_weight * KL / num_train``, whose batch mean is the ELBO loss (also under micro-batches
  and replicas). The layers' noise and KL draws come from Keras seed generators held in the
  model's variables, so a resumed run repeats an uninterrupted one.
- :func:`predict_bnn_proba`: softmax averaged over posterior samples.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfbdl.dwp.bound import check_vae, draw_seed, split_seed
from tfbdl.dwp.priors import DeepWeightPrior, StandardNormalPrior, kernel_from_slices_tensor
from tfbdl.dwp.fitting import KLLog
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.nn import common as c
from tfbdl.nn.fconv import check_fconv_shapes
from tfbdl.nn.initializers import SeedStream, glorot_normal, he_normal_fan_in, torch_bias
from tfbdl.seeding import derive_seed
from tfbdl.validate import integer, positive_int, positive_number

tfd = tfp.distributions

__all__ = [
    "BayesConv2D",
    "BayesDense",
    "bayes_layers",
    "bayesian_fconv",
    "elbo_loss",
    "fit_bnn",
    "kl_total",
    "posterior_sampling",
    "predict_bnn_proba",
    "reference_adam",
]

_VAR_EPS = 1e-12  # added to the output variance before the square root (the reference's eps)
_LEAKY_SLOPE = 0.01
_SAMPLINGS = ("local", "weights")
_INFERENCES = ("mean", "sample")
_INITS = ("xavier", "he", "dwp")
_VARIANCES = ("log_sigma2", "alpha")
_MU2_EPS = 1e-16  # floor of mu^2 (and sigma^2) inside logarithms


# --------------------------------------------------------------------------- layers


class _BayesLayer(keras.layers.Layer):
    """Shared parts of the Bayesian layers: prior, log-variance, sampling modes, seeds."""

    def __init__(self, prior=None, *, use_bias=True, kernel_initializer="glorot_normal",
                 bias_initializer="zeros", log_sigma2_init=-10.0, sampling="local", inference="mean",
                 variance="log_sigma2", alpha_logit_init=-2.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if prior is not None and not callable(getattr(prior, "kl", None)):
            raise InvalidOptionError(f"prior must have kl(mu, log_sigma, seed), got {prior!r}")
        if sampling not in _SAMPLINGS:
            raise InvalidOptionError(f"sampling must be one of {_SAMPLINGS}, got {sampling!r}")
        if inference not in _INFERENCES:
            raise InvalidOptionError(f"inference must be one of {_INFERENCES}, got {inference!r}")
        if isinstance(log_sigma2_init, bool) or not isinstance(log_sigma2_init, numbers.Real) \
                or not math.isfinite(log_sigma2_init):
            raise InvalidOptionError(f"log_sigma2_init must be a finite number, got {log_sigma2_init!r}")
        if variance not in _VARIANCES:
            raise InvalidOptionError(f"variance must be one of {_VARIANCES}, got {variance!r}")
        if isinstance(alpha_logit_init, bool) or not isinstance(alpha_logit_init, numbers.Real) \
                or not math.isfinite(alpha_logit_init):
            raise InvalidOptionError(f"alpha_logit_init must be a finite number, got {alpha_logit_init!r}")
        self.prior = prior
        self.variance = variance
        self.alpha_logit_init = float(alpha_logit_init)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.log_sigma2_init = float(log_sigma2_init)
        self.sampling = sampling
        self.inference = inference
        seeds = SeedStream(seed)
        self.noise_seed = keras.random.SeedGenerator(seeds(), name="noise_seed")
        self.kl_seed = keras.random.SeedGenerator(seeds(), name="kl_seed")

    def _add_params(self, kernel_shape, out_dim) -> None:
        self.kernel_mu = self.add_weight(shape=kernel_shape, initializer=self.kernel_initializer,
                                         name="kernel_mu")
        if self.variance == "alpha":
            self.kernel_alpha_logit = self.add_weight(
                shape=kernel_shape, initializer=keras.initializers.Constant(self.alpha_logit_init),
                name="kernel_alpha_logit")
        else:
            self.kernel_log_sigma2 = self.add_weight(
                shape=kernel_shape, initializer=keras.initializers.Constant(self.log_sigma2_init),
                name="kernel_log_sigma2")
        self.bias = (self.add_weight(shape=(out_dim,), initializer=self.bias_initializer, name="bias")
                     if self.use_bias else None)

    def _op(self, x, kernel):
        raise NotImplementedError

    @property
    def kernel_log_alpha(self) -> tf.Tensor:
        """``log alpha = log sigma^2 - log mu^2`` (kernel shape); in ``variance="alpha"`` mode the
        parameter itself, ``log sigmoid(logit)``, so it never depends on the means."""
        if self.variance == "alpha":
            return tf.math.log_sigmoid(tf.convert_to_tensor(self.kernel_alpha_logit))
        mu = tf.convert_to_tensor(self.kernel_mu)
        return tf.convert_to_tensor(self.kernel_log_sigma2) - tf.math.log(tf.square(mu) + _MU2_EPS)

    @property
    def kernel_sigma2(self) -> tf.Tensor:
        """The posterior variances ``sigma^2`` (kernel shape)."""
        if self.variance == "alpha":
            mu = tf.convert_to_tensor(self.kernel_mu)
            return tf.sigmoid(tf.convert_to_tensor(self.kernel_alpha_logit)) * tf.square(mu)
        return tf.exp(tf.convert_to_tensor(self.kernel_log_sigma2))

    @property
    def kernel_log_sigma(self) -> tf.Tensor:
        """``log sigma = 0.5 * log sigma^2`` (kernel shape)."""
        if self.variance == "alpha":
            return 0.5 * tf.math.log(self.kernel_sigma2 + _MU2_EPS)
        return 0.5 * tf.convert_to_tensor(self.kernel_log_sigma2)

    def kernel_posterior(self) -> tfd.Distribution:
        """The posterior over the kernel, ``q(W) = prod N(mu, sigma^2)``, as a TFP distribution:
        ``tfd.Independent(tfd.Normal(kernel_mu, sqrt(kernel_sigma2)))`` whose event shape is the
        kernel's (both variance parameterisations). Built from the current parameter values (and
        differentiable in them under a tape); call it again after they change."""
        if not self.built:
            raise InvalidOptionError(f"{self.name} has no kernel yet: call the layer on an input (or build it) first")
        mu = tf.convert_to_tensor(self.kernel_mu)
        return tfd.Independent(tfd.Normal(loc=mu, scale=tf.sqrt(self.kernel_sigma2)),
                               reinterpreted_batch_ndims=mu.shape.rank)

    def kl(self, seed=None) -> tf.Tensor:
        """The prior term (0 without a prior): ``prior.kl_log_alpha(log alpha)`` for a prior that
        depends on ``alpha`` only (the log-uniform priors) on a ``variance="alpha"`` layer, else
        ``prior.kl(mu, log_sigma, seed)``; ``seed`` None uses the layer's own KL seed generator."""
        if self.prior is None:
            return tf.zeros([], self.compute_dtype)
        if self.variance == "alpha" and callable(getattr(self.prior, "kl_log_alpha", None)):
            return self.prior.kl_log_alpha(self.kernel_log_alpha)
        return self.prior.kl(tf.convert_to_tensor(self.kernel_mu), self.kernel_log_sigma,
                             self.kl_seed if seed is None else seed)

    def call(self, inputs, training=None):
        x = tf.cast(inputs, self.compute_dtype)
        mu = tf.convert_to_tensor(self.kernel_mu)
        stochastic = bool(training) or self.inference == "sample"
        if not stochastic:
            out = self._op(x, mu)
        elif self.sampling == "weights":
            eps = tf.random.stateless_normal(tf.shape(mu), draw_seed(self.noise_seed), dtype=mu.dtype)
            out = self._op(x, mu + tf.sqrt(self.kernel_sigma2) * eps)
        else:
            mean = self._op(x, mu)
            var = self._op(tf.square(x), self.kernel_sigma2)
            eps = tf.random.stateless_normal(tf.shape(mean), draw_seed(self.noise_seed), dtype=mean.dtype)
            out = mean + tf.sqrt(var + _VAR_EPS) * eps
        if self.bias is not None:
            out = out + tf.convert_to_tensor(self.bias)
        return out

    def get_config(self) -> dict:
        """The layer's options; the prior is a Python object and is not serialised."""
        config = super().get_config()
        config.update({
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "log_sigma2_init": self.log_sigma2_init, "sampling": self.sampling, "inference": self.inference,
            "variance": self.variance, "alpha_logit_init": self.alpha_logit_init,
        })
        return config


class BayesConv2D(_BayesLayer):
    """A 2-D convolution with a factorised Gaussian posterior over its kernel ``[k, k, in, out]``.

    Inputs ``[batch, H, W, in]`` (NHWC) -> outputs ``[batch, H', W', filters]``. ``padding`` is
    ``"valid"`` or ``"same"``. See the module docstring for the sampling and inference modes.
    """

    def __init__(self, filters: int, kernel_size: int, prior=None, *, strides: int = 1, padding: str = "valid",
                 **kwargs):
        super().__init__(prior, **kwargs)
        self.filters = positive_int(filters, "filters")
        self.kernel_size = positive_int(kernel_size, "kernel_size")
        self.strides = positive_int(strides, "strides")
        if padding not in ("valid", "same"):
            raise InvalidOptionError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding

    def build(self, input_shape) -> None:
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ShapeError(f"{self.name} takes NHWC images with a known channel count, got {input_shape}")
        k = self.kernel_size
        self._add_params((k, k, int(input_shape[-1]), self.filters), self.filters)

    def _op(self, x, kernel):
        return tf.nn.conv2d(x, kernel, strides=self.strides, padding=self.padding.upper())

    def compute_output_shape(self, input_shape):
        def size(n):
            if n is None:
                return None
            if self.padding == "same":
                return -(-n // self.strides)
            return (n - self.kernel_size) // self.strides + 1
        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), self.filters)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                       "padding": self.padding})
        return config


class BayesDense(_BayesLayer):
    """A dense layer ``[batch, in] -> [batch, units]`` with a factorised Gaussian posterior over its
    kernel ``[in, units]`` (local reparameterisation: mean ``x mu``, variance ``x^2 sigma^2``)."""

    def __init__(self, units: int, prior=None, **kwargs):
        super().__init__(prior, **kwargs)
        self.units = positive_int(units, "units")

    def build(self, input_shape) -> None:
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ShapeError(f"{self.name} takes [batch, features] with known features, got {input_shape}")
        self._add_params((int(input_shape[-1]), self.units), self.units)

    def _op(self, x, kernel):
        return tf.matmul(x, kernel)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self) -> dict:
        config = super().get_config()
        config["units"] = self.units
        return config


# --------------------------------------------------------------------------- model-level helpers


def bayes_layers(model) -> list[_BayesLayer]:
    """The Bayesian layers of a Keras model (nested models included), in layer order."""
    found: list[_BayesLayer] = []

    def visit(layer):
        if isinstance(layer, _BayesLayer):
            found.append(layer)
        for sub in getattr(layer, "layers", None) or []:
            visit(sub)

    if isinstance(model, (list, tuple)):
        for layer in model:
            visit(layer)
    else:
        for layer in getattr(model, "layers", None) or [model]:
            visit(layer)
    return found


def kl_total(model, seed=None) -> tf.Tensor:
    """Sum of the Bayesian layers' prior terms (scalar). ``seed`` None: each layer's own KL seed
    generator (advancing it); otherwise one stateless seed per layer derived from ``seed``."""
    layers = bayes_layers(model)
    if not layers:
        raise InvalidOptionError("the model has no Bayesian layers (BayesConv2D / BayesDense)")
    seeds = None if seed is None else split_seed(draw_seed(seed), len(layers))
    terms = [layer.kl(None if seeds is None else seeds[i]) for i, layer in enumerate(layers)]
    return tf.add_n([tf.cast(t, tf.float32) for t in terms])


@contextlib.contextmanager
def posterior_sampling(model, sample: bool = True):
    """Within the block, inference calls (``training=False``) of every Bayesian layer sample from
    the posterior (``sample=True``) or use its mean; each layer's setting is restored after."""
    layers = bayes_layers(model)
    saved = [layer.inference for layer in layers]
    for layer in layers:
        layer.inference = "sample" if sample else "mean"
    try:
        yield layers
    finally:
        for layer, mode in zip(layers, saved):
            layer.inference = mode


@contextlib.contextmanager
def _reseeded(layers, seed: int):
    """Set the layers' seed generators from ``seed`` within the block; restore them after."""
    gens = [g for layer in layers for g in (layer.noise_seed, layer.kl_seed)]
    saved = [g.state.numpy() for g in gens]
    for i, g in enumerate(gens):
        g.state.assign(np.array([derive_seed(seed, i), 0], dtype=saved[i].dtype))
    try:
        yield
    finally:
        for g, value in zip(gens, saved):
            g.state.assign(value)


def _labels_nll(y, logits) -> tf.Tensor:
    logits = tf.cast(logits, tf.float32)
    labels = tf.reshape(tf.cast(y, tf.int64), tf.shape(logits)[:-1])
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def _check_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ShapeError(f"x must hold examples along axis 0, got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ShapeError(f"y must be integer labels [N] for x {x.shape}, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InvalidOptionError(f"y must hold integer class labels, got dtype {y.dtype}")
    return x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


def elbo_loss(model, x, y, num_train: int, *, seed: int | None = None, training: bool = True,
              kl_weight: float = 1.0) -> tf.Tensor:
    """The negative ELBO per training example: ``mean_i NLL(y_i, f(x_i)) + kl_weight * KL / num_train``.

    Args:
        model: a network with Bayesian layers (logits out).
        x, y: a batch ``[b, ...]`` and integer labels ``[b]``.
        num_train: ``N``, the size of the training set.
        seed: None draws from the layers' own generators (advancing them); an int gives the same
            value every call and leaves the generators as they were.
        training: sample the outputs (True) or use the posterior mean in the NLL.

    Returns:
        A scalar float32 tensor (differentiable in the model's variables).
    """
    num_train = integer(num_train, "num_train", 1)
    kl_weight = float(kl_weight)
    layers = bayes_layers(model)
    with (_reseeded(layers, integer(seed, "seed", 0)) if seed is not None else contextlib.nullcontext()):
        nll = tf.reduce_mean(_labels_nll(y, model(x, training=training)))
        kl = kl_total(layers, seed)
    return nll + kl_weight * kl / num_train


def reference_adam(learning_rate: float, num_train: int):
    """Adam whose steps on :func:`elbo_loss` match the reference's torch Adam (``eps = 1e-8``) on its
    ``N`` times larger loss: the gradients here are ``1/N`` of the reference's, so epsilon is
    ``1e-8 / N`` (Keras's default 1e-7 would be ``10 N`` times the reference's, relative to the
    gradients). Keras adds epsilon before Adam's second-moment bias correction and torch after it,
    so the two agree once ``1 - beta_2^t`` is near 1 (after a few thousand steps) and, before, differ
    only where gradients are of epsilon's size."""
    return keras.optimizers.Adam(positive_number(learning_rate, "learning_rate"),
                                 epsilon=1e-8 / integer(num_train, "num_train", 1))


def fit_bnn(model, x, y, *, epochs: int, batch_size: int, learning_rate: float = 1e-3, seed: int,
            run_dir=None, lr_schedule=None, kl_weight: float = 1.0, name: str = "bnn",
            verbose: bool = False) -> list[dict]:
    """Fit the variational posterior by minimising :func:`elbo_loss` with Adam.

    Args:
        model: a built model with Bayesian layers (e.g. :func:`bayesian_fconv`), trained in place.
        x, y: training inputs ``[N, ...]`` and integer labels ``[N]``; ``N`` is the ELBO's ``num_train``.
        epochs: total epochs (a resumed run trains only the missing ones).
        batch_size: examples per step (the reference's ``--bs``, 256 by default there).
        learning_rate: Adam's learning rate (reference 1e-3), used when ``lr_schedule`` is None.
        seed: fixes the data order of every epoch (the model's noise comes from its own seeds).
        run_dir: a :class:`tfbdl.io.RunDir`; each finished epoch is checkpointed under
            ``checkpoints/<name>/`` and logged to ``metrics.csv``, and a rerun resumes.
        lr_schedule: ``epoch -> learning rate`` (e.g. the reference's linear decay).
        kl_weight: multiplies the KL term (1 is the ELBO).

    Returns:
        One row per epoch: ``epoch``, ``lr``, ``train_loss`` (the ELBO loss averaged over the
        epoch's batches, per example), ``train_accuracy``, ``seconds`` and ``kl`` (the summed KL
        term at the epoch's end).
    """
    from tfbdl.train.loop import Trainer

    x, y = _check_xy(x, y)
    seed = integer(seed, "seed", 0)
    epochs = integer(epochs, "epochs", 1)
    batch_size = integer(batch_size, "batch_size", 1)
    learning_rate = positive_number(learning_rate, "learning_rate")
    kl_weight = float(kl_weight)
    if not math.isfinite(kl_weight) or kl_weight < 0:
        raise InvalidOptionError(f"kl_weight must be a finite number >= 0, got {kl_weight!r}")
    layers = bayes_layers(model)
    if not layers:
        raise InvalidOptionError("fit_bnn needs a model with Bayesian layers (BayesConv2D / BayesDense)")
    num_train = x.shape[0]

    def per_example_loss(labels, logits):
        nll = _labels_nll(labels, logits)
        return nll + tf.cast(kl_weight * kl_total(layers) / num_train, nll.dtype)

    trainer = Trainer(model, lambda: reference_adam(learning_rate, num_train), loss=per_example_loss)
    schedule = learning_rate if lr_schedule is None else lr_schedule
    return trainer.fit((x, y), epochs, run_dir=run_dir, lr_schedule=schedule, seed=seed,
                       batch_size=batch_size, callbacks=[KLLog(layers, seed)], name=name, verbose=verbose)


def predict_bnn_proba(model, x, num_samples: int = 10, seed: int = 0, *, batch_size: int = 256) -> np.ndarray:
    """Posterior predictive probabilities ``[N, K]``: softmax averaged over ``num_samples`` posterior
    samples (local reparameterisation or weight draws, per layer) for inputs ``x [N, ...]``.

    Deterministic given ``seed``; the layers' own generators are left as they were.
    ``num_samples=0`` uses the posterior mean network instead.
    """
    num_samples = integer(num_samples, "num_samples", 0)
    batch_size = integer(batch_size, "batch_size", 1)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ShapeError(f"x must hold examples along axis 0, got shape {x.shape}")
    layers = bayes_layers(model)
    with _reseeded(layers, integer(seed, "seed", 0)), posterior_sampling(model, num_samples > 0):
        step = tf.function(lambda xb: tf.nn.softmax(tf.cast(model(xb, training=False), tf.float32), axis=-1),
                           reduce_retracing=True)
        out = []
        for start in range(0, x.shape[0], batch_size):
            xb = tf.constant(x[start:start + batch_size])
            probs = [step(xb).numpy().astype(np.float64) for _ in range(max(num_samples, 1))]
            out.append(np.mean(probs, axis=0))
    return np.concatenate(out, axis=0)


# --------------------------------------------------------------------------- the Bayesian fconv


def _dwp_kernel(vae, kernel_size: int, in_channels: int, out_channels: int, seed) -> np.ndarray:
    """``[k, k, in, out]`` whose slices are decoder means at ``z ~ N(0, I)`` (the reference's
    ``init == 'vae'``: ``w = vae.decode(z)[0]``)."""
    latent = int(vae.latent)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((in_channels * out_channels, latent)).astype(np.float32)
    w_mu = tf.cast(tf.convert_to_tensor(vae.decode(tf.constant(z))[0]), tf.float32)
    w_mu = tf.reshape(w_mu, [-1, kernel_size, kernel_size])
    return kernel_from_slices_tensor(w_mu, in_channels, out_channels).numpy()


def _init_vae(name: str, kernel_size: int, vaes, prior):
    if vaes is not None and kernel_size in vaes:
        vae = vaes[kernel_size]
    elif isinstance(prior, DeepWeightPrior) and kernel_size in prior.vaes:
        vae = prior.vaes[kernel_size]
    else:
        raise InvalidOptionError(f"init='dwp' needs a {kernel_size}x{kernel_size} kernel VAE for {name}: "
                                 "pass vaes={kernel_size: vae} or a DeepWeightPrior for that layer")
    check_vae(vae, kernel_size)
    return vae


def bayesian_fconv(num_classes: int = 10, input_shape=(28, 28, 1), *, widths=(32, 64), priors=None,
                   init: str = "xavier", vaes=None, log_sigma2_init: float = -10.0, sampling: str = "local",
                   variance: str = "log_sigma2", alpha_logit_init: float = -2.0, seed: int | None = None,
                   name: str = "bayesian_fconv") -> keras.Model:
    """The deep weight prior paper's Bayesian network (``FConvMNIST('bayes')``).

    ``conv1`` 7x7 (``widths[0]``) and ``conv2`` 5x5 (``widths[1]``) are :class:`BayesConv2D`
    layers, each followed by LeakyReLU(0.01) and a 2x2 max-pool; ``logits`` is a dense layer on
    the flattened map.

    Args:
        num_classes, input_shape, widths: as :func:`tfbdl.nn.fconv`.
        priors: ``{layer name: prior}`` for ``"conv1"``, ``"conv2"`` and optionally ``"logits"``; a
            conv layer without an entry gets :class:`StandardNormalPrior` (the reference's ``sn``);
            ``logits`` is a point-estimated ``Dense`` (as the reference) unless it has a prior,
            then a :class:`BayesDense`.
        init: posterior means of the kernels: ``"xavier"`` (untruncated Xavier normal, the
            reference), ``"he"`` (untruncated He normal, fan-in), or ``"dwp"`` (conv1/conv2 slices
            are decoder means at ``z ~ N(0, I)`` of the kernel VAEs; the dense layer Xavier).
        vaes: ``{kernel_size: vae}`` for ``init="dwp"``; defaults to the conv layers'
            :class:`DeepWeightPrior` VAEs.
        log_sigma2_init: initial ``log sigma^2`` of every kernel entry (reference ``-10``).
        sampling: ``"local"`` or ``"weights"`` for both conv layers (and a Bayesian ``logits``).
        variance: ``"log_sigma2"`` (the reference's ``bayes`` net) or ``"alpha"`` (its
            ``bayes-mtrunca`` net, ``sigma^2 = sigmoid(logit) * mu^2``, logits from ``alpha_logit_init``).
        seed: seeds every initialiser and every layer's noise.

    Returns:
        A built ``keras.Model``: ``float32 [batch, H, W, C] -> logits [batch, num_classes]``.
    """
    num_classes = positive_int(num_classes, "num_classes")
    channels, widths = check_fconv_shapes(input_shape, widths, "bayesian_fconv")
    priors = dict(priors or {})
    unknown = set(priors) - {"conv1", "conv2", "logits"}
    if unknown:
        raise InvalidOptionError(f"priors for unknown layers {sorted(unknown)}; use conv1, conv2, logits")
    if init not in _INITS:
        raise InvalidOptionError(f"init must be one of {_INITS}, got {init!r}")
    if vaes is not None and not isinstance(vaes, dict):
        raise InvalidOptionError("vaes must be a dict {kernel_size: vae}")
    seeds = SeedStream(seed)
    initializer = he_normal_fan_in if init == "he" else glorot_normal

    inputs = c.image_input(input_shape)
    x = inputs
    in_channels = channels
    dwp_kernels = {}
    for i, (width, k) in enumerate(zip(widths, (7, 5)), start=1):
        lname = f"conv{i}"
        prior = priors.get(lname, StandardNormalPrior())
        kernel_seed, bias_seed, layer_seed = seeds(), seeds(), seeds()
        layer = BayesConv2D(width, k, prior, kernel_initializer=initializer(kernel_seed),
                            bias_initializer=torch_bias(in_channels * k * k, bias_seed),
                            log_sigma2_init=log_sigma2_init, sampling=sampling, variance=variance,
                            alpha_logit_init=alpha_logit_init, seed=layer_seed, name=lname)
        if init == "dwp":
            vae = _init_vae(lname, k, vaes, prior)
            dwp_kernels[lname] = _dwp_kernel(vae, k, in_channels, width, kernel_seed)
        x = layer(x)
        x = keras.layers.LeakyReLU(negative_slope=_LEAKY_SLOPE, name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f"pool{i}")(x)
        in_channels = width
    x = keras.layers.Flatten(name="flatten")(x)
    fan_in = int(x.shape[-1])
    kernel_seed, bias_seed, layer_seed = seeds(), seeds(), seeds()
    if "logits" in priors:
        dense = BayesDense(num_classes, priors["logits"], kernel_initializer=glorot_normal(kernel_seed),
                           bias_initializer=torch_bias(fan_in, bias_seed), log_sigma2_init=log_sigma2_init,
                           sampling=sampling, variance=variance, alpha_logit_init=alpha_logit_init,
                           seed=layer_seed, name="logits")
    else:
        dense = keras.layers.Dense(num_classes, kernel_initializer=glorot_normal(kernel_seed),
                                   bias_initializer=torch_bias(fan_in, bias_seed), name="logits")
    outputs = dense(x)
    model = keras.Model(inputs, outputs, name=name)
    for lname, kernel in dwp_kernels.items():
        model.get_layer(lname).kernel_mu.assign(kernel)
    return model
