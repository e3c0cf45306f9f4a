"""Declared shapes (tfbdl.shapes): checked by check_shapes after the function's own checks, and only
where check_shapes is loaded, so the numpy modules never import TensorFlow for them."""

import subprocess
import sys

import numpy as np
import pytest

from tfbdl.errors import ShapeError
from tfbdl.shapes import declare_shapes, declared_shapes


def test_numpy_functions_are_not_checked_and_load_no_tensorflow_without_check_shapes():
    code = ("import sys, numpy as np, tfbdl.metrics as m, tfbdl.gp as gp; "
            "m.classification_metrics(np.eye(3), [0, 1, 2]); "
            "gp.classify(np.eye(4) + 1, np.ones((4, 2)), [0, 1, 0, 1], [0, 1], 2, val_fraction=0.0); "
            "print(sorted(m for m in ('tensorflow', 'check_shapes') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.fixture
def checking():
    check_shapes = pytest.importorskip("check_shapes")
    assert check_shapes.get_enable_check_shapes()
    return check_shapes


def test_a_broken_declaration_is_reported_after_the_call(checking):
    calls = []

    @declare_shapes("x: [N]", "return[0]: [N, 2]", "return[1]: []")
    def pair(x, width=2):
        calls.append(x)
        return np.zeros((len(x), width)), 1.0

    assert pair([1.0, 2.0])[0].shape == (2, 2)
    with pytest.raises(checking.exceptions.ShapeMismatchError, match="return"):
        pair([1.0, 2.0], width=3)
    assert len(calls) == 2  # the function ran: the check comes after it
    assert declared_shapes(pair) == ("x: [N]", "return[0]: [N, 2]", "return[1]: []")


def test_dimension_names_bind_across_arguments_and_none_is_skipped(checking):
    @declare_shapes("a: [N, D]", "b: [N]", "return: [D]")
    def column_sums(a, b=None):
        return np.asarray(a).sum(axis=0)

    assert column_sums(np.ones((3, 2))).shape == (2,)
    with pytest.raises(checking.exceptions.ShapeMismatchError, match="Argument: b"):
        column_sums(np.ones((3, 2)), np.ones(4))


def test_the_functions_own_errors_come_first(checking):
    from tfbdl.metrics import accuracy

    with pytest.raises(ShapeError, match="3 examples but labels has 2"):
        accuracy(np.full((3, 2), 0.5), np.array([0, 1]))


def test_library_declarations_hold(checking):
    from tfbdl.gp import centred_targets, cho_solve_inplace, cholesky_inplace, classify, noise_grid
    from tfbdl.metrics import classification_metrics, ensemble_probs, reliability_bins

    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    K = np.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1))
    L, _ = cholesky_inplace(K + 1e-3 * np.eye(12), overwrite=False)
    assert cho_solve_inplace(L, np.ones((12, 2))).shape == (12, 2) and cho_solve_inplace(L, np.ones(12)).shape == (12,)
    assert centred_targets([0, 2, 1], 3).shape == (3, 3) and noise_grid(K).shape == (9,)
    labels = np.arange(12) % 3
    result = classify(K[:8, :8], K[:8, 8:], labels[:8], labels[8:], 3, val_fraction=0.25)
    assert result.mean.shape == (4, 3)
    probs = np.full((12, 3), 1 / 3)
    assert set(classification_metrics(probs, labels)) == {"accuracy", "nll", "brier", "ece"}
    assert reliability_bins(probs, labels, 5).counts.shape == (5,)
    assert ensemble_probs([probs, probs]).shape == (12, 3)


@pytest.mark.parametrize("spec", ["x [N]", "x: N", ": [N]", "x[a]: [N]"])
def test_a_malformed_declaration_is_refused(spec):
    with pytest.raises(ValueError):
        declare_shapes(spec)


def test_an_unknown_argument_is_refused():
    with pytest.raises(ValueError, match="no argument y"):
        declare_shapes("y: [N]")(lambda x: x)
