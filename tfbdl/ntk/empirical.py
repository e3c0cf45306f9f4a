"""Empirical neural tangent kernel of a Keras 3 model, computed block by block.

For a model ``f(x; θ)`` with outputs ``[N, K]`` and trainable parameters ``θ`` (every trainable
variable, ``P`` scalars in all), the empirical NTK at the *current* parameters is

    Θ(x, x')[k, l] = Σ_p ∂f_k(x)/∂θ_p · ∂f_l(x')/∂θ_p,   i.e.  J(x) J(x')ᵀ  with  J(x) [K, P].

No parameterisation factor is applied: this is the NTK of the model as Keras defines it
(standard parameterisation), so a linear model ``f(x) = W x + b`` has ``Θ = (x·x' + 1) I_K``.
The model runs in inference mode (``training=False``: dropout off, batch norm on its moving
statistics), which are held fixed.

``output`` says which kernel is returned for a pair of inputs:

- ``"trace"``: ``Σ_k Θ[k, k]``, the sum of the K per-output NTKs -> ``[N, N']`` (the usual
  choice for eigenfunctions; for a one-output model it is that output's NTK);
- ``"full"``: every output pair -> ``[N, N', K, K]`` (stored flattened as ``[N*K, N'*K]`` with
  row ``i*K + k``, the layout of neural-tangents' ``flatten_kernel``);
- an int ``k``: the NTK of output ``k`` alone -> ``[N, N']`` (only that output is differentiated).

Strategies (:data:`STRATEGIES`), each computing one block ``Θ[rows, cols]`` from two input blocks
of ``a`` and ``b`` examples (``K`` differentiated outputs, ``F`` the forward cost of one example):

- ``"jacobian"``: the reference. ``tape.jacobian`` of the block's ``[a, K]`` outputs with respect to
  every parameter, concatenated into one ``[a, K, P]`` Jacobian, then one matrix product. TF
  vectorises the ``a*K`` backward passes, but each runs through the whole block, so it costs
  ``O(a² K F)`` and as much memory.
- ``"vmap_jacobian"``: per-example Jacobians ``[a, K, *shape]`` of every parameter with
  ``tf.vectorized_map`` over the ``a*K`` (example, output) pairs (each backward pass sees only its
  example: ``O(a K F)``), then contracted parameter by parameter and summed (no flat
  ``[a, K, P]`` copy): ``O(a b K P)`` flops, reading ``(a + b) K P`` numbers.
- ``"ntk_vector"``: implicit. Column ``j`` of the block is ``J_rows (J_colsᵀ e_j)``: a reverse-mode
  VJP of one column example (its per-example gradients, ``K`` vectors of ``P``) pushed through a
  forward-mode JVP (``tf.autodiff.ForwardAccumulator``) of the row block, vectorised over the
  columns in chunks. No row Jacobian is ever stored (memory ``O(chunk K P)``); the cost is
  ``O(a b K F)``, and ``output="full"`` gets its ``K²`` pairs from the same JVPs (``"trace"``
  discards the off-diagonal ones). It wins where the forward pass is about as cheap as ``P`` per
  example, i.e. dense networks (an MLP 784-512-512-10, blocks of 32, trace: 0.5 s per block
  against 2.8 s for ``vmap_jacobian`` and 4 s for ``jacobian`` on 2 cores); convolutions, whose
  forward cost is many times ``P``, favour ``vmap_jacobian`` (LeNet5 on 32x32x3: about 10x
  faster than ``ntk_vector``).
- ``"structured"``: per-layer factorisations (:mod:`tfbdl.ntk.structured`), for models whose
  trainable variables are all kernels and biases of ``Dense`` / ``Conv2D`` layers. One forward
  pass of the block records each such layer's input ``x`` and pre-activation ``z``, and ``K``
  backward passes (one per output, over the whole block) give the cotangents ``g = ∂f_k/∂z`` of
  every example. A Dense layer's share of ``Θ_ij[k, l]`` is then ``(x_i·x_j + 1)(g_ik·g_jl)``:
  ``D_in + K D_out`` multiply-adds per entry instead of ``K D_in D_out``; a convolution's
  per-example weight gradient ``Σ_p patch(p) ⊗ g(p)`` is small, so it is materialised (one
  ``Conv2DBackpropFilter`` per example) and its Gram taken. Each layer takes the form with the
  fewer flops. Exact, like the others. On LeNet5 (652,571 parameters, 625,500 of them in the
  first dense layer) the contraction costs about 29,000 multiply-adds per entry and output
  instead of 652,571, and the features (forward, backward and convolution gradients) dominate;
  they are also small (``block_size * K * 29,000`` numbers), so larger blocks fit in the memory
  ``vmap_jacobian`` needs for small ones. Another model: :class:`tfbdl.errors.InvalidOptionError`
  naming the layer.
- ``"auto"``: :func:`choose_strategy` times each one on a small block, scales the times to the
  block size and picks the fastest (``structured`` only where the model allows it).

Precision: ``dtype="float32"`` runs the model as built. ``dtype="float64"`` runs a float64 copy of
it: :func:`cast_model` rebuilds the model from its Keras config with every dtype policy set to
float64 (``keras.saving.serialize_keras_object`` -> dtypes replaced -> deserialise), and the
copy is evaluated with ``stateless_call`` on float64 casts of the model's current variables.
(Passing float64 tensors to a float32 model would not do: Keras casts the inputs and the
variable values to each layer's float32 compute dtype.) The copy is made once per model and
reused; the parameter values are read again at every call.

Files: with ``path``, :func:`compute_ntk` writes each finished block to a crash-safe HDF5 file
(:mod:`tfbdl.ntk.store`: dataset ``ntk`` ``[N*Kf, N'*Kf]`` in ``dtype``, with ``Kf = K`` for
``"full"`` else 1; for ``Θ(x, x)`` the blocks on and above the diagonal are computed, each written
with its mirror image). Its root attributes record the format, strategy, dtype, block size,
output, sizes, a SHA-256 of the inputs and of the model's parameters; a rerun, also after a
SIGKILL, skips the finished blocks and gives the same matrix bit for bit, and a rerun with other
weights, inputs or options is refused (:class:`tfbdl.errors.RunDirectoryError`).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import pathlib
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfbdl import validate
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.shapes import declare_shapes
from tfbdl.ntk import structured
from tfbdl.ntk.store import (
    DATASET,
    check_metadata,
    inputs_fingerprint,
    open_store,
    read_metadata,
)

__all__ = [
    "PROBE_SIZE",
    "STRATEGIES",
    "ModelFunction",
    "cast_model",
    "choose_strategy",
    "clear_strategy_cache",
    "compute_ntk",
    "jacobian_block",
    "model_function",
    "ntk_block",
    "ntk_vector_block",
    "parameter_fingerprint",
    "strategy_cache",
    "vmap_jacobian_block",
]

STRATEGIES = ("jacobian", "vmap_jacobian", "ntk_vector", "structured")
_DTYPES = ("float32", "float64")
_FLOAT_NAMES = {"float16", "bfloat16", "float32", "float64", "mixed_float16", "mixed_bfloat16"}
#: ``ntk_vector`` runs at most this many (example, tangent) forward passes at once.
VECTOR_PAIRS_PER_CALL = 2048
_ZERO = tf.UnconnectedGradients.ZERO


# --------------------------------------------------------------------------- options


def _check_dtype(dtype: Any) -> str:
    name = getattr(dtype, "name", dtype)
    name = np.dtype(name).name if isinstance(name, type) else name
    if name not in _DTYPES:
        raise InvalidOptionError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return name


def _check_output(output: Any) -> str | int:
    if output in ("trace", "full"):
        return output
    if isinstance(output, (int, np.integer)) and not isinstance(output, (bool, np.bool_)) and output >= 0:
        return int(output)
    raise InvalidOptionError(f"output must be 'trace', 'full' or a non-negative output index, got {output!r}")


def _check_strategy(strategy: Any, allow_auto: bool = True) -> str:
    allowed = (*STRATEGIES, "auto") if allow_auto else STRATEGIES
    if strategy not in allowed:
        raise InvalidOptionError(f"strategy must be one of {', '.join(allowed)}, got {strategy!r}")
    return strategy


def _check_model(model: Any) -> keras.Model:
    if not isinstance(model, keras.Model):
        raise InvalidOptionError(f"the NTK needs a Keras 3 keras.Model, got {type(model).__name__}")
    if not model.built:
        raise InvalidOptionError(f"model {model.name!r} is not built: call it on a batch first")
    if not model.trainable_variables:
        raise InvalidOptionError(f"model {model.name!r} has no trainable parameters, so its NTK is zero")
    return model


# --------------------------------------------------------------------------- precision


def _cast_config(obj: Any, dtype: str) -> Any:
    """A serialised Keras config with every float dtype / dtype policy replaced by ``dtype``."""
    if isinstance(obj, list):
        return [_cast_config(v, dtype) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if key == "dtype" and isinstance(value, str) and value in _FLOAT_NAMES:
            value = dtype
        elif (key == "dtype" and isinstance(value, dict) and isinstance(value.get("config"), dict)
              and value["config"].get("name") in _FLOAT_NAMES):
            value = {**value, "config": {**value["config"], "name": dtype}}
        else:
            value = _cast_config(value, dtype)
        out[key] = value
    return out


def _check_twin(model: keras.Model, twin: keras.Model) -> None:
    for what in ("trainable_variables", "non_trainable_variables"):
        a, b = getattr(model, what), getattr(twin, what)
        if len(a) != len(b) or any(tuple(u.shape) != tuple(v.shape) for u, v in zip(a, b)):
            raise InvalidOptionError(
                f"model {model.name!r} rebuilt from its config has other {what.replace('_', ' ')}; "
                "build the model in the wanted dtype yourself (keras.config.set_dtype_policy) and pass it"
            )


def _rebuild(model: keras.Model, dtype: str) -> keras.Model:
    """``model``'s architecture rebuilt with every layer in ``dtype`` (weights freshly initialised)."""
    try:
        config = _cast_config(keras.saving.serialize_keras_object(model), dtype)
        twin = keras.saving.deserialize_keras_object(config)
    except Exception as e:  # noqa: BLE001  (Keras raises many types for unserialisable models)
        raise InvalidOptionError(
            f"cannot rebuild model {model.name!r} in {dtype} from its config ({type(e).__name__}: {e}); "
            "register custom layers with keras.saving.register_keras_serializable, or build the model in "
            f"{dtype} yourself (keras.config.set_dtype_policy('{dtype}') before building) and pass it"
        ) from e
    if not twin.built:
        raise InvalidOptionError(f"model {model.name!r} rebuilt from its config is not built; build it in "
                                 f"{dtype} yourself and pass it")
    _check_twin(model, twin)
    return twin


