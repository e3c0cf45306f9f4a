"""The empirical NTK from per-layer factorisations of Dense and Conv2D gradients.

A Dense or Conv2D layer computes ``z_s = x_s W + b`` at ``S`` positions ``s`` (``S = 1`` for a
Dense layer on vectors; for a Conv2D ``x_s`` is the input patch ``[kh*kw*C_in]`` of output
pixel ``s``), then its activation. With ``g_ks = ∂f_k/∂z_s`` the cotangent of the pre-activation
of one example, that example's gradient of output ``k`` is ``Σ_s x_s ⊗ g_ks`` for ``W`` and
``Σ_s g_ks`` for ``b``, so the layer's share of ``Θ(x_i, x_j)[k, l]`` is

    Σ_{s,t} (x_is·x_jt + 1) (g_iks·g_jlt)        the factorised form, or
    <Σ_s x_is ⊗ g_iks, Σ_t x_jt ⊗ g_jlt> + <Σ_s g_iks, Σ_t g_jlt>   the materialised form

(``+ 1`` and the bias term only with a trainable bias). The factorised form costs
``S² (D_in + K_p D_out)`` multiply-adds per block entry (``K_p = K`` for ``"trace"``, ``K²`` for
``"full"``), the materialised one ``K_p (D_in + 1) D_out`` plus ``K S D_in D_out`` per example to
build it; :func:`plan_layers` picks the cheaper per layer (a Dense layer on vectors: factorised,
``D_in + K D_out`` instead of ``K D_in D_out``; a convolution with many output pixels:
materialised). The model's whole NTK is the sum over its layers, exact (no approximation).

Everything comes from one forward pass of the block and ``K`` backward passes (one per output,
summed over the block: the examples are independent in inference mode). During the forward pass
:class:`LayerRecorder` wraps each Dense/Conv2D layer instance's ``call`` (to record its input)
and ``activation`` (to record and watch its pre-activation) and restores them afterwards; this
works for functional, sequential and subclassed models and for ``stateless_call`` on a float64
copy. Supported: models whose trainable variables are all kernels and biases of ``Dense`` or
``Conv2D`` layers (any activation, strides, padding, dilation; channels_last, one group), each
layer called once per forward pass; :func:`plan_layers` raises a one-line InvalidOptionError
naming the first layer that is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from tfbdl.errors import InvalidOptionError

__all__ = ["NOMINAL_BLOCK", "LayerPlan", "LayerRecorder", "pair", "features", "plan_layers"]

#: The form of each layer is chosen for blocks of this many examples (the cost of building a
#: materialised gradient is shared by the block's entries).
NOMINAL_BLOCK = 64
_ZERO = tf.UnconnectedGradients.ZERO


@dataclass(frozen=True)
class LayerPlan:
    """How one Dense/Conv2D layer enters the NTK.

    ``index``: position in the model's flattened layer list; ``kernel`` / ``bias``: whether
    that variable is trainable (counted); ``positions`` S, ``fan_in`` D_in (patch size for a
    convolution), ``fan_out`` D_out; ``factorised``: the chosen form.
    """

    name: str
    index: int
    conv: bool
    kernel: bool
    bias: bool
    positions: int
    fan_in: int
    fan_out: int
    factorised: bool

    def cost(self, k: int, full: bool, factorised: bool, block: int = NOMINAL_BLOCK) -> float:
        """Multiply-adds per block entry of a form (its per-example work shared by ``block``)."""
        kp = k * k if full else k
        s, din, dout = self.positions, self.fan_in, self.fan_out
        if factorised:
            return s * s * (din + self.bias + kp * dout)
        size = din * dout * self.kernel + dout * self.bias
        return kp * size + 2.0 * k * s * size / block


# --------------------------------------------------------------------------- which layers


def _layers(net: keras.Model) -> list:
    flatten = getattr(net, "_flatten_layers", None)  # every nested layer (Keras 3 internals)
    return list(flatten(include_self=False, recursive=True)) if flatten else list(net.layers)


def _kernel_variable(layer):
    return getattr(layer, "_kernel", None) if hasattr(layer, "_kernel") else getattr(layer, "kernel", None)


def _unsupported_reason(layer) -> str | None:
    """Why the structured form cannot handle this layer's own variables (None: it can)."""
    what = f"layer {layer.name!r} ({type(layer).__name__})"
    dense, conv = keras.layers.Dense, keras.layers.Conv2D
    if isinstance(layer, dense):
        if type(layer).call is not dense.call:
            return f"{what} overrides Dense.call"
    elif isinstance(layer, conv):
        if type(layer).call is not conv.call:
            return f"{what} overrides Conv2D.call"
        if layer.data_format != "channels_last":
            return f"{what} is channels_first"
        if getattr(layer, "groups", 1) != 1:
            return f"{what} is a grouped convolution"
    else:
        return f"{what} has trainable variables and is neither Dense nor Conv2D"
    if getattr(layer, "quantization_mode", None) is not None or getattr(layer, "lora_enabled", False):
        return f"{what} is quantised or has LoRA weights"
    return None


