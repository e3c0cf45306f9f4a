"""The empirical NTK of a Keras 3 model as a ``gpflow.kernels.Kernel``.

:class:`EmpiricalNTKKernel` wraps a built Keras model ``f(x; θ)`` and returns

    ``K(x, x') = variance * Θ(x, x')``,   ``Θ(x, x') = Σ_k J_k(x) J_k(x')ᵀ``  (``output="trace"``)

or the NTK of one output ``k`` (``output=k``), exactly the matrix :func:`tfbdl.ntk.empirical.
compute_ntk` gives for the same model, inputs, dtype and output (same conventions: standard
parameterisation, inference mode, every trainable variable differentiated). ``variance`` is a
positive ``gpflow.Parameter`` (default 1) so a GP can fit the kernel's scale; the network's weights
are *not* GPflow parameters: the kernel is a fixed function of its inputs given the model.

Weights: the kernel **follows the model**. Every evaluation reads the model's current variables
(trainable ones and the non-trainable state such as batch-norm statistics), also inside a
``tf.function``: there the variables are read by graph ops at every run, never captured as
constants, so a compiled GPflow loss sees the weights a later ``model.fit`` leaves. There is no
snapshot to refresh; to freeze the kernel at some weights, pass a copy of the model
(``keras.models.clone_model`` + ``set_weights``).

How it is computed: with the machinery of :mod:`tfbdl.ntk.empirical`. The kernel asks
:func:`~tfbdl.ntk.empirical.model_function` for the model's :class:`~tfbdl.ntk.empirical.
ModelFunction` (the model as ``f(θ, state, x)``, run by ``stateless_call`` on a float64 twin when
``dtype="float64"``) and uses the compiled per-block functions of one of its feature strategies
(``"vmap_jacobian"``, the default, or ``"jacobian"``): ``features(θ, state, x)`` (the block's
Jacobians) and ``pair(fa, fb)`` (their contraction). Those are ``tf.function`` s taking the
parameters as explicit tensors, so the kernel feeds them tensors read from the variables in the
caller's context: eagerly they are the current values, in a GPflow ``tf.function`` (e.g.
``gpflow.optimizers.Scipy().minimize(..., compile=True)``, the default) they are graph reads and the
nested functions are traced into the caller's graph. Gradients reach the inputs (so SVGP can
train inducing points ``Z``: a second-order derivative of the network), never the weights (they
enter through ``tf.stop_gradient``).

Inputs: GPflow passes ``[N, D]``; each row is reshaped to the model's input shape
(``D = prod(input_shape)``; an image model takes its images flattened in C order, the layout of
``x.reshape(n, -1)``). The shape comes from the model's declared input, or from ``input_shape=``
for a subclassed model without one. Inputs are cast to the working ``dtype`` and the kernel is
returned in the inputs' floating dtype (float64 under GPflow's default).

Cost and memory: ``K(X, X2)`` computes the Jacobians of all of ``X`` and of ``X2`` at once
(``N * K * P`` numbers for ``P`` parameters and ``K`` differentiated outputs), with no blocking;
``K_diag(X)`` needs the Jacobians of ``X`` only (their squared norms, ``O(N)`` pairs). That suits
GPs of up to a few thousand points on small networks; for a large ``N``, precompute the matrix
with :func:`~tfbdl.ntk.empirical.compute_ntk` (block-wise, resumable) and use a precomputed-kernel
GP instead.

``K(X)`` is symmetrised as ``(Θ + Θᵀ) / 2`` (exactly symmetric; it differs from the raw contraction
by rounding only).
"""

from __future__ import annotations

from typing import Any

import gpflow
import keras
import numpy as np
import tensorflow as tf
from check_shapes import inherit_check_shapes
from gpflow.utilities import positive

from tfbdl import validate
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.ntk.empirical import ModelFunction, model_function

__all__ = ["EmpiricalNTKKernel", "KERNEL_STRATEGIES"]