def cast_model(model: keras.Model, dtype: str = "float64") -> keras.Model:
    """A copy of ``model`` computing in ``dtype``, holding its current weights cast to ``dtype``.

    Rebuilt from the Keras config with every float dtype policy (and the input layers' dtypes)
    replaced by ``dtype``; needs a model Keras can serialise (InvalidOptionError otherwise).
    Integer variables (e.g. random-seed states) keep their dtype.
    """
    model = _check_model(model)
    twin = _rebuild(model, _check_dtype(dtype))
    for src, dst in zip(model.weights, twin.weights):
        dst.assign(tf.cast(src.value, dst.dtype))
    return twin


def _computes_in(model: keras.Model, dtype: str) -> bool:
    """Whether every float variable and every layer's compute dtype of ``model`` is ``dtype``."""
    if any(v.dtype != dtype for v in model.weights if tf.as_dtype(v.dtype).is_floating):
        return False
    flatten = getattr(model, "_flatten_layers", None)  # every nested layer (Keras 3 internals)
    layers = list(flatten(include_self=True, recursive=True)) if flatten else [model, *model.layers]
    return all(getattr(layer, "compute_dtype", dtype) == dtype for layer in layers)


# --------------------------------------------------------------------------- the model as f(θ, x)

def _model_cache(model: keras.Model, name: str) -> dict:
    """A dict kept on ``model`` as a plain attribute (not tracked by Keras), so it lives and dies
    with the model (a module-level weak dict would be kept alive by values that refer to it)."""
    cache = getattr(model, name, None)
    if cache is None:
        cache = {}
        object.__setattr__(model, name, cache)
    return cache


