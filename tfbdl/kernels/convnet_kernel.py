"""A network description from :mod:`tfbdl.kernels.layers` as a ``gpflow.kernels.Kernel``: its NNGP
(:class:`ConvNetKernel`) or its neural tangent kernel (:func:`convnet_ntk`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import gpflow
from check_shapes import check_shapes
from gpflow.utilities import positive

from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.kernels.layers import Layer, MapState, PairIndex
from tfbdl.validate import integer, positive_number

__all__ = ["ConvNetKernel", "KINDS", "convnet_ntk"]

KINDS = ("nngp", "ntk")


class ConvNetKernel(gpflow.kernels.Kernel):
    """The NNGP (or NTK) kernel of an infinitely wide CNN, over images flattened to ``[N, H*W*C]``.

    ``network`` must end in a layer that reduces the feature map to 1x1 (``Readout()``). The
    kernel is computed in the dtype of its inputs (float64 is right for a Cholesky; float32 is
    about twice as fast). A network with average pooling runs on the full-covariance path
    (see :mod:`tfbdl.kernels.layers`), whose memory and time grow with (H W)^2 per pair. ``K(X)`` evaluates only the upper triangle of pairs and mirrors it;
    pairs are processed ``pair_batch`` at a time, so memory stays bounded for large inputs.

    Scale. With ``normalise=True`` (the default) the kernel is

        ``K(x, y) = variance * K_raw(x, y) / K_raw(1, 1)``

    where ``K_raw`` is the recursion of the network as written and ``1`` is the all-ones image of
    ``image_shape`` (the brightest image of ``[0, 1]^D``). The reference ``K_raw(1, 1)`` depends
    on the network's parameters only, never on data, and is recomputed from them (so gradients
    with respect to the layer variances see it). A network's raw values can be huge (the paper's
    ConvNet GP gives ``K_raw(x, x) ~ 3e12`` on MNIST, which saturates a classification
    likelihood); normalised, they are O(1): in ReLU networks (NNGP and NTK) and erf NNGPs a
    sample's variance grows with each pixel's ``x^2``, so every image in ``[0, 1]`` has
    ``K(x, x) <= variance`` and ``|K(x, y)| <= variance`` (1,000 MNIST digits under the three
    presets: 0.04 to 0.44 times ``variance``, median about 0.2). ``variance`` is a positive
    ``gpflow.Parameter``, trainable.

    With ``normalise=False`` the kernel is ``variance * K_raw`` and ``variance`` is fixed (not
    trainable: the readout's variances already set the raw scale; ``gpflow.set_trainable(
    kernel.variance, True)`` trains it anyway), so the default ``variance=1`` gives the paper's
    values exactly. Kernel matrices stored for the paper's experiments use this raw kernel.
    """

    def __init__(self, network: Layer, image_shape, *, kind: str = "nngp", variance: float = 1.0,
                 normalise: bool = True, pair_batch: int = 2048, name: str | None = None):
        super().__init__(name=name)
        if kind not in KINDS:
            raise InvalidOptionError(f"kind must be one of {KINDS}, got {kind!r}")
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise InvalidOptionError(f"image_shape must be (height, width, channels), got {image_shape}")
        pair_batch = integer(pair_batch, "pair_batch", 1)
        variance = positive_number(variance, "variance")
        self.network = network
        self.image_shape = image_shape
        self.kind = kind
        self.pair_batch = int(pair_batch)
        self.normalise = bool(normalise)
        self.variance = gpflow.Parameter(variance, transform=positive(), trainable=self.normalise, name="variance")
        if self.normalise:
            reference = float(self.reference(tf.float64))
            if not np.isfinite(reference) or reference <= 0:
                raise InvalidOptionError(f"the network's kernel of the all-ones image is {reference}, so it cannot "
                                         "be normalised by it; pass normalise=False (and set variance yourself)")

    # ------------------------------------------------------------------ inputs
    def _images(self, X) -> tf.Tensor:
        """[N, H*W*C] -> [N, H, W, C], with a clear error for a wrong width."""
        X = tf.convert_to_tensor(X)
        size = int(np.prod(self.image_shape))
        if X.shape.rank != 2 or X.shape[-1] != size:
            raise ShapeError(f"inputs must be images flattened to [N, {size}] for image shape "
                             f"{self.image_shape}, got {X.shape}")
        return tf.reshape(X, (-1, *self.image_shape))

    @property
    def full_covariance(self) -> bool:
        """Whether the network pools, so pairs carry [H, W, H, W] maps (memory (H W)^2 per pair)."""
        return self.network.uses_pooling

    def _steps(self) -> int:
        """Pairs per compiled step: ``pair_batch`` location maps' worth of memory in either path."""
        if not self.full_covariance:
            return self.pair_batch
        return max(1, self.pair_batch // (self.image_shape[0] * self.image_shape[1]))

    @staticmethod
    def _covariances(x: tf.Tensor, y: tf.Tensor, full: bool) -> tf.Tensor:
        """Input covariances of aligned samples x[p], y[p]: [P, H, W] or [P, H, W, H, W]."""
        if full:
            return tf.einsum("phwc,pklc->phwkl", x, y) / x.shape[-1]
        return tf.reduce_mean(x * y, axis=-1)

    def _trace(self, images: tf.Tensor) -> tuple[MapState, list]:
        """Per-sample variance maps through the network, and their values at each nonlinearity."""
        variances = self._covariances(images, images, self.full_covariance)  # [N, H, W(, H, W)]
        trace: list = []
        start = MapState(variances, tf.zeros_like(variances) if self.kind == "ntk" else None)
        return self.network.variance(start, trace), trace

    def _result(self, state: MapState) -> tf.Tensor:
        maps = state.ntk if self.kind == "ntk" else state.nngp
        if maps.shape[-2:] != (1, 1):
            raise ShapeError(f"the network ends with {tuple(maps.shape[-2:])} feature maps; end it with "
                             "Readout() (or a conv the size of the feature map) to get one value per pair")
        return maps[:, 0, 0]

    # ------------------------------------------------------------------ scale
    def reference(self, dtype=None) -> tf.Tensor:
        """``K_raw(1, 1)``: the raw kernel of the all-ones image, the normalising constant
        (a scalar in ``dtype``, default gpflow's float; differentiable in the layer variances)."""
        dtype = gpflow.default_float() if dtype is None else tf.as_dtype(dtype)
        state, _ = self._trace(tf.ones((1, *self.image_shape), dtype=dtype))
        return self._result(state)[0]

    def scale(self, dtype=None) -> tf.Tensor:
        """The factor applied to the raw recursion: ``variance / K_raw(1, 1)`` if ``normalise``,
        else ``variance``."""
        dtype = gpflow.default_float() if dtype is None else tf.as_dtype(dtype)
        variance = tf.cast(tf.convert_to_tensor(self.variance), dtype)
        return variance / self.reference(dtype) if self.normalise else variance

    # ------------------------------------------------------------------ gpflow API
    @check_shapes("X: [N, D]", "return: [N]")
    def K_diag(self, X):
        state, _ = self._trace(self._images(X))
        values = self._result(state)
        return values * self.scale(values.dtype)

    @check_shapes("X: [N, D]", "X2: [M, D]", "return: [N, M]")
    def K(self, X, X2=None):
        values = self._raw_K(X, X2)
        # One scalar times every entry: a symmetric K(X) stays exactly symmetric.
        return values * self.scale(values.dtype)

    def _raw_K(self, X, X2=None) -> tf.Tensor:
        """The network's recursion as written (no variance, no normalisation)."""
        x = self._images(X)
        _, trace_x = self._trace(x)
        n = x.shape[0]
        if n is None or (X2 is not None and self._images(X2).shape[0] is None):
            return self._dynamic_grid(x, trace_x, X2)
        if X2 is None:
            rows, cols = np.triu_indices(n)
            values = self._pair_values(x, x, trace_x, trace_x, rows, cols, same=rows == cols)
            upper = tf.scatter_nd(np.stack([rows, cols], axis=1), values, (n, n))
            return upper + tf.transpose(upper) - tf.linalg.diag(tf.linalg.diag_part(upper))
        y = self._images(X2)
        _, trace_y = self._trace(y)
        m = y.shape[0]
        rows, cols = np.repeat(np.arange(n), m), np.tile(np.arange(m), n)
        values = self._pair_values(x, y, trace_x, trace_y, rows, cols, same=np.zeros(rows.size, bool))
        return tf.reshape(values, (n, m))

    def _dynamic_grid(self, x, trace_x, X2) -> tf.Tensor:
        """K for inputs whose number is unknown when traced (e.g. mini-batches inside a
        tf.function): every pair in one step. K(X) stays exactly symmetric, since each entry
        and its mirror are computed from the same products."""
        y, trace_y = (x, trace_x) if X2 is None else (self._images(X2), self._trace(self._images(X2))[1])
        n, m = tf.shape(x)[0], tf.shape(y)[0]
        rows, cols = tf.repeat(tf.range(n), m), tf.tile(tf.range(m), [n])
        same = tf.equal(rows, cols) if X2 is None else tf.zeros_like(rows, dtype=tf.bool)
        return tf.reshape(self._chunk_values(x, y, trace_x, trace_y, rows, cols, same), (n, m))

    def _pair_values(self, x, y, trace_x, trace_y, rows, cols, same) -> tf.Tensor:
        """Kernel values [P] of the pairs (x[rows[p]], y[cols[p]]), ``pair_batch`` at a time."""
        if rows.size == 0:
            return tf.zeros((0,), dtype=x.dtype)
        size = min(self._steps(), rows.size)
        chunks = []
        for start in range(0, rows.size, size):
            r, c, s = (a[start:start + size] for a in (rows, cols, same))
            count = r.size
            if count < size:
                # Pad to one compiled shape. Padding pairs are marked same-sample, which takes
                # the exact path (no arccos(1) whose infinite gradient would poison the rest).
                r, c, s = (np.concatenate([a, np.full(size - count, fill, a.dtype)])
                           for a, fill in ((r, 0), (c, 0), (s, True)))
            values = self._chunk_values(x, y, trace_x, trace_y, tf.constant(r), tf.constant(c), tf.constant(s))
            chunks.append(values[:count])
        return tf.concat(chunks, axis=0)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def _chunk_values(self, x, y, trace_x, trace_y, rows, cols, same):
        """One compiled step: kernel values [P] of the pairs (x[rows], y[cols])."""
        cross = self._covariances(tf.gather(x, rows), tf.gather(y, cols), self.full_covariance)
        pairs = PairIndex(trace_x, trace_y, rows, cols, same)
        start_state = MapState(cross, tf.zeros_like(cross) if self.kind == "ntk" else None)
        return self._result(self.network.cross(start_state, pairs))


def convnet_ntk(network: Layer, image_shape, **options) -> ConvNetKernel:
    """The neural tangent kernel of a network description (``kind="ntk"``), as a GPflow kernel (normalised the same way:
    ``variance * NTK_raw / NTK_raw(1, 1)`` unless ``normalise=False``)."""
    return ConvNetKernel(network, image_shape, kind="ntk", **options)
