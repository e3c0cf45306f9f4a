"""Tests of tfbdl.ntk.empirical: the empirical NTK against closed forms and a plain tape.jacobian
reference, block-wise computation, resumable files and the strategy choice."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbdl.errors import DataFormatError, InvalidOptionError, RunDirectoryError, ShapeError
from tfbdl.io.blocks import BlockStore
from tfbdl.nn import lenet5, mlp
from tfbdl.ntk import empirical
from tfbdl.ntk.empirical import (
    STRATEGIES,
    cast_model,
    choose_strategy,
    clear_strategy_cache,
    compute_ntk,
    jacobian_block,
    ntk_block,
    ntk_vector_block,
    parameter_fingerprint,
    strategy_cache,
    vmap_jacobian_block,
)
from tfbdl.ntk.store import IncompleteNTKError, read_ntk_file

K = 3  # outputs of the test models
MLP_SHAPE = (4,)
CNN_SHAPE = (16, 16, 2)
N, BLOCK = 10, 4  # ragged blocks: 10 = 4 + 4 + 2


BUILDERS = {
    "mlp": lambda: mlp((7, 5), K, MLP_SHAPE, activation="tanh", seed=0),
    "cnn": lambda: lenet5(K, CNN_SHAPE, conv_widths=(3, 4), dense_widths=(8,), seed=1),
}


@pytest.fixture(scope="module")
def models():
    """A tiny MLP and a tiny CNN (LeNet5 with 3 and 4 channels, 8 hidden units), K = 3 outputs."""
    return {name: build() for name, build in BUILDERS.items()}


def _inputs(name, n, seed=0):
    """Random inputs exactly representable in float32 (so a float32 input layer loses nothing)."""
    shape = MLP_SHAPE if name == "mlp" else CNN_SHAPE
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32).astype(np.float64)


def _reference_full(build, model, xa, xb):
    """Θ [a, b, K, K] from one plain tape.jacobian per input set, independent of tfbdl.ntk: the
    factory ``build`` is rerun under a float64 dtype policy and given ``model``'s weights."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        twin = build()
    finally:
        keras.config.set_dtype_policy(old)
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])

    def jac(x):
        with tf.GradientTape() as tape:
            y = twin(tf.constant(x, tf.float64))
        assert y.dtype == tf.float64
        parts = tape.jacobian(y, twin.trainable_variables)
        return np.concatenate([j.numpy().reshape(len(x), y.shape[1], -1) for j in parts], axis=-1)

    return np.einsum("ikp,jlp->ijkl", jac(xa), jac(xb))


@pytest.fixture(scope="module")
def reference(models):
    """Per model: inputs x [N], x2 [5], and the float64 references Θ(x, x), Θ(x, x2) [.., K, K]."""
    out = {}
    for name, model in models.items():
        x, x2 = _inputs(name, N, 0), _inputs(name, 5, 1)
        out[name] = {"x": x, "x2": x2, "xx": _reference_full(BUILDERS[name], model, x, x),
                     "xx2": _reference_full(BUILDERS[name], model, x, x2)}
    return out


def _select(full, output):
    if output == "trace":
        return np.einsum("ijkk->ij", full)
    if output == "full":
        return full
    return full[:, :, output, output]


def _rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