def _owner(variable, layers) -> Any:
    """The innermost layer among ``layers`` holding ``variable`` (None if none does)."""
    owners = [layer for layer in layers if any(v is variable for v in layer.trainable_weights)]
    return min(owners, key=lambda layer: len(layer.trainable_weights)) if owners else None


def supported_layers(net: keras.Model) -> list[tuple[int, Any, bool, bool]]:
    """``(index, layer, kernel trainable, bias trainable)`` of the Dense/Conv2D layers holding
    ``net``'s trainable variables; InvalidOptionError if any variable belongs elsewhere."""
    layers = _layers(net)
    trainable = {id(v) for v in net.trainable_variables}
    found, covered = [], set()
    for index, layer in enumerate(layers):
        if not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            continue
        kernel, bias = _kernel_variable(layer), getattr(layer, "bias", None)
        has_k = kernel is not None and id(kernel) in trainable
        has_b = bias is not None and id(bias) in trainable
        if has_k or has_b:
            reason = _unsupported_reason(layer)
            if reason is not None:
                raise InvalidOptionError(f"the structured NTK strategy does not support {reason}; "
                                         "use strategy='vmap_jacobian'")
            found.append((index, layer, has_k, has_b))
            covered.update(id(v) for v, used in ((kernel, has_k), (bias, has_b)) if used)
    for v in net.trainable_variables:
        if id(v) not in covered:
            owner = _owner(v, layers)
            what = (f"layer {owner.name!r} ({type(owner).__name__})" if owner is not None
                    else f"the model itself ({type(net).__name__})")
            raise InvalidOptionError(f"the structured NTK strategy does not support {what}: trainable "
                                     f"variable {v.path!r} is not the kernel or bias of a Dense or Conv2D "
                                     "layer; use strategy='vmap_jacobian'")
    return found


# --------------------------------------------------------------------------- recording a forward pass


class LayerRecorder:
    """Context manager: while active, each of ``layers`` records the input of its ``call`` and
    its pre-activation (watched on ``tape`` when given), in ``inputs[i]`` / ``pre[i]`` lists.

    The wrappers are instance attributes set with ``object.__setattr__`` (Keras's attribute
    tracking is not involved) and removed on exit, also after an error.
    """

    def __init__(self, layers, tape: tf.GradientTape | None = None):
        self.layers = list(layers)
        self.tape = tape
        self.inputs: list[list] = [[] for _ in self.layers]
        self.pre: list[list] = [[] for _ in self.layers]
        self._saved: list[tuple] = []

    def __enter__(self) -> "LayerRecorder":
        try:
            for i, layer in enumerate(self.layers):
                own_call = layer.__dict__.get("call")
                call, activation = layer.call, layer.activation
                self._saved.append((layer, own_call, activation))
                object.__setattr__(layer, "call", self._wrap_call(i, call))
                object.__setattr__(layer, "activation", self._wrap_activation(i, activation))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for layer, own_call, activation in reversed(self._saved):
            if own_call is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own_call)
            object.__setattr__(layer, "activation", activation)
        self._saved.clear()

    def _wrap_call(self, i: int, call):
        def recording_call(inputs, *args, **kwargs):
            self.inputs[i].append(inputs)
            return call(inputs, *args, **kwargs)

        return recording_call

    def _wrap_activation(self, i: int, activation):
        def recording_activation(z):
            if self.tape is not None:
                self.tape.watch(z)
            self.pre[i].append(z)
            return activation(z) if activation is not None else z

        return recording_activation


# --------------------------------------------------------------------------- the plan


