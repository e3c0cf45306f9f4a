"""PrecomputedKernel: Gram-matrix look-ups as a GPflow kernel, alone and inside GPR / SVGP."""

import numpy as np
import pytest

gpflow = pytest.importorskip("gpflow")
tf = pytest.importorskip("tensorflow")

from tfbdl.errors import InvalidOptionError, ShapeError  # noqa: E402
from tfbdl.gp.precomputed import PrecomputedKernel, gram_constant, index_inputs  # noqa: E402


def rbf_gram(n, seed=0):
    """Points on a line and their squared-exponential Gram matrix (the closed form to compare with)."""
    x = np.sort(np.random.default_rng(seed).uniform(-3, 3, n))[:, None]
    return x, np.exp(-0.5 * (x - x.T) ** 2)


@pytest.mark.parametrize("variance", [1.0, 0.3, 4.5])
@pytest.mark.parametrize("rows, cols", [([0, 3, 7], [1, 2]), ([5, 5, 0], [9]), (list(range(10)), list(range(10)))])
def test_K_is_the_sliced_matrix_times_variance(variance, rows, cols):
    _, G = rbf_gram(10)
    k = PrecomputedKernel(G, variance=variance)
    got = k.K(index_inputs(np.array(rows)), index_inputs(np.array(cols))).numpy()
    np.testing.assert_allclose(got, variance * G[np.ix_(rows, cols)], rtol=1e-12)
    sym = k.K(index_inputs(np.array(rows))).numpy()
    np.testing.assert_allclose(sym, variance * G[np.ix_(rows, rows)], rtol=1e-12)
    np.testing.assert_allclose(sym, sym.T)


def test_K_diag_equals_the_diagonal_of_K():
    _, G = rbf_gram(8)
    G = G + np.diag(np.linspace(0.1, 0.8, 8))  # a diagonal that is not constant
    k = PrecomputedKernel(G, variance=2.0)
    X = index_inputs(np.array([7, 2, 2, 0]))
    np.testing.assert_allclose(k.K_diag(X).numpy(), np.diag(k.K(X).numpy()), rtol=1e-12)
    np.testing.assert_allclose(k(X, full_cov=False).numpy(), 2.0 * np.diag(G)[[7, 2, 2, 0]], rtol=1e-12)


def test_shared_gram_tensor_and_positive_trainable_variance():
    _, G = rbf_gram(6)
    shared = gram_constant(G)
    a, b = PrecomputedKernel(shared), PrecomputedKernel(shared, variance=3.0)
    assert a.gram is b.gram  # one copy of the matrix for many kernels
    assert [p.name for p in a.trainable_parameters] == ["softplus"]
    assert a.variance.transform is not None and float(a.variance.numpy()) == 1.0


def test_bad_inputs_are_refused():
    _, G = rbf_gram(5)
    with pytest.raises(ShapeError):
        PrecomputedKernel(np.ones((3, 4)))
    with pytest.raises(InvalidOptionError, match="not symmetric"):
        PrecomputedKernel(G + np.triu(np.ones((5, 5)), 1))
    with pytest.raises(InvalidOptionError, match="NaN"):
        PrecomputedKernel(np.full((2, 2), np.nan))
    with pytest.raises(InvalidOptionError):
        PrecomputedKernel(G, variance=0.0)
    k = PrecomputedKernel(G)
    with pytest.raises(tf.errors.InvalidArgumentError, match="index >= N"):
        k.K(index_inputs(np.array([0, 5])))
    with pytest.raises(Exception):
        k.K(np.zeros((3, 2)))  # inputs are indices [n, 1], not feature vectors


def test_gpr_with_the_lookup_matches_gpr_with_the_kernel_itself():
    x, G = rbf_gram(12, seed=1)
    y = np.sin(2 * x)
    X = index_inputs(np.arange(12))
    lookup = gpflow.models.GPR((X, y), PrecomputedKernel(G, variance=1.7), noise_variance=0.05)
    direct = gpflow.models.GPR((x, y), gpflow.kernels.SquaredExponential(variance=1.7, lengthscales=1.0),
                               noise_variance=0.05)
    np.testing.assert_allclose(lookup.log_marginal_likelihood().numpy(), direct.log_marginal_likelihood().numpy(),
                               rtol=1e-10)
    mean_a, var_a = lookup.predict_f(X[[0, 5, 11]])
    mean_b, var_b = direct.predict_f(x[[0, 5, 11]])
    np.testing.assert_allclose(mean_a.numpy(), mean_b.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(var_a.numpy(), var_b.numpy(), rtol=1e-8, atol=1e-12)


def test_variance_is_learnt_by_marginal_likelihood():
    x, G = rbf_gram(40, seed=2)
    rng = np.random.default_rng(0)
    y = np.linalg.cholesky(9.0 * G + 1e-6 * np.eye(40)) @ rng.standard_normal((40, 3))  # drawn with variance 9
    model = gpflow.models.GPR((index_inputs(np.arange(40)), y), PrecomputedKernel(G), noise_variance=1e-3)
    gpflow.set_trainable(model.likelihood.variance, False)
    gpflow.optimizers.Scipy().minimize(model.training_loss, model.trainable_variables)
    assert 3.0 < float(model.kernel.variance.numpy()) < 20.0


def test_svgp_on_indices_matches_svgp_on_the_points():
    x, G = rbf_gram(30, seed=3)
    y = (np.sin(2 * x) > 0).astype(np.float64)
    Z = [0, 7, 14, 21, 29]
    X = index_inputs(np.arange(30))
    models = []
    for kernel, inputs, inducing in ((PrecomputedKernel(G), X, X[Z]),
                                     (gpflow.kernels.SquaredExponential(), x, x[Z])):
        m = gpflow.models.SVGP(kernel, gpflow.likelihoods.Bernoulli(), inducing, num_data=30)
        gpflow.set_trainable(m.inducing_variable, False)
        gpflow.set_trainable(m.kernel, False)
        gpflow.optimizers.Scipy().minimize(m.training_loss_closure((inputs, y)), m.trainable_variables,
                                           options={"maxiter": 200})
        models.append((m, inputs))
    elbos = [float(m.elbo((inputs, y))) for m, inputs in models]
    np.testing.assert_allclose(elbos[0], elbos[1], rtol=1e-5)
    assert elbos[0] > -30 * np.log(2)  # better than a coin


def test_one_vs_all_svgp_takes_index_inputs():
    from tfbdl.gp.svgp import OneVsAllSVGP

    x, G = rbf_gram(60, seed=4)
    y = np.digitize(x[:, 0], [-1.0, 1.0])  # three classes along the line
    shared = gram_constant(G)
    clf = OneVsAllSVGP(lambda: PrecomputedKernel(shared), 3, 20, seed=0)
    X = index_inputs(np.arange(60))
    clf.fit(X, y, steps=60, batch_size=60, learning_rate=0.05)
    assert np.mean(clf.predict(X) == y) > 0.9
    true_elbo = clf.elbo().sum()
    shuffled = OneVsAllSVGP(lambda: PrecomputedKernel(shared), 3, 20, seed=0)
    shuffled.fit(X, np.random.default_rng(0).permutation(y), steps=60, batch_size=60, learning_rate=0.05)
    assert true_elbo > shuffled.elbo().sum()  # structured labels are more probable than shuffled ones