# --------------------------------------------------------------------------- closed form


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_linear_model_ntk_is_gram_plus_one(strategy):
    """f(x) = W x + b (Keras kernel W [D, K]): ∂f_k/∂W[i, j] = x_i δ_jk and ∂f_k/∂b_j = δ_jk, so
    Θ(x, x')[k, l] = δ_kl (x·x' + 1) in the standard parameterisation (no width factor). Hence
    trace = K (X Xᵀ + 1), full = (X Xᵀ + 1) ⊗ I_K, and output k alone = X Xᵀ + 1."""
    d, k = 6, 4
    model = mlp((), k, (d,), seed=3)
    x = np.random.default_rng(2).standard_normal((7, d))
    gram = x @ x.T + 1.0
    kw = dict(block_size=3, strategy=strategy, dtype="float64", progress=False)
    np.testing.assert_allclose(compute_ntk(model, x, output="trace", **kw), k * gram, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(compute_ntk(model, x, output=2, **kw), gram, rtol=1e-12, atol=1e-12)
    full = compute_ntk(model, x, output="full", **kw)
    assert full.shape == (7, 7, k, k)
    np.testing.assert_allclose(full, gram[:, :, None, None] * np.eye(k), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_blockwise_matches_jacobian_reference_float64(models, reference, name, strategy):
    model, ref = models[name], reference[name]
    for output in ("trace", "full", 1) if name == "mlp" else ("trace", "full"):
        got = compute_ntk(model, ref["x"], block_size=BLOCK, strategy=strategy, dtype="float64",
                          output=output, progress=False)
        want = _select(ref["xx"], output)
        assert got.dtype == np.float64 and got.shape == want.shape
        assert _rel_err(got, want) < 1e-10, (output, _rel_err(got, want))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_blockwise_matches_reference_float32(models, reference, strategy):
    model, ref = models["cnn"], reference["cnn"]
    got = compute_ntk(model, ref["x"].astype(np.float32), block_size=BLOCK, strategy=strategy,
                      dtype="float32", progress=False)
    assert got.dtype == np.float32
    assert _rel_err(got, _select(ref["xx"], "trace")) < 1e-5


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_ntk_is_symmetric_and_psd(models, reference, name):
    theta = compute_ntk(models[name], reference[name]["x"], block_size=BLOCK, strategy="vmap_jacobian",
                        dtype="float64", progress=False)
    assert np.array_equal(theta, theta.T)  # lower blocks mirrored, diagonal blocks symmetrised
    eig = np.linalg.eigvalsh(theta)
    assert eig.min() >= -1e-10 * eig.max()
    assert np.all(np.diag(theta) > 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_rectangular_block_with_x2(models, reference, strategy):
    for name in ("mlp", "cnn"):
        model, ref = models[name], reference[name]
        got = compute_ntk(model, ref["x"], ref["x2"], block_size=BLOCK, strategy=strategy, dtype="float64",
                          progress=False)
        assert got.shape == (N, 5)
        assert _rel_err(got, _select(ref["xx2"], "trace")) < 1e-10
    model, ref = models["mlp"], reference["mlp"]
    full = compute_ntk(model, ref["x"], ref["x2"], block_size=BLOCK, strategy=strategy, dtype="float64",
                       output="full", progress=False)
    assert full.shape == (N, 5, K, K)
    assert _rel_err(full, ref["xx2"]) < 1e-10


def test_single_block_functions_agree(models, reference):
    model, ref = models["mlp"], reference["mlp"]
    xa, xb = ref["x"][:4], ref["x2"][:3]
    want = _select(ref["xx2"], "full")[:4, :3]
    for fn in (jacobian_block, vmap_jacobian_block, ntk_vector_block):
        got = fn(model, xa, xb, dtype="float64", output="full")
        assert got.shape == (4, 3, K, K)
        assert _rel_err(got, want) < 1e-10
    diag = ntk_block(model, xa, strategy="jacobian", dtype="float64")
    assert _rel_err(diag, _select(ref["xx"], "trace")[:4, :4]) < 1e-10


def test_scalar_output_model():
    build = lambda: mlp((6,), 1, (3,), seed=4)  # noqa: E731
    model = build()
    x = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32).astype(np.float64)
    kw = dict(block_size=4, strategy="vmap_jacobian", dtype="float64", progress=False)
    trace = compute_ntk(model, x, output="trace", **kw)
    np.testing.assert_array_equal(trace, compute_ntk(model, x, output=0, **kw))
    np.testing.assert_allclose(compute_ntk(model, x, output="full", **kw)[:, :, 0, 0], trace, rtol=1e-14)
    ref = _reference_full(build, model, x, x)[:, :, 0, 0]
    assert _rel_err(trace, ref) < 1e-10


# --------------------------------------------------------------------------- precision


def test_cast_model_float64(models):
    model = models["cnn"]
    twin = cast_model(model, "float64")
    assert all(v.dtype == "float64" for v in twin.trainable_variables)
    x = _inputs("cnn", 3)
    y64 = twin(x)
    assert y64.dtype == tf.float64
    np.testing.assert_allclose(y64.numpy(), model(x.astype(np.float32)).numpy(), rtol=1e-4, atol=1e-5)


def test_uses_current_parameters():
    """Traced functions are reused, but the NTK follows the weights as they are now."""
    model = mlp((), 2, (3,), seed=6)
    x = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32).astype(np.float64)
    kw = dict(block_size=4, strategy="vmap_jacobian", dtype="float64", progress=False)
    before = compute_ntk(model, x, **kw)
    np.testing.assert_allclose(before, 2 * (x @ x.T + 1), rtol=1e-12)
    # A hidden-less model's NTK does not depend on W; a two-layer one does.
    build = lambda: mlp((5,), 2, (3,), seed=6)  # noqa: E731
    deep = build()
    theta0 = compute_ntk(deep, x, **kw)
    deep.layers[-1].kernel.assign(deep.layers[-1].kernel * 2.0)
    theta1 = compute_ntk(deep, x, **kw)
    assert not np.allclose(theta0, theta1)
    assert _rel_err(theta1, np.einsum("ijkk->ij", _reference_full(build, deep, x, x))) < 1e-10


# --------------------------------------------------------------------------- files and resuming


class _Interrupt(Exception):
    pass


def _interrupt_after(monkeypatch, n_blocks):
    """Make the next compute_ntk fail after ``n_blocks`` blocks (as if killed)."""
    original = BlockStore.write
    count = {"n": 0}

    def write(self, *args, **kwargs):
        if count["n"] >= n_blocks:
            raise _Interrupt()
        count["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BlockStore, "write", write)


@pytest.mark.parametrize("output", ["trace", "full"])
def test_resume_after_interruption_is_bitwise_equal(models, reference, tmp_path, monkeypatch, output):
    model, x = models["mlp"], reference["mlp"]["x"]
    kw = dict(block_size=BLOCK, strategy="vmap_jacobian", dtype="float32", output=output, progress=False)
    whole = compute_ntk(model, x, path=tmp_path / "whole.h5", **kw)
    np.testing.assert_array_equal(whole, compute_ntk(model, x, **kw))  # file or not, same numbers

    path = tmp_path / "part.h5"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        with pytest.raises(_Interrupt):
            compute_ntk(model, x, path=path, **kw)
    with pytest.raises(IncompleteNTKError):
        read_ntk_file(path)
    with h5py.File(path, "r") as f:
        assert f["task_done"].shape == (6,) and f["task_done"][()].tolist() == [1, 1, 1, 0, 0, 0]  # 3 of 6 blocks

    calls = []
    strategy = empirical.model_function(model, "float32", output).strategy("vmap_jacobian")
    original_pair = strategy.pair
    monkeypatch.setattr(strategy, "pair", lambda fa, fb: calls.append(1) or original_pair(fa, fb))
    resumed = compute_ntk(model, x, path=path, **kw)
    assert len(calls) == 3  # only the missing blocks were computed
    np.testing.assert_array_equal(resumed, whole)
    stored, attrs = read_ntk_file(path)
    np.testing.assert_array_equal(stored.astype(np.float32), whole)
    assert attrs["strategy"] == "vmap_jacobian" and attrs["dtype"] == "float32" and attrs["block_size"] == BLOCK
    assert attrs["params_sha256"] == parameter_fingerprint(model)
    assert attrs["format"] == "tfbdl-ntk-blocks" and attrs["format_version"] == 2 and attrs["n_tasks"] == 6


def test_complete_file_holds_the_whole_symmetric_matrix(models, reference, tmp_path):
    """Raw readers of the file see the full Θ(x, x) in the compute dtype, and its strategy."""
    model, x = models["mlp"], reference["mlp"]["x"]
    path = tmp_path / "ntk.h5"
    whole = compute_ntk(model, x, block_size=BLOCK, strategy="vmap_jacobian", path=path, progress=False)
    with h5py.File(path, "r") as f:
        raw = f["ntk"][()]
        assert f.attrs["strategy"] == "vmap_jacobian"
    assert raw.dtype == np.float32
    np.testing.assert_array_equal(raw, whole)
    np.testing.assert_array_equal(raw, raw.T)


def _version_1_file(path, model, x):
    """An NTK file as an older tfbdl wrote it: a NaN-filled matrix and a growing list of done blocks."""
    good = path.with_name("v2.h5")
    compute_ntk(model, x, block_size=4, strategy="jacobian", path=good, progress=False)
    with h5py.File(good, "r") as f:
        attrs = dict(f.attrs)
    with h5py.File(path, "w") as f:
        for key, value in attrs.items():
            if key not in ("n_tasks",):
                f.attrs[key] = value
        f.attrs["format_version"] = 1
        f.create_dataset("ntk", shape=(len(x), len(x)), dtype="float64", fillvalue=np.nan)
        f["ntk"][:4, :4] = 1.0
        f.create_dataset("ntk__done", data=np.array([[0, 4, 0, 4]], dtype=np.int64), maxshape=(None, 4))


def test_a_file_of_the_old_format_is_refused_not_mixed(tmp_path):
    model = mlp((5,), 2, (3,), seed=8)
    x = np.random.default_rng(9).standard_normal((6, 3))
    path = tmp_path / "ntk.h5"
    _version_1_file(path, model, x)
    before = path.read_bytes()
    kw = dict(block_size=4, strategy="jacobian", progress=False)
    with pytest.raises(DataFormatError, match=r"NTK-file format version 1, this tfbdl reads version 2.*delete it"):
        compute_ntk(model, x, path=path, **kw)
    with pytest.raises(DataFormatError, match="format version 1"):
        read_ntk_file(path)
    assert path.read_bytes() == before  # left untouched
    path.unlink()  # as the message says: deleting it recomputes it
    np.testing.assert_array_equal(compute_ntk(model, x, path=path, **kw), compute_ntk(model, x, **kw))


def test_not_an_ntk_file_is_refused(tmp_path):
    model = mlp((5,), 2, (3,), seed=8)
    x = np.random.default_rng(9).standard_normal((6, 3))
    path = tmp_path / "ntk.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(DataFormatError, match="not a readable HDF5 file.*delete it"):
        compute_ntk(model, x, path=path, block_size=4, strategy="jacobian", progress=False)
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(DataFormatError, match="not a tfbdl NTK file"):
        compute_ntk(model, x, path=path, block_size=4, strategy="jacobian", progress=False)


def test_rectangular_file_round_trip(models, reference, tmp_path):
    model, ref = models["mlp"], reference["mlp"]
    path = tmp_path / "rect.h5"
    got = compute_ntk(model, ref["x"], ref["x2"], block_size=BLOCK, strategy="jacobian", dtype="float64",
                      path=path, progress=False)
    stored, attrs = read_ntk_file(path)
    np.testing.assert_array_equal(stored, got)
    assert attrs["symmetric"] == 0 and attrs["n2"] == 5
    # A finished file is read back without computing anything, whatever "auto" would choose.
    again = compute_ntk(model, ref["x"], ref["x2"], block_size=BLOCK, strategy="auto", dtype="float64",
                        path=path, progress=False)
    np.testing.assert_array_equal(again, got)


def test_resume_with_other_parameters_is_refused(tmp_path):
    model = mlp((5,), 2, (3,), seed=8)
    x = np.random.default_rng(9).standard_normal((6, 3))
    path = tmp_path / "ntk.h5"
    kw = dict(block_size=4, strategy="jacobian", progress=False)
    compute_ntk(model, x, path=path, **kw)
    model.layers[1].kernel.assign(model.layers[1].kernel + 0.1)
    with pytest.raises(RunDirectoryError, match="other model parameters"):
        compute_ntk(model, x, path=path, **kw)


def test_resume_with_other_options_is_refused(tmp_path):
    model = mlp((5,), 2, (3,), seed=10)
    x = np.random.default_rng(11).standard_normal((6, 3))
    path = tmp_path / "ntk.h5"
    compute_ntk(model, x, path=path, block_size=4, strategy="jacobian", progress=False)
    with pytest.raises(RunDirectoryError, match="block size"):
        compute_ntk(model, x, path=path, block_size=3, strategy="jacobian", progress=False)
    with pytest.raises(RunDirectoryError, match="inputs"):
        compute_ntk(model, x + 1, path=path, block_size=4, strategy="jacobian", progress=False)
    with pytest.raises(RunDirectoryError, match="dtype"):
        compute_ntk(model, x, path=path, block_size=4, strategy="jacobian", dtype="float64", progress=False)
    with pytest.raises(RunDirectoryError, match="strategy 'jacobian'"):
        compute_ntk(model, x, path=path, block_size=4, strategy="ntk_vector", progress=False)
    # "auto" adopts the strategy the file was started with.
    compute_ntk(model, x, path=path, block_size=4, strategy="auto", progress=False)


# --------------------------------------------------------------------------- strategy choice


def test_choose_strategy_measures_once_and_caches(monkeypatch):
    clear_strategy_cache()
    model = mlp((5,), 2, (3,), seed=12)
    x = np.random.default_rng(13).standard_normal((8, 3)).astype(np.float32)
    timed = []
    original = empirical._time_strategy
    monkeypatch.setattr(empirical, "_time_strategy", lambda s, xs, r: timed.append(s.name) or original(s, xs, r))
    best = choose_strategy(model, x, 4)
    assert best in STRATEGIES
    assert sorted(timed) == sorted(STRATEGIES)
    (entry,) = strategy_cache().values()
    assert entry["strategy"] == best and set(entry["seconds"]) == set(STRATEGIES)
    assert min(entry["seconds"], key=entry["seconds"].get) == best
    assert choose_strategy(model, x, 4) == best
    assert len(timed) == len(STRATEGIES)  # the second call measured nothing
    theta = compute_ntk(model, x, block_size=4, strategy="auto", progress=False)  # uses the cached choice
    assert len(timed) == len(STRATEGIES)
    assert theta.shape == (8, 8)
    clear_strategy_cache()
    assert strategy_cache() == {}


# --------------------------------------------------------------------------- user errors


def test_bad_options_and_shapes(models):
    model = models["mlp"]
    x = _inputs("mlp", 4)
    with pytest.raises(InvalidOptionError, match="dtype"):
        compute_ntk(model, x, block_size=2, dtype="float16", progress=False)
    with pytest.raises(InvalidOptionError, match="strategy"):
        compute_ntk(model, x, block_size=2, strategy="pfor", progress=False)
    with pytest.raises(InvalidOptionError, match="block_size"):
        compute_ntk(model, x, block_size=0, progress=False)
    with pytest.raises(InvalidOptionError, match="output"):
        compute_ntk(model, x, block_size=2, output="mean", progress=False)
    with pytest.raises(InvalidOptionError, match="out of range"):
        compute_ntk(model, x, block_size=2, output=K, strategy="jacobian", progress=False)
    with pytest.raises(ShapeError, match="takes"):
        compute_ntk(model, np.zeros((4, 5)), block_size=2, progress=False)
    with pytest.raises(ShapeError, match="x2"):
        compute_ntk(model, x, np.zeros((3, 2)), block_size=2, progress=False)
    images = keras.Input((4, 4, 1))
    spatial = keras.Model(images, keras.layers.Conv2D(2, 3)(images))
    with pytest.raises(ShapeError, match=r"\[batch, K\]"):
        compute_ntk(spatial, np.zeros((2, 4, 4, 1)), block_size=2, progress=False)


class _Subclassed(keras.Model):
    """A model without declared inputs: its input shape comes from the first inputs."""

    def __init__(self):
        super().__init__(name="subclassed")
        self.hidden = keras.layers.Dense(6, activation="tanh")
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def test_subclassed_model_float32():
    model = _Subclassed()
    x = np.random.default_rng(14).standard_normal((5, 3)).astype(np.float32)
    model(x)
    theta = compute_ntk(model, x, block_size=2, strategy="vmap_jacobian", progress=False)
    ref = compute_ntk(model, x, block_size=5, strategy="jacobian", progress=False)
    assert theta.shape == (5, 5)
    assert _rel_err(theta, ref) < 1e-5
    with pytest.raises(ShapeError, match="takes"):
        compute_ntk(model, np.zeros((2, 4), np.float32), block_size=2, progress=False)