def plan_layers(mf) -> list[LayerPlan]:
    """The :class:`LayerPlan` of every counted layer of ``mf.net`` (a :class:`ModelFunction`
    whose input shape is known), from one recorded forward pass of a zero input.

    Raises InvalidOptionError (one line, naming the layer) for a model it cannot handle.
    """
    found = supported_layers(mf.net)
    probe = tf.zeros((1, *mf.input_shape), mf.dtype)
    with LayerRecorder([layer for _, layer, _, _ in found]) as rec:
        mf.apply(mf.params, mf.state, probe)
    k = mf.num_outputs
    plans = []
    for (index, layer, has_k, has_b), ins, pre in zip(found, rec.inputs, rec.pre):
        if len(pre) > 1 or len(ins) > 1:
            raise InvalidOptionError(f"the structured NTK strategy does not support layer {layer.name!r}, called "
                                     f"{max(len(pre), len(ins))} times per forward pass (shared weights); use "
                                     "strategy='vmap_jacobian'")
        if not pre or not ins:  # not on the path to the outputs: its gradients are zero
            continue
        x, z = ins[0], pre[0]
        conv = isinstance(layer, keras.layers.Conv2D)
        fan_out = int(z.shape[-1])
        positions = int(math.prod(z.shape[1:-1]))
        if conv:
            kh, kw = layer.kernel_size
            fan_in = kh * kw * int(x.shape[-1])
        else:
            fan_in = int(x.shape[-1])
        plan = LayerPlan(layer.name, index, conv, has_k, has_b, positions, fan_in, fan_out, False)
        factorised = has_k and plan.cost(k, mf.full, True) < plan.cost(k, mf.full, False)
        plans.append(LayerPlan(layer.name, index, conv, has_k, has_b, positions, fan_in, fan_out, factorised))
    return plans


def describe(plans: list[LayerPlan]) -> str:
    """One line per layer: name, S, D_in, D_out and the form chosen."""
    return "\n".join(f"{p.name}: S={p.positions} D_in={p.fan_in} D_out={p.fan_out} "
                     f"{'factorised' if p.factorised else 'materialised'}" for p in plans)