def _working_model(model: keras.Model, dtype: str) -> keras.Model:
    if _computes_in(model, dtype):
        return model
    twins = _model_cache(model, "_tfbdl_ntk_twins")
    if dtype not in twins:
        twins[dtype] = _rebuild(model, dtype)
    return twins[dtype]


class ModelFunction:
    """A Keras model as a function ``f(θ, state, x) -> [n, K]`` of explicit tensors, in one dtype.

    ``params`` / ``state`` hold the model's current trainable / non-trainable values (cast to
    ``dtype``), read again by :meth:`refresh`. ``output`` is ``"trace"``, ``"full"`` or an output
    index (then ``f`` returns that one column, ``K = 1``). Make one with :func:`model_function`.
    """

    def __init__(self, model: keras.Model, dtype: str, output: str | int):
        self.model = _check_model(model)
        self.dtype = _check_dtype(dtype)
        self.output = _check_output(output)
        self.net = _working_model(model, self.dtype)
        self.refresh()
        self.num_params = int(sum(int(np.prod(p.shape)) for p in self.params))
        self._strategies: dict[str, _Strategy] = {}
        #: Shape of one input (no batch axis); from the model, or from the first inputs seen.
        self.input_shape = _input_shape(model)
        #: K of the model, and of what is differentiated (1 for an output index); known once
        #: the input shape is.
        self.model_outputs = self.num_outputs = None
        if self.input_shape is not None:
            self._probe_outputs()

    @property
    def full(self) -> bool:
        """Whether every output pair is kept (``output="full"``)."""
        return self.output == "full"

    @property
    def kf(self) -> int:
        """Rows/columns per example in the flattened block: ``K`` for ``"full"``, else 1."""
        return self.num_outputs if self.full else 1

    def refresh(self) -> None:
        """Read the model's current parameters (and non-trainable state) again."""
        self.params = [tf.cast(v.value, self.dtype) for v in self.model.trainable_variables]
        self.state = [tf.cast(v.value, w.dtype) for v, w in
                      zip(self.model.non_trainable_variables, self.net.non_trainable_variables)]

    def _call(self, params, state, x):
        kwargs = {"training": False} if _accepts_training(self.net) else {}
        return self.net.stateless_call(params, state, x, **kwargs)[0]

    def apply(self, params, state, x):
        """``f(θ, x)`` ``[n, K]`` (``K = 1`` for an output index) in inference mode."""
        y = self._call(params, state, x)
        if isinstance(self.output, int):
            y = y[:, self.output:self.output + 1]
        return y

    def _probe_outputs(self) -> None:
        """Run the model on one zero input to learn (and check) its number of outputs."""
        probe = tf.zeros((1, *self.input_shape), self.dtype)
        y = self._call(self.params, self.state, probe)
        if not tf.is_tensor(y) or y.shape.rank != 2:
            raise ShapeError(f"the NTK needs a model with one output of shape [batch, K]; model "
                             f"{self.model.name!r} returns {_describe(y)}")
        k = int(y.shape[1])
        if isinstance(self.output, int) and self.output >= k:
            raise InvalidOptionError(f"output index {self.output} is out of range: model {self.model.name!r} "
                                     f"has {k} output(s)")
        self.model_outputs, self.num_outputs = k, 1 if isinstance(self.output, int) else k

    def strategy(self, name: str) -> "_Strategy":
        """The (cached) block computer of strategy ``name``."""
        name = _check_strategy(name, allow_auto=False)
        if name not in self._strategies:
            self._strategies[name] = _STRATEGY_CLASSES[name](self)
        return self._strategies[name]

    def inputs(self, x: Any, what: str = "x") -> np.ndarray:
        """``x`` as a ``[n, *input_shape]`` array of the working dtype (ShapeError otherwise)."""
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise InvalidOptionError(f"{what} must hold numbers, got dtype {x.dtype}")
        if self.input_shape is None:  # a subclassed model: the first inputs fix the shape
            if x.ndim < 1 or x.shape[0] < 1:
                raise ShapeError(f"{what} must be [n, ...] with at least one example, got shape {x.shape}")
            self.input_shape = tuple(int(d) for d in x.shape[1:])
            self._probe_outputs()
        if x.ndim != 1 + len(self.input_shape) or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"{what} has shape {x.shape}, but model {self.model.name!r} takes "
                             f"[n, {', '.join(map(str, self.input_shape))}]")
        if x.shape[0] < 1:
            raise ShapeError(f"{what} has no examples")
        return np.ascontiguousarray(x, dtype=self.dtype)


