"""NTK eigenfunctions (orthonormality, reconstruction, order, labels, alignment, files) and NADs
(a circulant model whose NADs are the Fourier basis, a brute-force mixed-derivative reference,
the gradient-covariance estimator, orthonormality) and the linearly separable NAD datasets."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbdl.errors import DataFormatError, InvalidOptionError, ShapeError
from tfbdl.io import save_h5
from tfbdl.nn import mlp
from tfbdl.ntk.eigen import (alignment, binary_labels, eigenfunction_labels, fix_signs, load_eigen,
                             ntk_eigendecomposition, save_eigen)
from tfbdl.ntk.nads import compute_nads, nad_dataset, nad_gram


def random_gram(n=30, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, rank or n + 5))
    return a @ a.T


# --------------------------------------------------------------------------- eigen


@pytest.mark.parametrize("n,rank", [(30, None), (25, 6), (1, None)])
def test_eigendecomposition_orthonormal_reconstructs_descending(n, rank):
    gram = random_gram(n, rank)
    values, vectors = ntk_eigendecomposition(gram)
    assert values.shape == (n,) and vectors.shape == (n, n) and vectors.dtype == np.float64
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(n), rtol=0, atol=1e-10)
    np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, gram, rtol=0,
                               atol=1e-10 * np.abs(gram).max())
    assert np.all(np.diff(values) <= 0)
    np.testing.assert_allclose(gram @ vectors[:, 0], values[0] * vectors[:, 0], atol=1e-9 * values[0])
    # sign convention: the largest-magnitude entry of each eigenvector is positive
    pivots = np.argmax(np.abs(vectors), axis=0)
    assert np.all(vectors[pivots, np.arange(n)] > 0)


def test_top_k_matches_full_and_float32_input():
    gram = random_gram(40, seed=1)
    values, vectors = ntk_eigendecomposition(gram)
    top_values, top_vectors = ntk_eigendecomposition(gram, k=5)
    np.testing.assert_allclose(top_values, values[:5], rtol=1e-12)
    np.testing.assert_allclose(top_vectors, vectors[:, :5], atol=1e-9)
    v32, _ = ntk_eigendecomposition(gram.astype(np.float32))  # float32 rounding is symmetric enough
    np.testing.assert_allclose(v32, values, rtol=1e-5, atol=1e-4 * values[0])


def test_eigendecomposition_rejects_bad_matrices():
    with pytest.raises(ShapeError):
        ntk_eigendecomposition(np.ones((3, 4)))
    with pytest.raises(InvalidOptionError, match="not symmetric"):
        ntk_eigendecomposition(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(InvalidOptionError, match="NaN"):
        ntk_eigendecomposition(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(InvalidOptionError):
        ntk_eigendecomposition(np.eye(3), k=4)


def test_eigenfunction_labels_are_the_signs():
    _, vectors = ntk_eigendecomposition(random_gram(20, seed=2))
    for k in (0, 3, 19):
        labels = eigenfunction_labels(vectors, k)
        assert labels.dtype == np.int64 and set(np.unique(labels)) <= {-1, 1}
        np.testing.assert_array_equal(labels, np.sign(vectors[:, k]).astype(np.int64))
    # tie rule: an exact zero is -1 (class 0 in the reference's binarisation)
    v = np.array([[0.5, 0.0], [0.0, 1.0], [-0.5, 0.0]])
    np.testing.assert_array_equal(eigenfunction_labels(v, 0), [1, -1, -1])
    np.testing.assert_array_equal(binary_labels(eigenfunction_labels(v, 0)), [1, 0, 0])
    with pytest.raises(InvalidOptionError):
        eigenfunction_labels(v, 2)
    with pytest.raises(ShapeError):
        eigenfunction_labels(v[:, 0], 0)


def test_fix_signs():
    v = np.array([[-3.0, 1.0], [2.0, -1.0]])
    np.testing.assert_array_equal(fix_signs(v), [[3.0, 1.0], [-2.0, -1.0]])


def test_alignment():
    rng = np.random.default_rng(3)
    y = np.where(rng.normal(size=15) > 0, 1.0, -1.0)
    assert alignment(np.outer(y, y), y) == pytest.approx(1.0, abs=1e-12)
    assert alignment(3.0 * np.outer(y, y), y) == pytest.approx(1.0, abs=1e-12)
    assert alignment(-np.outer(y, y), y) == pytest.approx(-1.0, abs=1e-12)
    for seed in range(5):
        gram = rng.normal(size=(15, 15))
        gram = gram + gram.T
        a = alignment(gram, rng.normal(size=15))
        assert -1.0 <= a <= 1.0
        assert 0.0 <= alignment(random_gram(15, seed=seed), y) <= 1.0  # PSD kernel
    # the alignment of an eigenvector task is lambda_k / ||Theta||_F
    gram = random_gram(15, seed=9)
    values, vectors = ntk_eigendecomposition(gram)
    assert alignment(gram, vectors[:, 2]) == pytest.approx(values[2] / np.linalg.norm(gram), rel=1e-10)
    with pytest.raises(ShapeError):
        alignment(np.eye(3), np.ones(4))
    with pytest.raises(InvalidOptionError):
        alignment(np.eye(3), np.zeros(3))


def test_save_and_load_eigen(tmp_path):
    model = mlp((4,), 1, (3,), seed=0)
    gram = random_gram(12, seed=4)
    values, vectors = ntk_eigendecomposition(gram, k=6)
    inputs = np.random.default_rng(0).normal(size=(12, 3)).astype("float32")
    path = tmp_path / "eigen.h5"
    save_eigen(path, values, vectors, weights=model, inputs=inputs, attrs={"model": "mlp", "seed": 0})
    assert sorted(os.listdir(tmp_path)) == ["eigen.h5"]  # atomic: no temp file left
    got = load_eigen(path)
    np.testing.assert_array_equal(got.eigenvalues, values)
    np.testing.assert_array_equal(got.eigenvectors, vectors)
    np.testing.assert_array_equal(got.inputs, inputs)
    assert got.attrs == {"model": "mlp", "seed": 0}
    assert got.weight_names == tuple(v.path for v in model.weights)
    other = mlp((4,), 1, (3,), seed=7)
    other.set_weights(list(got.weights))
    np.testing.assert_array_equal(other(inputs).numpy(), model(inputs).numpy())
    # a list of arrays works too, and nothing at all
    save_eigen(path, values, vectors, weights=model.get_weights())
    assert len(load_eigen(path).weights) == len(model.weights) and load_eigen(path).inputs is None
    save_eigen(path, values, vectors)
    assert load_eigen(path).weights == ()
    with pytest.raises(ShapeError):
        save_eigen(path, values[:3], vectors)
    with pytest.raises(ShapeError):
        save_eigen(path, values, vectors, inputs=inputs[:5])
    save_h5(tmp_path / "other.h5", {"x": np.zeros(3)})
    with pytest.raises(DataFormatError):
        load_eigen(tmp_path / "other.h5")


# --------------------------------------------------------------------------- NADs


def circulant(w):
    """The matrix of the circular convolution ``x -> w * x`` on row-major flattened [H, W] images."""
    h, wd = w.shape
    idx = np.arange(h * wd)
    i, j = np.divmod(idx, wd)
    return w[(i[:, None] - i[None, :]) % h, (j[:, None] - j[None, :]) % wd]


def circulant_factory(kernel, built=None):
    """``f(x) = a^T C x + b`` with a fixed circular convolution C and a trainable readout ``a``.

    Its input gradient is ``g = C^T a`` so ``J = dg/da = C^T`` and the NAD matrix is ``C^T C``:
    circulant, diagonalised by the 2-D Fourier basis with eigenvalues ``|fft2(kernel)|^2``.
    """
    h, w = kernel.shape
    c = circulant(kernel)

    def factory(seed):
        inputs = keras.Input((h, w, 1))
        flat = keras.layers.Flatten()(inputs)
        conv = keras.layers.Dense(h * w, use_bias=False, trainable=False, name="circular_conv")
        readout = keras.layers.Dense(1, kernel_initializer=keras.initializers.RandomNormal(seed=seed),
                                     name="readout")
        model = keras.Model(inputs, readout(conv(flat)))
        conv.kernel.assign(c.T.astype("float32"))  # Dense computes x @ kernel = (C x)^T
        if built is not None:
            built.append(model)
        return model

    return factory


def test_circulant_nads_are_the_fourier_basis():
    h, w = 4, 5
    kernel = np.random.default_rng(11).normal(size=(h, w))
    power = np.abs(np.fft.fft2(kernel)) ** 2
    levels = np.unique(np.round(power / power.max(), 6))
    assert np.min(np.diff(levels)) > 1e-3  # distinct eigenvalues apart from the (k, -k) pairs
    values, nads = compute_nads(circulant_factory(kernel), (h, w, 1), num_inits=2, seed=0, block_size=7,
                                return_eigenvalues=True)
    assert nads.shape == (h * w, h, w, 1)
    np.testing.assert_allclose(values, np.sort(power.ravel())[::-1], rtol=1e-5, atol=1e-5 * power.max())
    for value, nad in zip(values, nads):
        spectrum = np.abs(np.fft.fft2(nad[..., 0])) ** 2
        here = np.abs(power - value) <= 1e-4 * power.max()
        assert here.any()
        # all of the NAD's energy sits on the frequencies whose |w_hat|^2 is its eigenvalue
        assert spectrum[~here].sum() <= 1e-8 * spectrum.sum()
    flat = nads.reshape(h * w, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(h * w), atol=1e-10)


def test_gradient_covariance_method_matches_numpy():
    kernel = np.random.default_rng(12).normal(size=(3, 4))
    built = []
    gram = nad_gram(circulant_factory(kernel, built), (3, 4, 1), num_inits=6, seed=2, method="gradient")
    assert len(built) == 6
    c = circulant(kernel)
    grads = np.stack([c.T @ m.get_layer("readout").kernel.numpy()[:, 0].astype(np.float64) for m in built])
    np.testing.assert_allclose(gram, np.cov(grads, rowvar=False), rtol=1e-5, atol=1e-6)


def small_cnn_factory(seed):
    """conv (gelu) -> BN with non-trivial statistics -> conv stride 2 -> dense: a non-linear NAD case."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 2))
    h = keras.layers.Conv2D(3, 3, padding="same", activation="gelu")(inputs)
    bn = keras.layers.BatchNormalization()
    h = bn(h)
    h = keras.layers.Conv2D(2, 1, strides=2, activation="tanh")(h)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 3).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 3).astype("float32"))
    return model


