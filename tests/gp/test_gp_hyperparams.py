"""Resumable random / grid search, and marginal likelihood optimisation of kernel parameters."""

import csv

import numpy as np
import pytest

from tfbdl.errors import InvalidOptionError, RunDirectoryError
from tfbdl.gp.hyperparams import grid_search, random_search, sample_space

SPACE = {"lengthscale": (0.1, 10.0, "log"), "weight": (-1.0, 1.0, "linear"), "depth": (1, 4, "int")}


def score(params):
    """A known function with its best at lengthscale 1, weight 0.5, depth 3."""
    return -(np.log(params["lengthscale"]) ** 2 + (params["weight"] - 0.5) ** 2
             + 0.1 * (params["depth"] - 3) ** 2)


class Counter:
    def __init__(self, fail_at=None):
        self.calls = []
        self.fail_at = fail_at

    def __call__(self, params):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt("killed")
        self.calls.append(dict(params))
        return score(params)


def test_sample_space_respects_bounds_and_types():
    trials = sample_space(SPACE, 50, seed=0)
    for t in trials:
        assert 0.1 <= t["lengthscale"] <= 10.0 and -1.0 <= t["weight"] <= 1.0
        assert isinstance(t["depth"], int) and 1 <= t["depth"] <= 4
    assert {t["depth"] for t in trials} == {1, 2, 3, 4}
    with pytest.raises(InvalidOptionError):
        sample_space({"x": (0.0, 1.0, "log")}, 1, seed=0)
    with pytest.raises(InvalidOptionError):
        sample_space({"x": (0.0, 1.0, "cubic")}, 1, seed=0)


def test_random_search_is_reproducible_and_sorted():
    a = random_search(score, SPACE, 12, seed=3)
    b = random_search(score, SPACE, 12, seed=3)
    assert a == b
    assert random_search(score, SPACE, 12, seed=4) != a
    scores = [r["score"] for r in a]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r["trial"] for r in a) == list(range(12))
    lowest_first = random_search(score, SPACE, 12, seed=3, mode="min")
    assert lowest_first == a[::-1]


def test_random_search_resumes_from_csv(tmp_path):
    path = tmp_path / "search.csv"
    crashed = Counter(fail_at=4)
    with pytest.raises(KeyboardInterrupt):
        random_search(crashed, SPACE, 10, seed=0, csv_path=path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert list(rows[0]) == ["trial", "lengthscale", "weight", "depth", "score"]

    resumed = Counter()
    result = random_search(resumed, SPACE, 10, seed=0, csv_path=path)
    assert len(resumed.calls) == 6
    assert resumed.calls == sample_space(SPACE, 10, seed=0)[4:]
    assert result == random_search(score, SPACE, 10, seed=0)  # same as an uninterrupted run

    again = Counter()
    assert random_search(again, SPACE, 10, seed=0, csv_path=path) == result
    assert again.calls == []

    more = Counter()
    longer = random_search(more, SPACE, 14, seed=0, csv_path=path)
    assert len(more.calls) == 4 and len(longer) == 14

    with pytest.raises(RunDirectoryError, match="changed"):
        random_search(score, SPACE, 10, seed=1, csv_path=path)


def test_grid_search_order_resume_and_mode(tmp_path):
    grid = {"lengthscale": [0.5, 1.0, 2.0], "depth": [2, 3]}
    path = tmp_path / "grid.csv"
    evaluate = Counter()

    def objective(params):
        return evaluate({**params, "weight": 0.5})

    rows = grid_search(objective, grid, csv_path=path)
    assert len(evaluate.calls) == 6
    assert [(c["lengthscale"], c["depth"]) for c in evaluate.calls] == [
        (0.5, 2), (0.5, 3), (1.0, 2), (1.0, 3), (2.0, 2), (2.0, 3)]
    assert (rows[0]["lengthscale"], rows[0]["depth"]) == (1.0, 3)
    assert rows[0]["score"] == pytest.approx(0.0)
    evaluate.calls.clear()
    assert grid_search(objective, grid, csv_path=path) == rows
    assert evaluate.calls == []
    worst_first = grid_search(objective, grid, csv_path=path, mode="min")
    assert worst_first[0]["score"] == min(r["score"] for r in rows)
    with pytest.raises(RunDirectoryError):
        grid_search(objective, {"lengthscale": [0.5], "weight": [1]}, csv_path=path)


@pytest.mark.parametrize("method", ["adam", "scipy"])
def test_marginal_likelihood_optimisation_improves(method):
    gpflow = pytest.importorskip("gpflow")
    from tfbdl.gp.hyperparams import optimize_marginal_likelihood

    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (80, 1))
    y = (np.sin(2 * X[:, 0]) > 0).astype(int) + (X[:, 0] > 1.5).astype(int)
    kernel = gpflow.kernels.SquaredExponential(lengthscales=10.0, variance=0.1)
    result = optimize_marginal_likelihood(kernel, X, y, num_classes=3, noise_variance=0.05,
                                          steps=60, learning_rate=0.1, method=method,
                                          max_points=60, seed=0)
    assert result["num_points"] == 60
    assert result["lml_after"] > result["lml_before"] + 1.0
    before, after = result["params_before"], result["params_after"]
    assert after[".kernel.lengthscales"] < before[".kernel.lengthscales"]
    assert after[".likelihood.variance"] == pytest.approx(0.05)  # noise stays fixed
    assert float(kernel.lengthscales.numpy()) == pytest.approx(after[".kernel.lengthscales"])
