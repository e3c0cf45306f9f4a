"""Helpers on built Keras models: parameter counts, the batch-norm layers (for SWA/SWAG),
compiled forward passes cached on a model, and class probabilities computed batch by batch."""

from __future__ import annotations

import keras
import numpy as np

from tfbdl.errors import InvalidOptionError

__all__ = ["batch_norm_layers", "cached_function", "count_params", "softmax_in_batches"]


def count_params(model: keras.Model, include_non_trainable: bool = False) -> int:
    """Number of scalar parameters of a built model.

    By default only the trainable ones, which is what PyTorch's
    ``sum(p.numel() for p in model.parameters())`` counts (batch-norm running statistics are
    buffers there, non-trainable weights here); ``include_non_trainable=True`` adds them.
    """
    if not isinstance(model, keras.layers.Layer):
        raise InvalidOptionError(f"count_params takes a Keras model or layer, got {type(model).__name__}")
    if not model.built:
        raise InvalidOptionError(f"model {model.name!r} is not built yet: call it on a batch or "
                                 f"build(input_shape) before counting its parameters")
    variables = model.weights if include_non_trainable else model.trainable_weights
    return int(sum(int(np.prod(v.shape)) for v in variables))


def batch_norm_layers(model: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """Every ``keras.layers.BatchNormalization`` in ``model``, nested models included, in layer order.

    SWA and SWAG recompute these layers' moving statistics after averaging the weights; an empty
    list means there is nothing to recompute.
    """
    found: list[keras.layers.BatchNormalization] = []
    seen: set[int] = set()

    def visit(layer) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
            return
        children = layer.layers if isinstance(layer, keras.Model) else getattr(layer, "_layers", [])
        for child in children:
            visit(child)

    if not isinstance(model, keras.layers.Layer):
        raise InvalidOptionError(f"batch_norm_layers takes a Keras model or layer, got {type(model).__name__}")
    visit(model)
    return found


def cached_function(model, name: str, function):
    """``function`` wrapped in a ``tf.function`` and cached on ``model`` under ``name``.

    Traced once per input signature and reused by every later call, so evaluating a model many
    times with reassigned weights (posterior or prior samples) costs no retracing: the graph reads
    the variables' current values. Python attributes the function reads (e.g. a batch-norm
    momentum) are frozen at tracing time; callers that change one must set it the same way before
    every call.
    """
    cached = getattr(model, name, None)
    if cached is None:
        import tensorflow as tf

        cached = tf.function(function, reduce_retracing=True)
        object.__setattr__(model, name, cached)  # a plain attribute: not tracked as a layer or variable
    return cached


def softmax_in_batches(model, x, batch_size: int) -> np.ndarray:
    """Softmax of ``model(x)`` in inference mode, ``[N, C]`` float64, ``batch_size`` inputs at a
    time through one compiled forward pass (cached on the model)."""
    import tensorflow as tf

    forward = cached_function(model, "_tfbdl_softmax",
                              lambda xb: tf.nn.softmax(model(xb, training=False), axis=-1))
    outputs = [forward(tf.convert_to_tensor(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs, axis=0).astype(np.float64)