def reference_mixed_gram(model, x0, output_index=0):
    """``J J^T`` with ``J = d grad_x f / d theta`` row by row with plain nested tapes."""
    params = [tf.convert_to_tensor(v.value) for v in model.trainable_variables]
    state = [tf.convert_to_tensor(v.value) for v in model.non_trainable_variables]
    x = tf.constant(x0[None])
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(params)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reshape(model.stateless_call(params, state, x, training=False)[0], [-1])[output_index]
        g = tf.reshape(inner.gradient(y, x), [-1])
        entries = [g[i] for i in range(g.shape[0])]
    rows = [np.concatenate([t.numpy().ravel() for t in
                            outer.gradient(e, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)])
            for e in entries]
    jac = np.asarray(rows, np.float64)
    return jac @ jac.T


def test_mixed_derivative_gram_matches_brute_force():
    built = []

    def factory(seed):
        built.append(small_cnn_factory(seed))
        return built[-1]

    x0 = np.random.default_rng(0).normal(size=(4, 4, 2)).astype("float32")
    gram = nad_gram(factory, (4, 4, 2), num_inits=2, seed=1, eval_point=x0, block_size=7, output_index=1)
    expected = np.mean([reference_mixed_gram(m, x0, output_index=1) for m in built], axis=0)
    np.testing.assert_allclose(gram, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    values, nads = compute_nads(factory, (4, 4, 2), num_inits=2, seed=1, eval_point=x0, output_index=1,
                                return_eigenvalues=True)
    flat = nads.reshape(32, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(32), atol=1e-10)
    assert np.all(np.diff(values) <= 0)
    # each NAD is an eigenvector of the brute-force matrix with its eigenvalue
    top = flat[0]
    np.testing.assert_allclose(expected @ top, values[0] * top, atol=1e-3 * values[0])


def test_nads_at_zero_and_random_eval_point_are_reproducible():
    a = compute_nads(small_cnn_factory, (4, 4, 2), seed=3)
    b = compute_nads(small_cnn_factory, (4, 4, 2), seed=3, block_size=32)
    np.testing.assert_allclose(a, b, atol=1e-6)
    c = compute_nads(small_cnn_factory, (4, 4, 2), seed=3, eval_std=1.0)
    assert c.shape == (32, 4, 4, 2) and not np.allclose(np.abs(a[0]), np.abs(c[0]), atol=1e-3)


def test_nad_errors():
    def relu_no_bias(seed):
        inputs = keras.Input((3, 3, 1))
        h = keras.layers.Conv2D(2, 2, use_bias=False, activation="relu",
                                kernel_initializer=keras.initializers.RandomNormal(seed=seed))(inputs)
        return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(h)))

    with pytest.raises(InvalidOptionError, match="GeLU"):
        compute_nads(relu_no_bias, (3, 3, 1))  # every ReLU exactly off at x0 = 0
    assert compute_nads(relu_no_bias, (3, 3, 1), eval_std=1.0).shape == (9, 3, 3, 1)
    with pytest.raises(InvalidOptionError):
        nad_gram(relu_no_bias, (3, 3, 1), method="svd")
    with pytest.raises(InvalidOptionError):
        nad_gram(relu_no_bias, (3, 3, 1), method="gradient", num_inits=1)
    with pytest.raises(InvalidOptionError):
        nad_gram(lambda seed: "model", (3, 3, 1))
    with pytest.raises(ShapeError):
        nad_gram(relu_no_bias, (4, 4, 1))
    with pytest.raises(ShapeError):
        nad_gram(relu_no_bias, (3, 3))
    with pytest.raises(InvalidOptionError):
        nad_gram(relu_no_bias, (3, 3, 1), output_index=1)


