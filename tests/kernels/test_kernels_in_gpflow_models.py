"""The CNN-GP kernels train in every GPflow model out of the box (issue 14.1), and GPflow's own
utilities (summary, deepcopy, set_trainable, parameter_dict, SavedModel) work on them.

Real data: MNIST digits of the embedded sample, flattened to [N, 784] in [0, 1]. The paper's raw
ConvNet GP scale (K(x, x) ~ 3e12) saturated a Bernoulli likelihood (every gradient exactly 0);
the default, normalised kernel must make the loss fall from the first step.

Speed: XLA compiles the kernel once per kernel instance and pair-chunk shape, which costs far more
than the few training steps here. So the model tests share two kernels (the paper's ConvNet GP,
and a 2-layer version with ``pair_batch=36``, so that every call runs chunks of one shape), whose
parameters are reset before each test.
"""

import numpy as np
import pytest

gpflow = pytest.importorskip("gpflow")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tfbdl.data import load_embedded  # noqa: E402
from tfbdl.kernels import ConvNetKernel, paper_kernel  # noqa: E402
from tfbdl.kernels.presets import convnet_gp  # noqa: E402

NUM_INDUCING = 8


def _digits(counts: dict, seed: int):
    """``counts[c]`` MNIST digits of each class c, shuffled: X [N, 784] float64 in [0, 1], y [N]."""
    images, labels = load_embedded("mnist_sample", "train")
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), n, replace=False) for c, n in counts.items()])
    keep = rng.permutation(keep)
    return images[keep].reshape(keep.size, -1).astype(np.float64) / 255.0, labels[keep]


@pytest.fixture(scope="module")
def binary():
    """40 zeros and ones; y in {0, 1} as floats [N, 1] (Bernoulli's targets)."""
    X, y = _digits({0: 20, 1: 20}, seed=0)
    return X, y[:, None].astype(np.float64)


@pytest.fixture(scope="module")
def three_classes():
    """40 zeros, ones and twos; integer labels [N, 1] (MultiClass and Softmax take indices)."""
    X, y = _digits({0: 14, 1: 13, 2: 13}, seed=1)
    return X, y[:, None].astype(np.int64)


def _resettable(kernel):
    """A function returning ``kernel`` with its parameters set back to their initial values."""
    initial = gpflow.utilities.read_values(kernel)

    def reset():
        gpflow.utilities.multiple_assign(kernel, initial)
        return kernel

    return reset


@pytest.fixture(scope="module")
def _paper_module():
    return _resettable(paper_kernel("convnet_gp"))


@pytest.fixture
def paper(_paper_module):
    """The user's default kernel, ``paper_kernel("convnet_gp")``, with its initial parameters."""
    return _paper_module()


@pytest.fixture(scope="module")
def _shallow_module():
    return _resettable(ConvNetKernel(convnet_gp(depth=2, kernel_size=3), (28, 28, 1), pair_batch=36))


@pytest.fixture
def shallow(_shallow_module):
    """The paper's ConvNet GP variances with 2 layers of 3x3 convs (fast); normalised by default."""
    return _shallow_module()


def _loss_and_gradients(loss, variables):
    @tf.function(autograph=False)
    def compute():
        with tf.GradientTape() as tape:
            value = loss()
        return value, tape.gradient(value, variables)

    return compute


def _check_trains(model, loss, steps, learning_rate, named=()):
    """Gradients finite and non-zero at the start (each of the ``named`` variables' too: the
    kernel's variance and layer variances, the variational mean), then ``steps`` Adam steps;
    returns (loss before, loss after)."""
    variables = model.trainable_variables
    compute = _loss_and_gradients(loss, variables)
    before, gradients = compute()
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
    assert sum(float(tf.reduce_sum(tf.square(g))) for g in gradients) > 0
    by_variable = {id(v): g for v, g in zip(variables, gradients)}
    for variable in named:
        assert float(tf.reduce_max(tf.abs(by_variable[id(variable)]))) > 0, variable.name
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    adam.build(variables)
    for _ in range(steps):
        adam.apply_gradients(zip(compute()[1], variables))
    after = float(compute()[0])
    print(f"\n{type(model).__name__} / {type(model.likelihood).__name__}: loss {float(before):.3f} -> {after:.3f} "
          f"after {steps} Adam steps")
    return float(before), after


def _svgp(X, kernel, likelihood, num_latent_gps):
    Z = gpflow.inducing_variables.InducingPoints(X[:NUM_INDUCING].copy())
    return gpflow.models.SVGP(kernel, likelihood, Z, num_latent_gps=num_latent_gps, num_data=X.shape[0])


# --------------------------------------------------------------------------- scale


def test_default_paper_kernel_is_order_one_and_the_raw_values_stay_reachable(binary, paper):
    X = binary[0][:NUM_INDUCING]
    K = paper.K(X).numpy()
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_allclose(paper.K_diag(X).numpy(), np.diag(K), rtol=1e-12)
    assert np.all((np.diag(K) > 0.05) & (np.diag(K) <= 1.0)) and np.all(np.abs(K) <= 1.0)
    # variance * raw / raw(all-ones image); the raw kernel (normalise=False) is the paper's, ~3e12.
    raw = paper_kernel("convnet_gp", normalise=False)
    reference = float(raw.K_diag(np.ones((1, 784)))[0])
    assert float(paper.reference()) == reference
    raw_diag = raw.K_diag(X).numpy()
    assert np.all(raw_diag > 1e12)
    np.testing.assert_allclose(paper.K_diag(X).numpy(), raw_diag / reference, rtol=1e-13)
    # The raw kernel's variance is fixed at 1 (its 16 parameters are the paper's); the default's trains.
    assert len(raw.trainable_parameters) == 16 and len(paper.trainable_parameters) == 17
    doubled = paper_kernel("convnet_gp", variance=2.0)
    np.testing.assert_allclose(doubled.K_diag(X).numpy(), 2 * np.diag(K), rtol=1e-12)