#: Strategies of :mod:`tfbdl.ntk.empirical` the kernel can use: those computing per-input-block
#: features (``ntk_vector`` has none; its blocks are built column chunk by column chunk in Python).
KERNEL_STRATEGIES = ("vmap_jacobian", "jacobian")


class EmpiricalNTKKernel(gpflow.kernels.Kernel):
    """``variance * Θ(x, x')``: the empirical NTK of ``model`` at its current weights.

    Args:
        model: a built Keras 3 model with one input and outputs ``[batch, K]``.
        output: ``"trace"`` (``Σ_k Θ_kk``, the default) or an output index ``k`` (the NTK of output
            ``k`` alone). ``"full"`` is refused: a ``[N K, N K]`` multi-output kernel is not a
            single-output GPflow kernel.
        dtype: ``"float64"`` (the default, GPflow's precision; runs a float64 copy of the model,
            see :func:`tfbdl.ntk.empirical.cast_model`) or ``"float32"`` (the model as built).
        strategy: ``"vmap_jacobian"`` (default) or ``"jacobian"`` (:data:`KERNEL_STRATEGIES`).
        variance: initial value of the positive, trainable ``variance`` parameter.
        input_shape: one input's shape without the batch axis; needed only when the model does
            not declare it (a subclassed model), and checked against it otherwise.
        active_dims, name: as for every GPflow kernel.

    Raises:
        InvalidOptionError: a bad option, an unbuilt model or one without trainable parameters.
        ShapeError: a model whose output is not ``[batch, K]``, or an input shape that does not fit.
    """

    def __init__(self, model: keras.Model, output: str | int = "trace", *, dtype: str = "float64",
                 strategy: str = "vmap_jacobian", variance: float = 1.0, input_shape=None,
                 active_dims=None, name: str | None = None):
        super().__init__(active_dims=active_dims, name=name)
        if output == "full":
            raise InvalidOptionError("output='full' gives a [N*K, N*K] multi-output kernel, which is not a "
                                     "single-output GPflow kernel; use output='trace' or an output index")
        if strategy not in KERNEL_STRATEGIES:
            raise InvalidOptionError(f"strategy must be one of {', '.join(KERNEL_STRATEGIES)}, got {strategy!r}")
        variance = validate.positive_number(variance, "variance")
        mf = model_function(model, dtype, output)
        _fix_input_shape(mf, input_shape)
        # The network lives in plain attributes that tf.Module's search skips (below), so its
        # weights never show up in the GP's (trainable_)variables or print_summary.
        self._mf = mf
        self._strategy = mf.strategy(strategy)
        self.variance = gpflow.Parameter(variance, transform=positive(), name="variance")

    # Never searched by tf.Module (variables, submodules): the network is not part of the GP's
    # parameters. (Keras 3 variables are not tf.Variables, so they would not be found today
    # anyway; this keeps it so if that changes.)
    _TF_MODULE_IGNORED_PROPERTIES = gpflow.kernels.Kernel._TF_MODULE_IGNORED_PROPERTIES | {"_mf", "_strategy"}

    # ------------------------------------------------------------------ description
    @property
    def model(self) -> keras.Model:
        """The Keras model whose NTK this is (its weights are read at every evaluation)."""
        return self._mf.model

    @property
    def output(self) -> str | int:
        """``"trace"`` or the output index."""
        return self._mf.output

    @property
    def dtype(self) -> str:
        """The working dtype of the Jacobians (``"float32"`` or ``"float64"``)."""
        return self._mf.dtype

    @property
    def strategy(self) -> str:
        """The :mod:`tfbdl.ntk.empirical` strategy computing the Jacobians and their products."""
        return self._strategy.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape (no batch axis); GPflow's ``[N, D]`` rows are reshaped to it."""
        return self._mf.input_shape

    @property
    def input_dim(self) -> int:
        """``D = prod(input_shape)``, the width of the ``[N, D]`` inputs."""
        return int(np.prod(self.input_shape))

    # ------------------------------------------------------------------ pieces
    def _weights(self) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """The model's current parameters and state, cast like ``ModelFunction.refresh`` does,
        read here (graph ops inside a tf.function) and cut off from gradients."""
        mf = self._mf
        params = [tf.stop_gradient(tf.cast(v.value, mf.dtype)) for v in mf.model.trainable_variables]
        state = [tf.stop_gradient(tf.cast(v.value, w.dtype))
                 for v, w in zip(mf.model.non_trainable_variables, mf.net.non_trainable_variables)]
        return params, state

    def _inputs(self, X) -> tf.Tensor:
        """``[N, D]`` -> ``[N, *input_shape]`` in the working dtype."""
        X = tf.convert_to_tensor(X)
        if X.shape.rank != 2 or (X.shape[-1] is not None and X.shape[-1] != self.input_dim):
            raise ShapeError(f"the NTK kernel takes inputs [N, {self.input_dim}] (one row per example, reshaped to "
                             f"the model's input shape {self.input_shape}), got shape {tuple(X.shape)}")
        if not (X.dtype.is_floating or X.dtype.is_integer):
            raise InvalidOptionError(f"the NTK kernel's inputs must hold numbers, got dtype {X.dtype.name}")
        return tf.cast(tf.reshape(X, (-1, *self.input_shape)), self._mf.dtype)

    def _features(self, X, weights):
        params, state = weights
        return self._strategy.features_at(params, state, self._inputs(X))

    def _scaled(self, values: tf.Tensor, X) -> tf.Tensor:
        """``variance * values`` in the inputs' floating dtype (GPflow's float for integer inputs)."""
        X = tf.convert_to_tensor(X)
        out = X.dtype if X.dtype.is_floating else gpflow.default_float()
        return tf.cast(values, out) * tf.cast(tf.convert_to_tensor(self.variance), out)

    # ------------------------------------------------------------------ gpflow API
    @inherit_check_shapes
    def K(self, X, X2=None) -> tf.Tensor:
        weights = self._weights()
        fa = self._features(X, weights)
        if X2 is None:
            values = self._strategy.pair(fa, fa)
            values = 0.5 * (values + tf.transpose(values))
        else:
            values = self._strategy.pair(fa, self._features(X2, weights))
        return self._scaled(values, X)

    @inherit_check_shapes
    def K_diag(self, X) -> tf.Tensor:
        fa = tf.nest.flatten(self._features(X, self._weights()))  # [n, K, *shape] per parameter, or [n, K, P]
        n = tf.shape(fa[0])[0]
        values = tf.add_n([tf.reduce_sum(tf.square(tf.reshape(f, [n, -1])), axis=1) for f in fa])
        return self._scaled(values, X)


def _fix_input_shape(mf: ModelFunction, input_shape: Any) -> None:
    """Check ``input_shape`` against the model's, or (a model without a declared input) set it."""
    if input_shape is not None:
        try:
            input_shape = tuple(int(d) for d in input_shape)
        except (TypeError, ValueError):
            raise InvalidOptionError(f"input_shape must be a tuple of sizes, got {input_shape!r}") from None
        if not input_shape or min(input_shape) < 1:
            raise InvalidOptionError(f"input_shape must be a tuple of positive sizes, got {input_shape!r}")
    if mf.input_shape is None:
        if input_shape is None:
            raise InvalidOptionError(f"model {mf.model.name!r} declares no input shape; pass input_shape=(...) "
                                     "(one example's shape, no batch axis)")
        mf.inputs(np.zeros((1, *input_shape)), "input_shape")  # fixes the shape and probes the outputs
    elif input_shape is not None and input_shape != mf.input_shape:
        raise ShapeError(f"input_shape {input_shape} differs from model {mf.model.name!r}'s input shape "
                         f"{mf.input_shape}")
