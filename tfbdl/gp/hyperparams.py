"""Kernel hyperparameter selection: resumable random / grid search, and marginal likelihood.

The searches are plain Python (numpy and the standard library): ``evaluate(params) -> score``
is whatever the caller wants (e.g. validation accuracy of an exact GP on a kernel built from
``params``). Each finished trial is appended to a CSV, rewritten atomically, and a rerun with
the same CSV skips the trials already there, so a killed search resumes where it stopped.
:func:`optimize_marginal_likelihood` imports GPflow only when called.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from tfbdl.errors import InvalidOptionError, RunDirectoryError
from tfbdl.io import atomic_write_text
from tfbdl.shapes import declare_shapes

__all__ = ["SCALES", "grid_search", "optimize_marginal_likelihood", "random_search", "sample_space"]

SCALES = ("log", "linear", "int")


def _fmt(value: Any) -> str:
    """How a value is written to (and compared in) the CSV: floats round-trip exactly."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def sample_space(space: Mapping[str, tuple], n_trials: int, seed: int) -> list[dict]:
    """``n_trials`` parameter dicts drawn from ``space`` ``{name: (low, high, scale)}``.

    ``"log"``: log-uniform on ``[low, high]`` (low > 0); ``"linear"``: uniform; ``"int"``:
    uniform integer in ``[low, high]`` inclusive. Trial i's values depend only on ``seed`` and
    ``space`` (drawn in order from one ``np.random.default_rng(seed)``), so reruns agree.
    """
    for name, spec in space.items():
        if len(spec) != 3 or spec[2] not in SCALES:
            raise InvalidOptionError(f"space[{name!r}] must be (low, high, one of {SCALES}), got {spec}")
        low, high, scale = spec
        if not low <= high or (scale == "log" and low <= 0):
            raise InvalidOptionError(f"space[{name!r}] = {spec}: need low <= high (and low > 0 for log)")
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(int(n_trials)):
        params: dict[str, Any] = {}
        for name, (low, high, scale) in space.items():
            if scale == "log":
                params[name] = float(math.exp(rng.uniform(math.log(low), math.log(high))))
            elif scale == "linear":
                params[name] = float(rng.uniform(low, high))
            else:
                params[name] = int(rng.integers(int(low), int(high) + 1))
        trials.append(params)
    return trials