# --------------------------------------------------------------------------- features and pairs


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF's "SAME" padding (before, after) of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _patches(layer, x: tf.Tensor, n, plan: LayerPlan) -> tf.Tensor:
    """The ``[n, S, D_in]`` inputs of the layer at its S positions: ``x`` itself for a Dense
    layer, the ``[kh, kw, C_in]`` input patch of each output pixel for a Conv2D (strided slices,
    measured faster than ``tf.image.extract_patches`` on CPU)."""
    if not plan.conv:
        return tf.reshape(x, [n, plan.positions, plan.fan_in])
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    height, width = int(x.shape[1]), int(x.shape[2])
    if layer.padding == "same":
        pads = [_same_padding(height, kh, sh, dh), _same_padding(width, kw, sw, dw)]
        if any(p != 0 for pad in pads for p in pad):
            x = tf.pad(x, [[0, 0], list(pads[0]), list(pads[1]), [0, 0]])
        oh, ow = -(-height // sh), -(-width // sw)
    else:
        oh, ow = (height - (kh - 1) * dh - 1) // sh + 1, (width - (kw - 1) * dw - 1) // sw + 1
    parts = [x[:, a * dh:a * dh + (oh - 1) * sh + 1:sh, b * dw:b * dw + (ow - 1) * sw + 1:sw, :]
             for a in range(kh) for b in range(kw)]
    patches = tf.concat(parts, axis=-1) if len(parts) > 1 else parts[0]
    return tf.reshape(patches, [n, plan.positions, plan.fan_in])


def _weight_gradients(layer, x: tf.Tensor, g: tf.Tensor, plan: LayerPlan, n, k: int, full: bool) -> tf.Tensor:
    """Per-example kernel gradients ``Σ_s x_s ⊗ g_ks`` ``[n, K, D_in*D_out]`` from the layer's
    input ``x`` and the cotangents ``g`` ``[n, S, K, D_out]`` (the order within the last axis is
    arbitrary, and with ``full=False`` also across K: only dot products of them are used)."""
    din, dout = plan.fan_in, plan.fan_out
    if not plan.conv or plan.positions == 1 or tuple(layer.dilation_rate) != (1, 1):
        xs = _patches(layer, x, n, plan)  # [n, S, D_in]
        if plan.positions == 1:
            wgrad = g[:, 0, :, :, None] * xs[:, :, None, :]  # [n, K, D_out, D_in]
        else:  # one [K*D_out, S] x [S, D_in] product per example
            wgrad = tf.matmul(tf.reshape(g, [n, plan.positions, k * dout]), xs, transpose_a=True)
        return tf.reshape(wgrad, [n, k, dout * din])
    # One Conv2DBackpropFilter per example, the K outputs as K*D_out channels (measured 2-3x
    # faster on CPU than patches and a batched matmul; CPU kernels have no dilation, see above).
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    cin = int(x.shape[-1])
    gk = tf.reshape(g, [n, *layer.compute_output_shape((1, *x.shape[1:]))[1:3], k * dout])

    def one(example):
        xi, gi = example
        return tf.raw_ops.Conv2DBackpropFilter(input=xi[None], filter_sizes=[kh, kw, cin, k * dout],
                                               out_backprop=gi[None], strides=[1, sh, sw, 1],
                                               padding=layer.padding.upper())

    wgrad = tf.map_fn(one, (x, gk), fn_output_signature=tf.TensorSpec([kh, kw, cin, k * dout], x.dtype),
                      parallel_iterations=16)  # [n, kh, kw, C_in, K*D_out]
    if full and k > 1:
        wgrad = tf.transpose(tf.reshape(wgrad, [n, din, k, dout]), [0, 2, 1, 3])
    return tf.reshape(wgrad, [n, k, din * dout])


def features(mf, plans: list[LayerPlan], params, state, x: tf.Tensor):
    """Per-example factors of block ``x`` ``[n, *input_shape]``.

    Returns ``(materialised, factors)``: ``materialised`` ``[n, K, D_m]`` holds the
    concatenated per-example gradients of the materialised layers (``D_m`` may be 0), and
    ``factors`` one ``(X [n, S, D_in (+1 with a bias)], G [n, S, K, D_out])`` per factorised layer.
    """
    layers = _layers(mf.net)
    chosen = [layers[p.index] for p in plans]
    k = mf.num_outputs
    with tf.GradientTape(persistent=k > 1) as tape:
        with LayerRecorder(chosen, tape) as rec:
            y = mf.apply(params, state, x)
    n = tf.shape(x)[0]
    zs = [pre[0] for pre in rec.pre]
    cotangents = []
    for j in range(k):  # one backward pass per output, over the whole block
        seed = tf.broadcast_to(tf.one_hot(j, k, dtype=y.dtype), tf.shape(y))
        cotangents.append(tape.gradient(y, zs, output_gradients=seed, unconnected_gradients=_ZERO))
    del tape
    materialised, factors = [], []
    for i, (plan, layer) in enumerate(zip(plans, chosen)):
        g = cotangents[0][i][..., None, :] if k == 1 else tf.stack([c[i] for c in cotangents], axis=-2)
        g = tf.reshape(g, [n, plan.positions, k, plan.fan_out])  # [n, S, K, D_out]
        if not plan.kernel:
            materialised.append(tf.reduce_sum(g, axis=1))
            continue
        if plan.factorised:
            xs = _patches(layer, rec.inputs[i][0], n, plan)  # [n, S, D_in]
            if plan.bias:
                xs = tf.concat([xs, tf.ones([n, plan.positions, 1], xs.dtype)], axis=-1)
            factors.append((xs, g))
            continue
        materialised.append(_weight_gradients(layer, rec.inputs[i][0], g, plan, n, k, mf.full))
        if plan.bias:
            materialised.append(tf.reduce_sum(g, axis=1))
    if materialised:
        dense = tf.concat(materialised, axis=-1) if len(materialised) > 1 else materialised[0]
    else:
        dense = tf.zeros([n, k, 0], y.dtype)
    return dense, tuple(factors)


def pair(fa, fb, full: bool) -> tf.Tensor:
    """The 2-D block ``[a*Kf, b*Kf]`` of two blocks' :func:`features` (``Kf = K`` when ``full``,
    else 1 and the K outputs summed)."""
    (ma, factors_a), (mb, factors_b) = fa, fb
    a, k, b = tf.shape(ma)[0], tf.shape(ma)[1], tf.shape(mb)[0]
    rows, cols = (a * k, b * k) if full else (a, b)
    out = tf.matmul(tf.reshape(ma, [rows, -1]), tf.reshape(mb, [cols, -1]), transpose_b=True)
    for (xa, ga), (xb, gb) in zip(factors_a, factors_b):
        s, dout = xa.shape[1], ga.shape[-1]
        xx = tf.matmul(tf.reshape(xa, [a * s, -1]), tf.reshape(xb, [b * s, -1]), transpose_b=True)  # [aS, bS]
        if not full:  # Σ_k g_iks·g_jkt: rows (i, s), columns (k, e)
            gg = tf.matmul(tf.reshape(ga, [a * s, k * dout]), tf.reshape(gb, [b * s, k * dout]), transpose_b=True)
            term = xx * gg
            if s != 1:
                term = tf.reduce_sum(tf.reshape(term, [a, s, b, s]), axis=[1, 3])
        else:
            if s != 1:  # [n, S, K, D_out] -> [n, K, S, D_out]
                ga, gb = tf.transpose(ga, [0, 2, 1, 3]), tf.transpose(gb, [0, 2, 1, 3])
            gg = tf.matmul(tf.reshape(ga, [a * k * s, dout]), tf.reshape(gb, [b * k * s, dout]),
                           transpose_b=True)  # [(i, k, s), (j, l, t)]
            term = tf.reshape(gg, [a, k, s, b, k, s]) * tf.reshape(xx, [a, 1, s, b, 1, s])
            term = tf.reshape(tf.reduce_sum(term, axis=[2, 5]) if s != 1 else term, [rows, cols])
        out += term
    return out