def _accepts_training(model: keras.Model) -> bool:
    """Whether ``model.call`` takes a ``training`` argument (or any keyword argument)."""
    params = inspect.signature(model.call).parameters.values()
    return any(p.name == "training" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _describe(y: Any) -> str:
    if tf.is_tensor(y):
        return f"shape {tuple(y.shape)}"
    return type(y).__name__ + (f" of {len(y)}" if hasattr(y, "__len__") else "")


def _input_shape(model: keras.Model) -> tuple[int, ...] | None:
    """One input's shape from a functional / sequential model; None when the model has no
    declared inputs (subclassed) or unknown sizes."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        return None
    if len(inputs) != 1:
        raise ShapeError(f"the NTK needs a model with one input; model {model.name!r} has {len(inputs)}")
    shape = tuple(inputs[0].shape[1:])
    if any(d is None for d in shape):
        return None
    return tuple(int(d) for d in shape)


def model_function(model: keras.Model, dtype: str = "float32", output: str | int = "trace") -> ModelFunction:
    """The :class:`ModelFunction` of ``model`` (cached per model, dtype and output; parameters
    re-read at every call, so traced functions are reused after the weights change)."""
    model = _check_model(model)
    key = (_check_dtype(dtype), _check_output(output))
    cache = _model_cache(model, "_tfbdl_ntk_functions")
    if key not in cache:
        cache[key] = ModelFunction(model, *key)
    else:
        cache[key].refresh()
    return cache[key]


# --------------------------------------------------------------------------- strategies


def _flatten_pair(block):
    """``[a, b, K, K]`` -> ``[a*K, b*K]`` (row ``i*K + k``, column ``j*K + l``)."""
    a, b, k = tf.shape(block)[0], tf.shape(block)[1], tf.shape(block)[2]
    return tf.reshape(tf.transpose(block, [0, 2, 1, 3]), [a * k, b * k])


def _contract(ja, jb, full: bool):
    """``Σ_p ja[i, k, p] jb[j, l, p]`` as a 2-D block: ``[a, b]`` summed over ``k = l``
    (trace), or ``[a*K, b*K]`` for every output pair (full)."""
    a, k = tf.shape(ja)[0], tf.shape(ja)[1]
    b = tf.shape(jb)[0]
    if full:
        return tf.matmul(tf.reshape(ja, [a * k, -1]), tf.reshape(jb, [b * k, -1]), transpose_b=True)
    return tf.matmul(tf.reshape(ja, [a, -1]), tf.reshape(jb, [b, -1]), transpose_b=True)


class _Strategy:
    """Computes blocks in two steps: ``features(x)`` per input block, ``pair(fa, fb)`` per block,
    so that a row block's features serve every column block of its row."""

    name = ""
    #: How the cost of ``features`` grows with the block size (``pair`` grows with its square).
    features_exponent = 1

    def __init__(self, mf: ModelFunction):
        self.mf = mf

    def features(self, x: tf.Tensor):
        raise NotImplementedError

    def pair(self, fa, fb) -> tf.Tensor:
        raise NotImplementedError

    def block(self, xa: tf.Tensor, xb: tf.Tensor | None = None) -> tf.Tensor:
        """The 2-D block ``[a*Kf, b*Kf]``; ``xb=None`` means ``xa`` against itself."""
        fa = self.features(xa)
        return self.pair(fa, fa if xb is None else self.features(xb))


def _per_example_jacobians(mf: ModelFunction, params, state, x):
    """Per-example Jacobians, one ``[n, K, *shape]`` tensor per parameter: ``tf.vectorized_map``
    over the ``n*K`` (example, output) pairs, one gradient each (measured faster than a nested
    ``jacobian`` per example, or K gradients of one persistent tape, on LeNet5 and a wide MLP)."""
    k = mf.num_outputs
    n = tf.shape(x)[0]
    examples = tf.repeat(x, k, axis=0)  # [n*K, ...]: example i, output j at row i*K + j
    outputs = tf.tile(tf.range(k), [n])

    def one(pair):
        x1, j = pair
        with tf.GradientTape() as tape:
            tape.watch(params)
            y = tf.gather(mf.apply(params, state, x1[None])[0], j)
        return tape.gradient(y, params, unconnected_gradients=_ZERO)

    grads = tf.vectorized_map(one, (examples, outputs))
    return [tf.reshape(g, [n, k, *g.shape[1:]]) for g in grads]


class _Jacobian(_Strategy):
    name = "jacobian"
    features_exponent = 2  # a*K backward passes through the whole block

    def __init__(self, mf: ModelFunction):
        super().__init__(mf)
        full = mf.full

        @tf.function(reduce_retracing=True)
        def features(params, state, x):
            with tf.GradientTape() as tape:
                tape.watch(params)
                y = mf.apply(params, state, x)
            jac = tape.jacobian(y, params, unconnected_gradients=_ZERO)
            n, k = tf.shape(y)[0], tf.shape(y)[1]
            return tf.concat([tf.reshape(j, [n, k, -1]) for j in jac], axis=-1)

        self._features = features
        self._pair = tf.function(lambda ja, jb: _contract(ja, jb, full), reduce_retracing=True)

    def features(self, x):
        return self._features(self.mf.params, self.mf.state, x)

    def features_at(self, params, state, x):
        """The features at explicit weights ``params`` and model ``state`` (a GPflow kernel reads the
        model's current weights on every call): ``[n, K, P]``."""
        return self._features(params, state, x)

    def pair(self, fa, fb):
        return self._pair(fa, fb)


class _VmapJacobian(_Strategy):
    name = "vmap_jacobian"
    features_exponent = 1

    def __init__(self, mf: ModelFunction):
        super().__init__(mf)
        full = mf.full
        self._features = tf.function(lambda params, state, x: _per_example_jacobians(mf, params, state, x),
                                     reduce_retracing=True)

        @tf.function(reduce_retracing=True)
        def pair(fa, fb):
            return tf.add_n([_contract(ja, jb, full) for ja, jb in zip(fa, fb)])

        self._pair = pair

    def features(self, x):
        return self._features(self.mf.params, self.mf.state, x)

    def features_at(self, params, state, x):
        """The features at explicit weights ``params`` and model ``state``: one ``[n, K, *shape]``
        tensor per parameter."""
        return self._features(params, state, x)

    def pair(self, fa, fb):
        return self._pair(fa, fb)


class _NtkVector(_Strategy):
    name = "ntk_vector"
    features_exponent = 0  # no features: all the work is in pair

    def __init__(self, mf: ModelFunction):
        super().__init__(mf)
        full, k = mf.full, mf.num_outputs

        @tf.function(reduce_retracing=True)
        def jvps(params, state, xa, grads):
            """``J(xa)`` times each column gradient: ``grads`` [c, K, *shape] -> 2-D block columns."""
            tangents = [tf.reshape(g, [-1, *g.shape[2:]]) for g in grads]  # [c*K, *shape]

            def jvp(tangent):
                with tf.autodiff.ForwardAccumulator(params, tangent) as acc:
                    y = mf.apply(params, state, xa)
                return acc.jvp(y, unconnected_gradients=_ZERO)  # [a, K]

            y = tf.vectorized_map(jvp, tangents)  # [c*K, a, K]: y[(j, l), i, m] = Θ(xa_i, xc_j)[m, l]
            a, c = tf.shape(xa)[0], tf.shape(grads[0])[0]
            theta = tf.transpose(tf.reshape(y, [c, k, a, k]), [2, 0, 3, 1])  # [a, c, K, K]
            if full:
                return _flatten_pair(theta)
            return tf.reduce_sum(tf.linalg.diag_part(theta), axis=-1)

        self._jvps = jvps

    def features(self, x):
        return x

    def chunk(self, a: int, b: int) -> int:
        """Columns per vectorised call: ``VECTOR_PAIRS_PER_CALL // (K a)``, at least 1, at most ``b``."""
        return max(1, min(b, VECTOR_PAIRS_PER_CALL // (self.mf.num_outputs * a)))

    def pair(self, xa, xb):
        """Column chunks: per-example gradients of the columns (the VJPs, shared with
        ``vmap_jacobian``), then the JVPs of the row block along each of them."""
        gradients = self.mf.strategy("vmap_jacobian").features
        a, b = int(xa.shape[0]), int(xb.shape[0])
        c = self.chunk(a, b)
        parts = []
        for c0 in range(0, b, c):
            xc = xb[c0:c0 + c]
            n = int(xc.shape[0])
            if n < c:  # pad with copies of the first column: one traced shape per block size
                xc = tf.concat([xc, tf.repeat(xc[:1], c - n, axis=0)], axis=0)
            part = self._jvps(self.mf.params, self.mf.state, xa, gradients(xc))
            parts.append(part[:, :n * self.mf.kf])
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)


class _Structured(_Strategy):
    """Per-layer factorisations of Dense/Conv2D gradients (:mod:`tfbdl.ntk.structured`)."""

    name = "structured"
    features_exponent = 1

    def __init__(self, mf: ModelFunction):
        super().__init__(mf)
        structured.supported_layers(mf.net)  # InvalidOptionError now for an unsupported model
        self._plans = None
        full = mf.full
        self._features = tf.function(
            lambda params, state, x: structured.features(mf, self.plans, params, state, x),
            reduce_retracing=True)
        self._pair = tf.function(lambda fa, fb: structured.pair(fa, fb, full), reduce_retracing=True)

    @property
    def plans(self) -> list:
        """The form of each layer (:func:`tfbdl.ntk.structured.plan_layers`), made on first use."""
        if self._plans is None:
            self._plans = structured.plan_layers(self.mf)
        return self._plans

    def features(self, x):
        return self.features_at(self.mf.params, self.mf.state, x)

    def features_at(self, params, state, x):
        """The per-layer factors at explicit weights ``params`` and model ``state``."""
        self.plans  # noqa: B018  (plan outside the traced function)
        return self._features(params, state, x)

    def pair(self, fa, fb):
        return self._pair(fa, fb)


_STRATEGY_CLASSES = {cls.name: cls for cls in (_Jacobian, _VmapJacobian, _NtkVector, _Structured)}


def _block(model, xa, xb, strategy: str, dtype: str, output) -> np.ndarray:
    mf = model_function(model, dtype, output)
    xa = tf.constant(mf.inputs(xa, "xa"))
    xb = None if xb is None else tf.constant(mf.inputs(xb, "xb"))
    values = mf.strategy(strategy).block(xa, xb).numpy()
    return _unflatten(values, mf)


@declare_shapes("xa: [a, ...]", "xb: [b, ...]")  # returns [a, b], or [a*K, b*K] for output="full"
def jacobian_block(model, xa, xb=None, *, dtype: str = "float32", output: str | int = "trace") -> np.ndarray:
    """One NTK block ``Θ(xa, xb)`` by the reference ``tape.jacobian`` strategy.

    ``xa`` ``[a, *input_shape]``, ``xb`` ``[b, *input_shape]`` (``None``: ``xa``). Returns
    ``[a, b]`` (``"trace"`` or an output index) or ``[a, b, K, K]`` (``"full"``).
    """
    return _block(model, xa, xb, "jacobian", dtype, output)


@declare_shapes("xa: [a, ...]", "xb: [b, ...]")  # returns [a, b], or [a*K, b*K] for output="full"
def vmap_jacobian_block(model, xa, xb=None, *, dtype: str = "float32", output: str | int = "trace") -> np.ndarray:
    """One NTK block from per-example Jacobians (``tf.vectorized_map``); as :func:`jacobian_block`."""
    return _block(model, xa, xb, "vmap_jacobian", dtype, output)


@declare_shapes("xa: [a, ...]", "xb: [b, ...]")  # returns [a, b], or [a*K, b*K] for output="full"
def ntk_vector_block(model, xa, xb=None, *, dtype: str = "float32", output: str | int = "trace") -> np.ndarray:
    """One NTK block built column by column from JVPs of VJPs; as :func:`jacobian_block`."""
    return _block(model, xa, xb, "ntk_vector", dtype, output)


@declare_shapes("xa: [a, ...]", "xb: [b, ...]")  # returns [a, b], or [a*K, b*K] for output="full"
def ntk_block(model, xa, xb=None, *, strategy: str = "vmap_jacobian", dtype: str = "float32",
              output: str | int = "trace") -> np.ndarray:
    """One NTK block ``Θ(xa, xb)`` by the named strategy (``[a, b]`` or ``[a, b, K, K]``)."""
    return _block(model, xa, xb, _check_strategy(strategy, allow_auto=False), dtype, output)


def _unflatten(values: np.ndarray, mf: ModelFunction) -> np.ndarray:
    """A 2-D ``[a*Kf, b*Kf]`` block or matrix in the caller's layout (``[a, b, K, K]`` for full)."""
    if not mf.full:
        return values
    k = mf.num_outputs
    a, b = values.shape[0] // k, values.shape[1] // k
    return values.reshape(a, k, b, k).transpose(0, 2, 1, 3)


# --------------------------------------------------------------------------- choosing a strategy

_CHOICES: dict[tuple, dict] = {}


def _choice_key(mf: ModelFunction, block_size: int) -> tuple:
    return (mf.model.name, mf.input_shape, mf.model_outputs, mf.num_params, mf.dtype, mf.output, block_size)


#: ``choose_strategy`` times blocks of at most this many examples and scales the times up.
PROBE_SIZE = 32


def _sample_block(x: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` rows of ``x``, cycled when ``x`` has fewer."""
    return x[np.arange(size) % len(x)]


def _time_strategy(strategy: _Strategy, xs: tf.Tensor, repeats: int) -> tuple[float, float]:
    """Seconds of ``features`` for one block and of one ``pair`` of blocks after tracing, each the
    fastest of ``repeats`` runs (other processes only ever add time)."""
    fa = strategy.features(xs)
    strategy.pair(fa, strategy.features(xs)).numpy()  # traces
    features = pair = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fb = strategy.features(xs)
        tf.nest.map_structure(lambda t: t.numpy() if tf.is_tensor(t) else t, fb)
        middle = time.perf_counter()
        strategy.pair(fa, fb).numpy()
        features, pair = min(features, middle - start), min(pair, time.perf_counter() - middle)
    return features, pair


def choose_strategy(model, x_sample, block_size: int, *, dtype: str = "float32", output: str | int = "trace",
                    strategies=STRATEGIES, repeats: int = 2) -> str:
    """The strategy predicted fastest for blocks of ``block_size`` examples, by measurement.

    Rule: each strategy computes, on ``s = min(block_size, PROBE_SIZE)`` rows of ``x_sample``
    (``[m, *input_shape]``, cycled if fewer), the features of a column block and its pair with a
    row block (what each block of :func:`compute_ntk` costs), once to trace and then ``repeats``
    times, keeping the fastest time of each part (the machine's other load only adds time). The
    times are scaled to ``block_size = B`` with the strategies' known growth: ``pair`` as
    ``(B / s)²``, ``features`` as ``(B / s)²`` for ``jacobian`` (each of its backward passes spans
    the block), ``B / s`` for ``vmap_jacobian`` and ``structured`` and not at all for ``ntk_vector``
    (it has none);
    the smallest predicted time per block wins. A strategy that runs out of memory is skipped, and
    so is ``structured`` for a model it cannot handle (the reason is kept under ``"skipped"``).
    The choice and the predicted seconds per block are cached per model name, input shape, output
    count, parameter count, dtype, output and block size (:func:`strategy_cache`), so later calls
    cost nothing; :func:`clear_strategy_cache` forgets them.
    """
    block_size = validate.integer(block_size, "block_size", 1)
    repeats = validate.integer(repeats, "repeats", 1)
    mf = model_function(model, dtype, output)
    names = [_check_strategy(s, allow_auto=False) for s in strategies]
    if not names:
        raise InvalidOptionError("strategies must name at least one strategy")
    x_sample = mf.inputs(x_sample, "x_sample")
    key = (*_choice_key(mf, block_size), tuple(names))
    if key in _CHOICES:
        return _CHOICES[key]["strategy"]
    size = min(block_size, PROBE_SIZE)
    xs = tf.constant(_sample_block(x_sample, size))
    scale = block_size / size
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            strategy = mf.strategy(name)
            if name == "structured":
                strategy.plans  # noqa: B018  (InvalidOptionError for a model it cannot handle)
        except InvalidOptionError as e:
            if len(names) == 1:
                raise
            skipped[name] = str(e)
            continue
        try:
            features, pair = _time_strategy(strategy, xs, repeats)
        except (tf.errors.ResourceExhaustedError, MemoryError):
            seconds[name] = math.inf
            continue
        seconds[name] = features * scale**strategy.features_exponent + pair * scale**2
    if not seconds:
        raise InvalidOptionError(f"no strategy can handle model {mf.model.name!r}: {'; '.join(skipped.values())}")
    best = min(seconds, key=lambda n: seconds[n])
    if math.isinf(seconds[best]):
        raise InvalidOptionError(f"every strategy ran out of memory on blocks of {size}; pass a smaller block_size")
    _CHOICES[key] = {"strategy": best, "seconds": seconds, "probe_size": size, "skipped": skipped}
    return best


def strategy_cache() -> dict[tuple, dict]:
    """The cached choices of :func:`choose_strategy`: key -> ``{"strategy", "seconds"}`` (a copy)."""
    return {k: dict(v) for k, v in _CHOICES.items()}


def clear_strategy_cache() -> None:
    """Forget every cached choice of :func:`choose_strategy`."""
    _CHOICES.clear()


# --------------------------------------------------------------------------- fingerprints


def parameter_fingerprint(model: keras.Model) -> str:
    """SHA-256 (hex) of the paths, shapes, dtypes and values of every variable of ``model``
    (trainable and not): equal fingerprints, equal NTK."""
    h = hashlib.sha256(b"tfbdl-ntk-params-v1\0")
    for kind, variables in (("trainable", model.trainable_variables), ("state", model.non_trainable_variables)):
        for v in variables:
            value = np.ascontiguousarray(v.numpy())
            h.update(f"{kind}:{v.path}:{value.dtype.str}:{value.shape}\0".encode())
            h.update(value.data)
    return h.hexdigest()


# --------------------------------------------------------------------------- block-wise NTK


def _bounds(n: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(s + block, n)) for s in range(0, n, block)]


def _plan(n: int, n2: int, block: int, symmetric: bool) -> list[tuple[tuple[int, int], list[tuple[int, int]]]]:
    """Row blocks, each with its column blocks (on and above the diagonal when symmetric)."""
    rows, cols = _bounds(n, block), _bounds(n2, block)
    return [(r, cols[i:] if symmetric else cols) for i, r in enumerate(rows)]


def _symmetrise(values: np.ndarray) -> np.ndarray:
    """A diagonal block with its lower triangle copied from the upper one (exactly symmetric)."""
    lower = np.tril_indices(values.shape[0], -1)
    values = values.copy()
    values[lower] = values.T[lower]
    return values


@declare_shapes("x: [n, ...]", "x2: [m, ...]")  # returns [n, m] ([n, n] without x2), times K with output="full"
def compute_ntk(model, x, x2=None, *, block_size: int, strategy: str = "auto", dtype: str = "float32",
                output: str | int = "trace", path=None, progress: bool = True) -> np.ndarray:
    """The empirical NTK ``Θ(x, x2)`` of ``model`` at its current parameters, block by block.

    Args:
        model: a built Keras 3 model with one input and outputs ``[batch, K]``.
        x: ``[N, *input_shape]`` inputs (rows).
        x2: ``[N', *input_shape]`` inputs (columns), or ``None`` for ``Θ(x, x)``: then only the
            blocks on and above the diagonal are computed and the rest mirrored (the result is
            exactly symmetric).
        block_size: examples per block. Memory: two blocks' Jacobians (``block_size * K * P``
            numbers each) for ``vmap_jacobian``, plus ``block_size * K`` backward passes through
            the block at once for ``jacobian``; one chunk of column gradients for ``ntk_vector``;
            never the data set's Jacobian; for ``structured``, two blocks' per-layer factors
            (``block_size * K`` times the summed sizes of the materialised convolution kernels
            and of the dense layers' ``D_in + D_out``). Larger blocks recompute fewer Jacobians.
        strategy: one of :data:`STRATEGIES` or ``"auto"`` (:func:`choose_strategy` on the first
            block of ``x``; when resuming a file, the strategy the file was started with).
        dtype: ``"float32"`` or ``"float64"`` (see the module docstring).
        output: ``"trace"``, ``"full"`` or an output index (see the module docstring).
        path: an HDF5 file to write each block to as it finishes, and to resume from.
        progress: show a progress bar / log lines on stderr.

    Returns:
        ``[N, N']`` (``N' = N`` without ``x2``), or ``[N, N', K, K]`` for ``"full"``, as a numpy
        array of ``dtype``.

    Raises:
        ShapeError: inputs that do not fit the model, or a model whose output is not ``[batch, K]``.
        InvalidOptionError: a bad option value.
        RunDirectoryError: ``path`` was started with other parameters, inputs or options.
        DataFormatError: ``path`` is not an NTK file of this format version (delete it to recompute).
    """
    block_size = validate.integer(block_size, "block_size", 1)
    strategy = _check_strategy(strategy)
    mf = model_function(model, dtype, output)
    xr = mf.inputs(x, "x")
    xc = None if x2 is None else mf.inputs(x2, "x2")
    symmetric = xc is None
    n, n2 = len(xr), len(xr) if symmetric else len(xc)
    kf = mf.kf
    out = np.empty((n * kf, n2 * kf), dtype=mf.dtype)
    plan = _plan(n, n2, block_size, symmetric)
    store = None
    if path is not None:
        path = pathlib.Path(path)
        meta = _file_meta(mf, block_size, None, n, n2, symmetric, xr, xc)
        if path.exists():
            stored = read_metadata(path)
            check_metadata(path, stored, meta)
            if strategy == "auto":
                strategy = stored["strategy"]
    if strategy == "auto":
        strategy = choose_strategy(model, xr, min(block_size, n), dtype=mf.dtype, output=mf.output)
    if path is not None:
        meta["strategy"] = strategy
        store = open_store(path, meta, (n * kf, n2 * kf), block_size * kf, sum(len(cols) for _, cols in plan))
    try:
        _run_plan(mf.strategy(strategy), plan, xr, xc, out, store, progress, kf)
    finally:
        if store is not None:
            store.close()
    if symmetric:
        _mirror(out, plan, kf)
    return _unflatten(out, mf)


def _run_plan(strategy: _Strategy, plan, xr, xc, out, store, show: bool, kf: int) -> None:
    """Compute (or read back from ``store``) every planned block into ``out``."""
    from tfbdl.progress import progress

    symmetric = xc is None
    todo = []
    blocks = [(r, c) for r, cols in plan for c in cols]  # task i of the file is blocks[i]
    for i, (r, c) in enumerate(blocks):
        sel = (slice(r[0] * kf, r[1] * kf), slice(c[0] * kf, c[1] * kf))
        if store is not None and store.is_done(i):
            out[sel] = store.read(DATASET, sel)
        else:
            todo.append((i, r, c, sel))
    label = f"NTK blocks ({strategy.name})" + (f" -> {store.path.name}" if store is not None else "")
    with progress(len(todo), label, show=show) as bar:
        row, fa = None, None
        for i, r, c, sel in todo:
            if r != row:
                row, fa = r, strategy.features(tf.constant(xr[r[0]:r[1]]))
            if symmetric and c == r:
                values = _symmetrise(strategy.pair(fa, fa).numpy())
            else:
                xb = xr[c[0]:c[1]] if symmetric else xc[c[0]:c[1]]
                values = strategy.pair(fa, strategy.features(tf.constant(xb))).numpy()
            out[sel] = values
            if store is not None:
                regions = [(DATASET, sel, values)]
                if symmetric and c != r:  # the mirror image below the diagonal
                    regions.append((DATASET, sel[::-1], values.T))
                store.write(i, regions)
            bar.update(1)


def _mirror(out: np.ndarray, plan, kf: int) -> None:
    """Fill the blocks below the diagonal of ``out`` from those above it, in place."""
    for r, cols in plan:
        for c in cols:
            if c != r:
                out[c[0] * kf:c[1] * kf, r[0] * kf:r[1] * kf] = out[r[0] * kf:r[1] * kf, c[0] * kf:c[1] * kf].T


# --------------------------------------------------------------------------- files


def _file_meta(mf: ModelFunction, block_size, strategy, n, n2, symmetric, xr, xc) -> dict:
    """The attributes of the NTK file of this computation (see :mod:`tfbdl.ntk.store`)."""
    return {
        "strategy": strategy,
        "dtype": mf.dtype,
        "block_size": int(block_size),
        "output": str(mf.output),
        "n": int(n),
        "n2": int(n2),
        "symmetric": bool(symmetric),
        "num_outputs": int(mf.model_outputs),
        "num_params": int(mf.num_params),
        "model": mf.model.name,
        "inputs_sha256": inputs_fingerprint(xr, xc),
        "params_sha256": parameter_fingerprint(mf.model),
    }