def _read_done(csv_path: pathlib.Path | None, names: list[str]) -> dict[int, dict[str, str]]:
    """Rows already in the CSV, by trial number (empty when there is no file)."""
    if csv_path is None or not csv_path.exists():
        return {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        expected = ["trial", *names, "score"]
        if reader.fieldnames != expected:
            raise RunDirectoryError(
                f"{csv_path} has columns {reader.fieldnames}, this search writes {expected}: "
                "use another csv_path or delete the file to start over")
        return {int(row["trial"]): row for row in reader}


def _write(csv_path: pathlib.Path, names: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", *names, "score"])
    for row in sorted(rows, key=lambda r: r["trial"]):
        writer.writerow([row["trial"], *(_fmt(row[k]) for k in names), _fmt(row["score"])])
    atomic_write_text(csv_path, buf.getvalue())


def _run(evaluate: Callable[[dict], float], trials: list[dict], names: list[str],
         csv_path, mode: str) -> list[dict]:
    """Evaluate the trials not already in the CSV, saving after each; rows best first."""
    if mode not in ("max", "min"):
        raise InvalidOptionError(f"mode must be 'max' or 'min', got {mode!r}")
    path = None if csv_path is None else pathlib.Path(os.fspath(csv_path))
    done = _read_done(path, names)
    rows: list[dict] = []
    for i, params in enumerate(trials):
        if i in done:
            stored = done[i]
            if any(stored[k] != _fmt(params[k]) for k in names):
                raise RunDirectoryError(
                    f"{path} trial {i} has parameters {dict((k, stored[k]) for k in names)}, but "
                    f"this search's trial {i} is {params}: the seed, space or grid changed; use "
                    "another csv_path or delete the file")
            rows.append({"trial": i, **params, "score": float(stored["score"])})
    # rows of a longer earlier run stay in the file but not in the result
    kept = [{"trial": t, **{k: r[k] for k in names}, "score": r["score"]}
            for t, r in done.items() if t >= len(trials)]
    for i, params in enumerate(trials):
        if i in done:
            continue
        score = float(evaluate(dict(params)))
        rows.append({"trial": i, **params, "score": score})
        if path is not None:
            _write(path, names, rows + kept)
    sign = -1.0 if mode == "max" else 1.0
    return sorted(rows, key=lambda r: (math.isnan(r["score"]), sign * r["score"]
                                       if not math.isnan(r["score"]) else 0.0, r["trial"]))


def random_search(evaluate: Callable[[dict], float], space: Mapping[str, tuple], n_trials: int,
                  seed: int, csv_path=None, *, mode: str = "max") -> list[dict]:
    """Seeded random search: ``evaluate(params) -> score`` on ``n_trials`` draws from ``space``
    (see :func:`sample_space`).

    Each finished trial is saved to ``csv_path`` (columns ``trial, <names>, score``, rewritten
    atomically); on rerun the trials found there (same number and parameters) are not
    evaluated again. Returns ``[{"trial", <params>, "score"}]``, best first (highest score
    with ``mode="max"``, lowest with ``"min"``; NaN scores last, ties by trial number).
    """
    trials = sample_space(space, n_trials, seed)
    return _run(evaluate, trials, list(space), csv_path, mode)


def grid_search(evaluate: Callable[[dict], float], grid: Mapping[str, Sequence], csv_path=None,
                *, mode: str = "max") -> list[dict]:
    """Evaluate every combination of ``grid`` ``{name: [values]}`` (itertools.product order, the
    last name varying fastest), with the same CSV saving, resuming and sorting as
    :func:`random_search`."""
    names = list(grid)
    if any(len(list(v)) == 0 for v in grid.values()):
        raise InvalidOptionError("every grid entry needs at least one value")
    trials = [dict(zip(names, combo)) for combo in itertools.product(*(list(grid[k]) for k in names))]
    return _run(evaluate, trials, names, csv_path, mode)


# --------------------------------------------------------------------- marginal likelihood

@declare_shapes("X: [N, D]", "Y: [N, ...]")
def optimize_marginal_likelihood(kernel, X, Y, *, noise_variance: float, steps: int = 100,
                                 learning_rate: float = 0.01, method: str = "adam",
                                 num_classes: int | None = None, max_points: int | None = None,
                                 train_noise: bool = False, seed: int = 0) -> dict:
    """Train ``kernel``'s trainable gpflow Parameters by maximising the GPR log marginal
    likelihood of ``X [N, D]``, ``Y``; the kernel is modified in place.

    ``Y`` is either regression targets ``[N, P]`` (all P columns share the kernel, as
    ``gpflow.models.GPR`` treats them as independent outputs) or integer labels ``[N]`` with
    ``num_classes``, turned into the centred one-hot targets of :mod:`tfbdl.gp.exact` (+1/-1).
    ``max_points`` fits a seeded random subset (the cost is O(n^3) per step). The likelihood
    variance is ``noise_variance`` and stays fixed unless ``train_noise``. ``method`` is
    ``"adam"`` (``steps`` steps of ``learning_rate``) or ``"scipy"`` (L-BFGS-B, at most
    ``steps`` iterations).

    Returns ``{"lml_before", "lml_after", "params_before", "params_after", "num_points"}``; the
    params are ``{path: value}`` as in ``gpflow.utilities.parameter_dict``.
    """
    import gpflow
    import tensorflow as tf
    import keras

    from tfbdl.gp.exact import centred_targets

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y)
    if Y.ndim == 1:
        if num_classes is None:
            raise InvalidOptionError("Y is a label vector: pass num_classes")
        Y = centred_targets(Y, num_classes)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise InvalidOptionError(f"X must be [N, D] and Y [N, P], got {X.shape} and {Y.shape}")
    if method not in ("adam", "scipy"):
        raise InvalidOptionError(f"method must be 'adam' or 'scipy', got {method!r}")
    if max_points is not None and max_points < X.shape[0]:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], int(max_points), replace=False))
        X, Y = X[idx], Y[idx]

    likelihood = gpflow.likelihoods.Gaussian(
        variance=noise_variance, variance_lower_bound=min(1e-6, float(noise_variance) / 10))
    model = gpflow.models.GPR((X, Y), kernel, likelihood=likelihood)
    gpflow.set_trainable(model.likelihood.variance, bool(train_noise))

    def values() -> dict:
        return {k: np.array(v.numpy()).tolist() for k, v in
                gpflow.utilities.parameter_dict(model).items()}

    before = float(model.log_marginal_likelihood())
    params_before = values()
    variables = model.trainable_variables
    if variables and steps > 0:
        if method == "scipy":
            gpflow.optimizers.Scipy().minimize(model.training_loss, variables,
                                               options={"maxiter": int(steps)})
        else:
            adam = keras.optimizers.Adam(learning_rate=learning_rate)
            adam.build(variables)  # slots made outside step(), so it is traced once

            @tf.function(autograph=False)
            def step():
                with tf.GradientTape() as tape:
                    loss = model.training_loss()
                adam.apply_gradients(zip(tape.gradient(loss, variables), variables))

            for _ in range(int(steps)):
                step()
    return {"lml_before": before, "lml_after": float(model.log_marginal_likelihood()),
            "params_before": params_before, "params_after": values(),
            "num_points": int(X.shape[0])}
