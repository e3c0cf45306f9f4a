"""Linearized networks: the first-order Taylor expansion of a network in its weights.

For a network ``f(x; theta)`` and initial weights ``theta0`` the linearized network is::

    f_lin(x; theta) = f(x; theta0) + J(x; theta0) (theta - theta0),   J = d f / d theta

(``neural_tangents.linearize``, used as ``linearize_model`` by gortizji/linearized-networks).
Trained by gradient descent it is a kernel machine with the empirical NTK at ``theta0``:
``d f_lin / d theta = J(x; theta0)`` whatever ``theta``.

:class:`LinearizedModel` computes ``f_lin`` with one forward-mode Jacobian-vector product per
batch (``tf.autodiff.ForwardAccumulator`` with tangents ``theta - theta0`` through
``model.stateless_call`` at ``theta0``): the cost is about two to three forward passes and no
Jacobian is ever stored. It is a ``keras.Model`` whose trainable variables are ``theta`` (same
shapes as the network's, starting at ``theta0``), so :class:`tfbdl.train.loop.Trainer` trains it
exactly as it trains the network itself (weight decay acts on ``theta``, as on the network's
weights).

Batch normalisation and dropout: the network is always evaluated in inference mode at
``theta0``, i.e. batch norm normalises with the moving mean and variance the network had when it
was linearized (frozen; as the reference, which linearizes ``apply(..., train=False)``), and
dropout is off. Its scale and offset are weights like any other and are linearized too. The
``training`` flag of :meth:`LinearizedModel.call` changes nothing.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import keras

from tfbdl.errors import InvalidOptionError

__all__ = ["LinearizedModel", "linearize"]


class _Frozen:
    """Holds the network out of Keras's attribute tracking (its variables must not become ours)."""

    def __init__(self, model: keras.Model):
        self.model = model


class LinearizedModel(keras.Model):
    """``f_lin(x; theta) = f(x; theta0) + J(x; theta0) (theta - theta0)`` as a trainable ``keras.Model``.

    Args:
        model: a built ``keras.Model`` ``f``; its current weights are ``theta0`` (copied: later
            changes to ``model`` do not change the linearization).
        offset: ``True`` (default, the reference's ``linearize_model``) includes ``f(x; theta0)``;
            ``False`` returns only ``J(x; theta0) (theta - theta0)`` (the reference's
            ``linearize_diff_model``, zero at initialisation).

    Variables: ``theta`` (trainable, one per trainable variable of ``model``, same shapes and
    dtypes, initialised to ``theta0``), ``theta0`` and the network's non-trainable state (batch-norm
    moving statistics, seed states) as non-trainable copies, so checkpoints of this model hold
    everything needed to resume.

    ``call(x) -> f_lin(x)``: ``x`` as ``model`` takes it (e.g. ``float32 [batch, H, W, C]``),
    output as ``model`` returns it (e.g. logits ``[batch, num_classes]``).
    """

    def __init__(self, model: keras.Model, *, offset: bool = True, name: str | None = None):
        if not isinstance(model, keras.Model):
            raise InvalidOptionError(f"LinearizedModel takes a keras.Model, got {type(model).__name__}")
        if not model.built or not model.trainable_variables:
            raise InvalidOptionError(
                f"model {model.name!r} has no trainable weights yet: build it (call it on a batch) "
                "before linearizing it")
        if not isinstance(offset, bool):
            raise InvalidOptionError(f"offset must be True or False, got {offset!r}")
        super().__init__(name=name or f"{model.name}_linearized")
        self._frozen = _Frozen(model)
        self.offset = offset
        self.theta = [self._copy(v, f"theta_{i:03d}", True) for i, v in enumerate(model.trainable_variables)]
        self.theta0 = [self._copy(v, f"theta0_{i:03d}", False) for i, v in enumerate(model.trainable_variables)]
        self.state0 = [self._copy(v, f"state0_{i:03d}", False) for i, v in enumerate(model.non_trainable_variables)]
        self.built = True

    def _copy(self, variable, name: str, trainable: bool):
        """A new variable of this model holding ``variable``'s current value."""
        copy = self.add_weight(shape=tuple(variable.shape), dtype=variable.dtype, initializer="zeros",
                               trainable=trainable, name=name)
        copy.assign(variable.numpy())
        return copy

    @property
    def base_model(self) -> keras.Model:
        """The linearized network ``f`` (its own weights are not used by :meth:`call`)."""
        return self._frozen.model

    def call(self, x, training=None):
        """``f_lin(x)``: one forward pass of ``f`` at ``theta0`` carrying the JVP along ``theta - theta0``."""
        del training  # always inference mode at theta0 (see the module docstring)
        theta0 = [tf.convert_to_tensor(v.value) for v in self.theta0]
        state0 = [tf.convert_to_tensor(v.value) for v in self.state0]
        tangents = [tf.convert_to_tensor(t.value) - t0 for t, t0 in zip(self.theta, theta0)]
        with tf.autodiff.ForwardAccumulator(primals=theta0, tangents=tangents) as acc:
            out, _ = self.base_model.stateless_call(theta0, state0, x, training=False)
        jvp = tf.nest.map_structure(
            lambda o: acc.jvp(o, unconnected_gradients=tf.UnconnectedGradients.ZERO), out)
        if not self.offset:
            return jvp
        return tf.nest.map_structure(lambda o, j: o + j, out, jvp)

    def compute_output_spec(self, x, training=None):
        return self.base_model.compute_output_spec(x)

    def distance_to_init(self) -> float:
        """``||theta - theta0||_2`` over every weight (float64)."""
        total = sum(float(np.sum(np.square(np.asarray(t.numpy(), np.float64) - np.asarray(t0.numpy(), np.float64))))
                    for t, t0 in zip(self.theta, self.theta0))
        return float(np.sqrt(total))

    def assign_to(self, model: keras.Model | None = None) -> keras.Model:
        """Copy ``theta`` and the frozen state into ``model`` (default: the linearized network).

        The non-linear network at the linear model's weights, e.g. to compare the two.
        """
        model = self.base_model if model is None else model
        if len(model.trainable_variables) != len(self.theta) or any(
                tuple(v.shape) != tuple(t.shape) for v, t in zip(model.trainable_variables, self.theta)):
            raise InvalidOptionError(f"model {model.name!r} does not have the linearized network's weights")
        for v, t in zip(model.trainable_variables, self.theta):
            v.assign(t.value)
        for v, s in zip(model.non_trainable_variables, self.state0):
            v.assign(s.value)
        return model


def linearize(model: keras.Model, *, offset: bool = True) -> LinearizedModel:
    """``LinearizedModel(model, offset=offset)``: the linearization of ``model`` at its current weights."""
    return LinearizedModel(model, offset=offset)
