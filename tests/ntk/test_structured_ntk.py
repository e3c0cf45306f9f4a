"""Tests of the "structured" NTK strategy (tfbdl.ntk.structured): equal to the plain
tape.jacobian strategy on Dense / Conv2D models, a clear error on other models, and its place
in choose_strategy."""

import keras
import numpy as np
import pytest

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import lenet5, mlp
from tfbdl.ntk import structured
from tfbdl.ntk.empirical import choose_strategy, clear_strategy_cache, compute_ntk, model_function, ntk_block
from tfbdl.ntk.store import read_ntk_file

TOL = {"float32": 1e-5, "float64": 1e-12}


def _conv_net():
    """Strided "same" convolutions, a dilated one, no-bias layers, a dense layer on a feature
    map (S > 1 positions) and a small final conv whose factorised form is the cheaper."""
    keras.utils.set_random_seed(3)
    x = keras.Input((9, 9, 2))
    h = keras.layers.Conv2D(3, 3, strides=2, padding="same", activation="tanh", name="c_same_s2")(x)
    h = keras.layers.Conv2D(4, 2, padding="valid", use_bias=False, activation="relu", name="c_nobias")(h)
    h = keras.layers.Conv2D(3, 2, dilation_rate=2, padding="same", name="c_dilated")(h)
    h = keras.layers.Dense(5, activation="sigmoid", name="d_positions")(h)  # [n, 4, 4, 5]
    h = keras.layers.Conv2D(2, 3, strides=(1, 2), padding="valid", name="c_small")(h)  # [n, 2, 1, 2]
    h = keras.layers.Flatten()(h)
    y = keras.layers.Dense(3, use_bias=False, name="out")(h)
    return keras.Model(x, y, name="convnet")


MODELS = {
    "lenet1": (lambda: lenet5(1, (16, 16, 3), conv_widths=(2, 3), dense_widths=(6,), seed=0), (16, 16, 3)),
    "lenet10": (lambda: lenet5(10, (16, 16, 3), conv_widths=(2, 3), dense_widths=(6,), seed=1), (16, 16, 3)),
    "mlp": (lambda: mlp((7, 5), 3, (4,), activation="tanh", seed=2), (4,)),
    "convnet": (_conv_net, (9, 9, 2)),
}


@pytest.fixture(scope="module")
def models():
    return {name: build() for name, (build, _) in MODELS.items()}


def _x(name, n, seed):
    return np.random.default_rng(seed).standard_normal((n, *MODELS[name][1])).astype(np.float32)


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(MODELS))
def test_equals_jacobian_strategy(models, name, dtype):
    model = models[name]
    x, x2 = _x(name, 7, 0), _x(name, 4, 1)
    outputs = ("trace", "full", model.output_shape[-1] - 1) if dtype == "float64" else ("trace", "full")
    for output in outputs:
        kw = dict(block_size=4, dtype=dtype, output=output, progress=False)
        want = compute_ntk(model, x, strategy="jacobian", **kw)
        got = compute_ntk(model, x, strategy="structured", **kw)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert _rel(got, want) < TOL[dtype], (output, _rel(got, want))
    rect = compute_ntk(model, x, x2, strategy="structured", **kw)  # x != x2 blocks ("full" or last output)
    assert _rel(rect, compute_ntk(model, x, x2, strategy="jacobian", **kw)) < TOL[dtype]


def test_both_forms_are_used_and_agree(models):
    """The conv net mixes materialised and factorised layers (S > 1 included); forcing every
    layer into the other form gives the same kernel."""
    mf = model_function(models["convnet"], "float64", "full")
    plans = mf.strategy("structured").plans
    forms = {p.name: p.factorised for p in plans}
    assert forms["c_small"] and not forms["c_same_s2"] and forms["out"]
    assert any(p.positions > 1 and p.factorised for p in plans)
    x = _x("convnet", 5, 2).astype(np.float64)
    want = ntk_block(models["convnet"], x, strategy="jacobian", dtype="float64", output="full")
    import tensorflow as tf

    for flip in (False, True):
        forced = [structured.LayerPlan(**{**p.__dict__, "factorised": (not p.factorised if flip else p.factorised)
                                          and p.kernel}) for p in plans]
        fa = structured.features(mf, forced, mf.params, mf.state, tf.constant(x))
        got = structured.pair(fa, fa, True).numpy().reshape(5, 3, 5, 3).transpose(0, 2, 1, 3)
        assert _rel(got, want) < 1e-12