# --------------------------------------------------------------------------- NAD datasets


def test_nad_dataset_is_separable_along_the_direction_only():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=(4, 4, 2))
    v = direction / np.linalg.norm(direction)
    num, eps, std = 20000, 0.6, 2.0
    x, y = nad_dataset(3.0 * direction, num, epsilon=eps, noise_std=std, seed=5)  # any norm
    assert x.shape == (num, 4, 4, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1} and 0.45 < y.mean() < 0.55
    flat = x.reshape(num, -1).astype(np.float64)
    proj = flat @ v.ravel()
    np.testing.assert_allclose(proj, eps / 2 * (2 * y - 1), atol=1e-5)  # exactly separable, margin eps/2
    # orthogonal to v: zero-mean label-independent noise of variance std^2 (D - 1 directions)
    basis = np.linalg.qr(np.column_stack([v.ravel(), rng.normal(size=(32, 31))]))[0][:, 1:]
    ortho = flat @ basis
    diff = ortho[y == 1].mean(axis=0) - ortho[y == 0].mean(axis=0)
    sd = std * np.sqrt(1 / (y == 1).sum() + 1 / (y == 0).sum())
    assert np.max(np.abs(diff)) < 5 * sd
    np.testing.assert_allclose(ortho.std(axis=0), std, rtol=0.05)
    # reproducible from the seed
    x2, y2 = nad_dataset(direction, num, epsilon=eps, noise_std=std, seed=5)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_allclose(x, x2, atol=1e-6)


def test_nad_dataset_errors():
    with pytest.raises(InvalidOptionError):
        nad_dataset(np.zeros((2, 2, 1)), 10)
    with pytest.raises(InvalidOptionError):
        nad_dataset(np.ones((2, 2, 1)), 0)
    with pytest.raises(InvalidOptionError):
        nad_dataset(np.ones((2, 2, 1)), 10, epsilon=0.0)
    with pytest.raises(InvalidOptionError):
        nad_dataset(np.ones((2, 2, 1)), 10, noise_std=-1.0)
    x, _ = nad_dataset(np.ones((2, 2, 1)), 10, noise_std=0.0)
    np.testing.assert_allclose(np.abs(x), 0.25, atol=1e-7)