# --------------------------------------------------------------------------- models


def test_gpr_regression_on_plus_minus_one_targets(binary, shallow):
    X, y = binary
    model = gpflow.models.GPR((X, 2 * y - 1), kernel=shallow, noise_variance=0.1)
    before, after = _check_trains(model, model.training_loss, steps=15, learning_rate=0.1,
                                  named=shallow.trainable_variables)
    assert after < before - 0.1 * abs(before)


def test_vgp_with_bernoulli(binary, shallow):
    X, y = binary
    model = gpflow.models.VGP((X, y), kernel=shallow, likelihood=gpflow.likelihoods.Bernoulli())
    before, after = _check_trains(model, model.training_loss, steps=15, learning_rate=0.1,
                                  named=[*shallow.trainable_variables, model.q_mu.unconstrained_variable])
    assert after < before - 0.1 * abs(before)


def test_svgp_with_bernoulli_and_the_paper_kernel_itself(binary, paper):
    """The issue's report: paper_kernel("convnet_gp"), SVGP, Bernoulli, 8 inducing points, Adam."""
    X, y = binary
    model = _svgp(X, paper, gpflow.likelihoods.Bernoulli(), 1)
    loss = model.training_loss_closure((X, y), compile=False)
    q_mu = model.q_mu.unconstrained_variable
    # At the paper's raw scale (variance = the reference) the likelihood saturates: no gradient.
    paper.variance.assign(float(paper.reference()))
    _, (gradient,) = _loss_and_gradients(loss, [q_mu])()
    assert float(tf.reduce_max(tf.abs(gradient))) == 0.0
    paper.variance.assign(1.0)
    before, after = _check_trains(model, loss, steps=10, learning_rate=0.1, named=[*paper.trainable_variables, q_mu])
    assert after < before - 0.05 * abs(before)


@pytest.mark.parametrize("likelihood", ["robustmax", "softmax"])
def test_multiclass_svgp(three_classes, shallow, likelihood):
    X, y = three_classes
    tf.random.set_seed(0)  # Softmax's expectations are Monte Carlo
    lik = (gpflow.likelihoods.MultiClass(3, invlink=gpflow.likelihoods.RobustMax(3)) if likelihood == "robustmax"
           else gpflow.likelihoods.Softmax(3))
    model = _svgp(X, shallow, lik, 3)
    before, after = _check_trains(model, model.training_loss_closure((X, y), compile=False), steps=15,
                                  learning_rate=0.1,
                                  named=[*shallow.trainable_variables, model.q_mu.unconstrained_variable])
    assert after < before - 0.05 * abs(before)


# --------------------------------------------------------------------------- GPflow utilities


def _fresh_kernel():
    return ConvNetKernel(convnet_gp(depth=2, kernel_size=3), (28, 28, 1))


def test_print_summary_lists_the_variance(capsys):
    gpflow.utilities.print_summary(_fresh_kernel())
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "ConvNetKernel.variance " in line]
    assert "Softplus" in row and "True" in row  # positive, trainable


def test_deepcopy_gives_an_identical_kernel(binary):
    X = binary[0][:3]
    kernel = _fresh_kernel()
    kernel.variance.assign(1.7)
    K = kernel.K(X).numpy()
    copy = gpflow.utilities.deepcopy(kernel)
    np.testing.assert_array_equal(copy.K(X).numpy(), K)
    copy.variance.assign(0.5)  # the copy's parameters are its own
    assert float(kernel.variance.numpy()) == pytest.approx(1.7)


def test_set_trainable_and_parameter_dict():
    kernel = _fresh_kernel()
    assert len(kernel.trainable_variables) == 7  # 2 convs and the readout (weight, bias each), the variance
    gpflow.set_trainable(kernel, False)
    assert kernel.trainable_variables == ()
    parameters = gpflow.utilities.parameter_dict(kernel)
    assert ".variance" in parameters and float(parameters[".variance"].numpy()) == 1.0


def test_saved_model_of_a_gpr_predicts_identically(binary, shallow, tmp_path):
    X, y = binary
    model = gpflow.models.GPR((X[:12], 2 * y[:12] - 1), kernel=shallow, noise_variance=0.1)
    module = tf.Module()
    module.model = model
    module.predict_f = tf.function(lambda x: model.predict_f(x),
                                   input_signature=[tf.TensorSpec([None, 784], tf.float64)])
    Xnew = X[12:17]
    mean, var = (t.numpy() for t in module.predict_f(Xnew))
    tf.saved_model.save(module, str(tmp_path / "gpr"))
    loaded = tf.saved_model.load(str(tmp_path / "gpr"))
    mean2, var2 = (t.numpy() for t in loaded.predict_f(Xnew))
    np.testing.assert_allclose(mean2, mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(var2, var, rtol=0, atol=1e-12)
    assert np.all(var > 0) and not np.allclose(mean, 0)