def test_lenet_forms(models):
    """The tiny LeNet's 2x2 conv2 output is cheaper factorised; the real LeNet5's 10x10 is not."""
    plans = model_function(models["lenet10"], "float32", "trace").strategy("structured").plans
    assert [(p.name, p.factorised) for p in plans] == [
        ("conv1", False), ("conv2", True), ("fc1", True), ("logits", True)]
    dense = plans[2]
    assert (dense.positions, dense.fan_in, dense.fan_out) == (1, 3, 6)  # 16 -> 12 -> 6 -> 2 -> 1 pixel, 3 channels
    real = model_function(lenet5(1, (32, 32, 3), seed=0), "float32", "trace").strategy("structured").plans
    assert [(p.name, p.positions, p.fan_in, p.fan_out, p.factorised) for p in real] == [
        ("conv1", 784, 75, 20, False), ("conv2", 100, 500, 50, False), ("fc1", 1, 1250, 500, True),
        ("logits", 1, 500, 1, True)]


def test_file_output_matches(models, tmp_path):
    model = models["lenet10"]
    x = _x("lenet10", 6, 3)
    path = tmp_path / "ntk.h5"
    got = compute_ntk(model, x, block_size=4, strategy="structured", output="full", path=path, progress=False)
    stored, attrs = read_ntk_file(path)
    assert attrs["strategy"] == "structured"
    assert stored.shape == got.shape == (6, 6, 10, 10)
    np.testing.assert_array_equal(stored.astype(np.float32), got)
    want = compute_ntk(model, x, block_size=4, strategy="jacobian", output="full", progress=False)
    assert _rel(got, want) < 1e-5


def test_model_weights_are_read_again_and_layers_restored(models):
    model = mlp((4,), 2, (3,), seed=5)
    x = _x("mlp", 5, 4)[:, :3]
    kw = dict(block_size=5, dtype="float64", progress=False)
    before = compute_ntk(model, x, strategy="structured", **kw)
    model.layers[-1].kernel.assign(model.layers[-1].kernel * 3.0)
    after = compute_ntk(model, x, strategy="structured", **kw)
    assert _rel(after, compute_ntk(model, x, strategy="jacobian", **kw)) < 1e-12
    assert not np.allclose(before, after)
    for layer in model.layers:  # the recording wrappers are gone
        assert "call" not in layer.__dict__
        assert getattr(layer, "activation", None) is None or "recording" not in layer.activation.__name__


def _batchnorm_model():
    x = keras.Input((4,))
    h = keras.layers.Dense(3)(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    return keras.Model(x, keras.layers.Dense(2)(h), name="with_bn")


def test_unsupported_model_raises_and_auto_skips_it():
    model = _batchnorm_model()
    x = np.random.default_rng(6).standard_normal((4, 4)).astype(np.float32)
    with pytest.raises(InvalidOptionError, match=r"layer 'bn' \(BatchNormalization\).*vmap_jacobian"):
        compute_ntk(model, x, block_size=2, strategy="structured", progress=False)
    clear_strategy_cache()
    best = choose_strategy(model, x, 2)
    assert best in ("jacobian", "vmap_jacobian", "ntk_vector")
    (entry,) = [v for k, v in __import__("tfbdl.ntk.empirical", fromlist=["x"]).strategy_cache().items()]
    assert "structured" not in entry["seconds"] and "BatchNormalization" in entry["skipped"]["structured"]
    with pytest.raises(InvalidOptionError, match="BatchNormalization"):
        choose_strategy(model, x, 2, strategies=("structured",))
    theta = compute_ntk(model, x, block_size=2, strategy="auto", dtype="float64", progress=False)
    assert _rel(theta, compute_ntk(model, x, block_size=2, strategy="jacobian", dtype="float64",
                                   progress=False)) < 1e-12
    clear_strategy_cache()


def test_shared_layer_is_refused():
    x = keras.Input((3,))
    shared = keras.layers.Dense(3, name="shared")
    model = keras.Model(x, keras.layers.Dense(1)(shared(shared(x))), name="twice")
    with pytest.raises(InvalidOptionError, match=r"layer 'shared', called 2 times"):
        compute_ntk(model, np.ones((2, 3), np.float32), block_size=2, strategy="structured", progress=False)


def test_auto_can_pick_structured(models):
    clear_strategy_cache()
    model = models["lenet1"]
    best = choose_strategy(model, _x("lenet1", 4, 5), 4, strategies=("jacobian", "structured"))
    assert best in ("jacobian", "structured")
    (entry,) = __import__("tfbdl.ntk.empirical", fromlist=["x"]).strategy_cache().values()
    assert set(entry["seconds"]) == {"jacobian", "structured"} and entry["skipped"] == {}
    clear_strategy_cache()
