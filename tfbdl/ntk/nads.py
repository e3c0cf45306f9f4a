"""Neural anisotropy directions (NADs) of an architecture, and the linearly separable NAD datasets.

NADs (Ortiz-Jiménez, Modas, Moosavi-Dezfooli and Frossard, "Neural Anisotropy Directions",
NeurIPS 2020) are the directions of input space ordered by how easily a network architecture
learns a linearly separable task whose only discriminative feature lies along them. Two ways to
estimate them at initialisation are implemented (``method``):

``"ntk"`` (default; gortizji/linearized-networks ``neural_kernels/nads.py``,
``mixed_derivative_nad_decomposition``). Take the scalar output ``f(x; theta)`` (output unit
``output_index``, the reference's ``[:, 0]``) at one input ``x0`` (0 in the reference, or
``eval_std * N(0, I)``) and the mixed derivative ``M = d^2 f / (d theta d x) [P, D]``
(``D = H * W * C`` input coordinates, ``P`` weights). The reference takes the right singular
vectors of ``M`` in descending order of singular value; they are the eigenvectors of the
``[D, D]`` Gram matrix::

    G = M^T M = J J^T,     J = d g / d theta,   g(theta) = grad_x f(x0; theta)  in R^D

i.e. the empirical NTK of the map ``theta -> grad_x f(x0; theta)``: for inputs near ``x0`` the
NTK is ``Theta(x, x') ~ ... + (x - x0)^T G (x' - x0)``, so ``G`` is the NTK restricted to input
directions, and a NAD with a large eigenvalue is a direction the linearized network learns fast.
Here ``G`` is averaged over ``num_inits`` initialisations (the reference uses one) and
diagonalised exactly. It is computed without storing ``M``: for blocks of ``block_size``
coordinate directions ``e_i``, ``w_i = J^T e_i = grad_theta <g, e_i>`` (reverse over reverse)
and then ``G e_i = J w_i = grad_x <grad_theta f(x0), w_i>``, about ``4 D`` backward passes per
initialisation, vectorised over a block, with ``block_size * P`` numbers in memory.

``"gradient"`` (the NAD paper's ``GradientCovarianceAnisotropyFinder``, LTS4/neural-anisotropy-
directions): the principal components of ``grad_x f(x0; theta)`` over ``num_inits`` random
initialisations, i.e. the eigenvectors of the sample covariance (centred, ``1 / (n - 1)``) of the
input gradients. The paper used 10,000 initialisations and a random evaluation point.

With ReLU networks whose first layer has no bias or a zero one (the zoo's LeNet5 and ResNet18,
Flax's defaults) every unit is exactly off at ``x0 = 0`` and the mixed derivative vanishes; the
reference computed its NADs with GeLU networks. Use a smooth activation or ``eval_std > 0``
(:func:`compute_nads` raises on an all-zero matrix).

:func:`nad_dataset` draws the reference's linearly separable dataset for one direction ``v``
(unit norm): labels ``y`` uniform in ``{0, 1}``, ``s = 2 y - 1``, and
``x = (epsilon / 2) s v + (I - v v^T) n`` with ``n ~ N(0, noise_std^2 I)``: the projection on
``v`` is exactly ``+-epsilon / 2`` and every direction orthogonal to ``v`` holds label-independent
Gaussian noise (``data/__init__.py`` ``linearly_separable_dataset`` of the reference; defaults
``epsilon = 1, noise_std = 1`` from its ``config/train_nads``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.ntk.eigen import ntk_eigendecomposition
from tfbdl.seeding import derive_rng, derive_seeds
from tfbdl.validate import integer, number

__all__ = ["METHODS", "compute_nads", "nad_dataset", "nad_gram"]

#: The estimators of :func:`nad_gram` (see the module docstring).
METHODS = ("ntk", "gradient")

# Stream keys: the initialisations' seeds, the evaluation point x0, the synthetic NAD datasets.
_INIT_STREAM = 0x4AD5
_EVAL_POINT_STREAM = 0xE7A1
_DATA_STREAM = 0xDA7A


def _image_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or tuple(input_shape) != shape:
        raise ShapeError(f"input_shape must be (height, width, channels) of positive integers, got {input_shape!r}")
    return shape


def _init_seeds(seed: int, num_inits: int) -> list[int]:
    """One 31-bit seed per initialisation, derived from ``seed``."""
    return derive_seeds(seed, _INIT_STREAM, count=num_inits)


def _eval_point(shape, eval_std: float, seed: int) -> np.ndarray:
    """``x0 [1, H, W, C]``: zeros, or ``eval_std * N(0, I)`` drawn from ``seed``."""
    if eval_std == 0.0:
        return np.zeros((1, *shape), np.float32)
    rng = derive_rng(seed, _EVAL_POINT_STREAM)
    return (eval_std * rng.standard_normal((1, *shape))).astype(np.float32)


def _build(model_factory, seed: int, x0: np.ndarray):
    import keras

    model = model_factory(seed)
    if not isinstance(model, keras.Model):
        raise InvalidOptionError(f"model_factory(seed) must return a keras.Model, got {type(model).__name__}")
    try:
        out = model(x0, training=False)
    except (ValueError, TypeError) as e:
        raise ShapeError(f"model {model.name!r} does not take inputs of shape {x0.shape[1:]}: {e}") from None
    if not model.trainable_variables:
        raise InvalidOptionError(f"model {model.name!r} has no trainable weights, so it has no NTK")
    return model, int(np.prod(out.shape[1:]))


class _Derivatives:
    """Compiled derivatives of ``f(x; theta)`` (one output unit, inference mode) for one architecture.

    Traced once with the first model; every other initialisation passes its own weight values.
    """

    def __init__(self, model, output_index: int):
        import tensorflow as tf

        self.tf = tf
        self.model = model
        self.output_index = output_index
        self.input_grad = tf.function(self._input_grad, reduce_retracing=True)
        self.gram_rows = tf.function(self._gram_rows, reduce_retracing=True)

    def _f(self, params, state, x):
        # Two copies of x0, of which only the first is used: TF 2.21's oneDNN Conv2DBackpropFilter
        # corrupts memory for 1x1 stride-2 kernels (ResNet projections) at batch size 1.
        out, _ = self.model.stateless_call(params, state, self.tf.concat([x, x], 0), training=False)
        return self.tf.reshape(out, [self.tf.shape(out)[0], -1])[0, self.output_index]

    def _input_grad(self, params, state, x):
        """``grad_x f(x; theta)``: ``[1, H, W, C]``."""
        tf = self.tf
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = self._f(params, state, x)
        return tape.gradient(y, x)

    def _gram_rows(self, params, state, x, directions):
        """``G u_i = J J^T u_i`` for the rows ``u_i`` of ``directions [b, D]``: ``[b, D]``."""
        tf = self.tf
        # w_i = J^T u_i = grad_theta <grad_x f, u_i>
        with tf.GradientTape() as outer:
            outer.watch(params)
            g = tf.reshape(self._input_grad(params, state, x), [-1])
            s = tf.linalg.matvec(directions, g)
        w = outer.jacobian(s, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        # J w_i = grad_x <grad_theta f, w_i>
        with tf.GradientTape() as outer2:
            outer2.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(params)
                y = self._f(params, state, x)
            grads = inner.gradient(y, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            h = tf.add_n([tf.linalg.matvec(tf.reshape(wp, [tf.shape(wp)[0], -1]), tf.reshape(gp, [-1]))
                          for wp, gp in zip(w, grads)])
        rows = outer2.jacobian(h, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.reshape(rows, [tf.shape(directions)[0], -1])


def nad_gram(model_factory: Callable[[int], object], input_shape, *, num_inits: int = 1, seed: int = 0,
             method: str = "ntk", eval_std: float = 0.0, eval_point=None, output_index: int = 0,
             block_size: int = 64) -> np.ndarray:
    """The ``[D, D]`` matrix whose eigenvectors are the NADs (``D = H * W * C``, float64).

    Args:
        model_factory: ``seed -> keras.Model`` of the architecture, e.g.
            ``lambda s: lenet5(1, (32, 32, 1), seed=s)``; called once per initialisation.
        input_shape: ``(H, W, C)`` of one image.
        num_inits: initialisations to average over (``"gradient"`` needs at least 2).
        seed: derives the initialisations' seeds (and the evaluation point's).
        method: ``"ntk"`` (mixed-derivative Gram ``J J^T``, averaged) or ``"gradient"``
            (covariance of input gradients); see the module docstring.
        eval_std: ``x0 = eval_std * N(0, I)``; 0 (default) evaluates at ``x0 = 0`` as the reference.
        eval_point: an explicit ``x0 [H, W, C]`` instead (the reference's ``data``).
        output_index: which output unit is ``f`` (flattened outputs; the reference's ``[:, 0]``).
        block_size: input directions per vectorised step of ``"ntk"`` (memory ``block_size * P``).

    Derivatives are computed in the model's own dtype (build it with a float64 dtype policy for
    float64); the matrix is accumulated in float64.
    """
    import tensorflow as tf

    shape = _image_shape(input_shape)
    num_inits = integer(num_inits, "num_inits", 1)
    seed = integer(seed, "seed", 0)
    if method not in METHODS:
        raise InvalidOptionError(f"unknown NAD method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "gradient" and num_inits < 2:
        raise InvalidOptionError("method='gradient' is a covariance over initialisations: num_inits must be >= 2")
    block_size = integer(block_size, "block_size", 1)
    output_index = integer(output_index, "output_index", 0)
    x0_np = _x0(shape, eval_std, eval_point, seed)

    d = int(np.prod(shape))
    derivs = x0 = shapes = None
    gram = np.zeros((d, d), np.float64)
    grad_sum = np.zeros(d, np.float64)
    for init_seed in _init_seeds(seed, num_inits):
        model, n_out = _build(model_factory, init_seed, x0_np)
        if output_index >= n_out:
            raise InvalidOptionError(f"output_index {output_index} is out of range: the model has {n_out} outputs")
        params = [tf.convert_to_tensor(v.value) for v in model.trainable_variables]
        state = [tf.convert_to_tensor(v.value) for v in model.non_trainable_variables]
        if derivs is None:
            derivs = _Derivatives(model, output_index)
            x0 = tf.constant(x0_np, dtype=model.inputs[0].dtype if getattr(model, "inputs", None) else "float32")
            shapes = [tuple(p.shape) for p in params], [tuple(t.shape) for t in state]
        elif ([tuple(p.shape) for p in params], [tuple(t.shape) for t in state]) != shapes:
            raise InvalidOptionError("model_factory must build the same architecture for every seed")
        if method == "gradient":
            g = derivs.input_grad(params, state, x0).numpy().astype(np.float64).reshape(-1)
            gram += np.outer(g, g)
            grad_sum += g
        else:
            gram += _mixed_gram(derivs, params, state, x0, block_size)
    if method == "gradient":
        mean = grad_sum / num_inits
        return (gram - num_inits * np.outer(mean, mean)) / (num_inits - 1)
    return gram / num_inits


def _x0(shape, eval_std, eval_point, seed: int) -> np.ndarray:
    """The evaluation point ``[1, H, W, C]`` (float32) from ``eval_point`` or ``eval_std``."""
    if eval_point is not None:
        x0 = np.asarray(eval_point, np.float32)
        if x0.shape != shape:
            raise ShapeError(f"eval_point must have the input shape {shape}, got {x0.shape}")
        return x0[None]
    try:
        eval_std = float(eval_std)
    except (TypeError, ValueError):
        eval_std = float("nan")
    if not np.isfinite(eval_std) or eval_std < 0:
        raise InvalidOptionError(f"eval_std must be a finite number >= 0, got {eval_std!r}")
    return _eval_point(shape, eval_std, seed)


def _mixed_gram(derivs: _Derivatives, params, state, x0, block_size: int) -> np.ndarray:
    """``J J^T [D, D]`` of one initialisation, ``block_size`` coordinate directions at a time."""
    import tensorflow as tf

    d = int(np.prod(x0.shape[1:]))
    gram = np.empty((d, d), np.float64)
    for start in range(0, d, block_size):
        stop = min(start + block_size, d)
        basis = np.zeros((stop - start, d), np.float32)
        basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
        rows = derivs.gram_rows(params, state, x0, tf.constant(basis, dtype=x0.dtype))
        gram[start:stop] = rows.numpy()
    return gram


def compute_nads(model_factory: Callable[[int], object], input_shape, *, num_inits: int = 1, seed: int = 0,
                 method: str = "ntk", eval_std: float = 0.0, eval_point=None, output_index: int = 0,
                 block_size: int = 64, return_eigenvalues: bool = False):
    """The NADs of an architecture at initialisation, in order (see :func:`nad_gram` for the options).

    Returns:
        ``nads [D, H, W, C]`` (float64): ``nads[i]`` is the ``i``-th NAD, unit norm, orthogonal to
        the others, ordered by descending eigenvalue of :func:`nad_gram` (for ``"ntk"``: descending
        squared singular value of the mixed derivative, as the reference), each signed so that its
        largest-magnitude pixel is positive. With ``return_eigenvalues=True``:
        ``(eigenvalues [D], nads)``.
    """
    shape = _image_shape(input_shape)
    gram = nad_gram(model_factory, shape, num_inits=num_inits, seed=seed, method=method, eval_std=eval_std,
                    eval_point=eval_point, output_index=output_index, block_size=block_size)
    if not np.any(gram):
        raise InvalidOptionError(
            "the NAD matrix is zero: the network's input gradient does not depend on its weights at x0 "
            "(e.g. ReLU units that are all exactly off at x0 = 0 with zero biases); use a smooth "
            "activation such as GeLU (as the reference did) or eval_std > 0")
    values, vectors = ntk_eigendecomposition(gram)
    nads = vectors.T.reshape((-1, *shape))
    return (values, nads) if return_eigenvalues else nads


def nad_dataset(direction, num: int, *, epsilon: float = 1.0, noise_std: float = 1.0, seed: int = 0):
    """A linearly separable dataset whose only discriminative direction is ``direction``.

    Args:
        direction: ``[H, W, C]`` (or any shape), normalised to unit norm here.
        num: number of examples.
        epsilon: distance between the two classes along ``direction`` (margin ``epsilon / 2``).
        noise_std: standard deviation of the Gaussian noise, projected orthogonally to ``direction``.
        seed: seeds labels and noise.

    Returns:
        ``(x [num, *direction.shape] float32, y [num] int64 in {0, 1})`` with
        ``<x_i, v> = (epsilon / 2) (2 y_i - 1)`` and ``x_i - <x_i, v> v`` independent of ``y_i``.
    """
    v = np.asarray(direction, dtype=np.float64)
    if v.ndim == 0 or v.size == 0:
        raise ShapeError(f"direction must be an array (e.g. [H, W, C]), got shape {v.shape}")
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise InvalidOptionError("direction must be a finite, non-zero array")
    v = v / norm
    num = integer(num, "num", 1)
    seed = integer(seed, "seed", 0)
    epsilon, noise_std = number(epsilon, "epsilon", positive=True), number(noise_std, "noise_std", nonnegative=True)
    rng = derive_rng(seed, _DATA_STREAM)
    labels = rng.integers(0, 2, size=num).astype(np.int64)
    noise = noise_std * rng.standard_normal((num, v.size))
    flat = v.reshape(-1)
    noise -= np.outer(noise @ flat, flat)
    x = (epsilon / 2.0) * (2.0 * labels - 1.0)[:, None] * flat[None, :] + noise
    return x.reshape((num, *v.shape)).astype(np.float32), labels
