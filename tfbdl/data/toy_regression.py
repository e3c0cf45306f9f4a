"""A 1-D regression data set with gaps: inputs in a few clusters, nothing in between.

Wilson & Izmailov (2020, figure "Deep ensembles as BMA") compare the predictive distributions of
HMC, deep ensembles and mean-field VI on such data: a good posterior is confident inside the
clusters and uncertain in the gaps between them. The reference (izmailovpavel/understandingbdl,
``experiments/deep_ensembles/1d regression_data.ipynb``) puts 40 evenly spaced inputs in each of
[-10, -6], [6, 10] and [14, 18], draws targets from a random ReLU network of the features
``(x, x^2)`` plus Gaussian noise, and evaluates on a grid over [-14, 22]. Here the layout is the
same divided by ten (clusters [-1, -0.6], [0.6, 1], [1.4, 1.8], grid over [-1.4, 2.2]) so the
networks see inputs of order one, and the targets are a fixed smooth function plus Gaussian
noise of a known standard deviation (the likelihood's noise in the experiment).

:func:`make_gap_data` draws a :class:`GapData` from a seed and a :class:`GapDataConfig`;
:func:`save_gap_data` / :func:`load_gap_data` store it as ``.npz`` with the seed and the settings,
so a run's data set can be checked and regenerated. numpy only (no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from tfbdl.errors import DataFormatError, InvalidOptionError, ShapeError
from tfbdl.validate import integer, positive_number

__all__ = ["FUNCTIONS", "GapData", "GapDataConfig", "features", "load_gap_data", "load_or_make_gap_data",
           "make_gap_data", "region_masks", "save_gap_data"]

#: Target functions by name: (formula for the record, the function on float64 arrays).
FUNCTIONS = {
    "sin3x": ("sin(3 x) + 0.3 x", lambda x: np.sin(3.0 * x) + 0.3 * x),
    "cubic": ("x^3 - x", lambda x: x ** 3 - x),
}

_FORMAT = 1
_ARRAYS = ("x", "y", "x_grid", "f_grid", "x_test", "y_test", "x_test_wide", "y_test_wide")


@dataclasses.dataclass(frozen=True)
class GapDataConfig:
    """How the data are generated (everything but the seed).

    Attributes:
        clusters: ``(low, high)`` input intervals holding the training points, in increasing order
            and disjoint; the spaces between them are the gaps.
        points_per_cluster: training points drawn uniformly in each cluster.
        noise_std: standard deviation of the Gaussian noise added to the targets.
        function: a key of :data:`FUNCTIONS`.
        grid_range: ``(low, high)`` of the evaluation grid (it covers the clusters, the gaps and
            some extrapolation on both sides).
        grid_points: points on the evaluation grid.
        test_points: held-out points drawn from the same generator (uniform in the clusters), and
            as many drawn uniformly over the whole grid range (gaps included).
    """

    clusters: tuple[tuple[float, float], ...] = ((-1.0, -0.6), (0.6, 1.0), (1.4, 1.8))
    points_per_cluster: int = 40
    noise_std: float = 0.1
    function: str = "sin3x"
    grid_range: tuple[float, float] = (-1.4, 2.2)
    grid_points: int = 200
    test_points: int = 200

    def __post_init__(self):
        clusters = tuple((float(lo), float(hi)) for lo, hi in self.clusters)
        if not clusters or any(not np.isfinite([lo, hi]).all() or lo >= hi for lo, hi in clusters):
            raise InvalidOptionError(f"clusters must be non-empty (low, high) intervals with low < high, "
                                     f"got {self.clusters!r}")
        if any(a[1] >= b[0] for a, b in zip(clusters[:-1], clusters[1:])):
            raise InvalidOptionError(f"clusters must be increasing and disjoint (a gap between each pair), "
                                     f"got {self.clusters!r}")
        low, high = (float(v) for v in self.grid_range)
        if not (low <= clusters[0][0] and high >= clusters[-1][1]):
            raise InvalidOptionError(f"grid_range {self.grid_range!r} must cover every cluster "
                                     f"({clusters[0][0]} to {clusters[-1][1]})")
        if self.function not in FUNCTIONS:
            raise InvalidOptionError(f"unknown function {self.function!r}; choose one of {sorted(FUNCTIONS)}")
        object.__setattr__(self, "clusters", clusters)
        object.__setattr__(self, "grid_range", (low, high))
        integer(self.points_per_cluster, "points_per_cluster", 1)
        integer(self.grid_points, "grid_points", 2)
        integer(self.test_points, "test_points", 1)
        positive_number(self.noise_std, "noise_std")

    def to_dict(self) -> dict:
        """JSON-ready settings, the formula of the function included."""
        out = dataclasses.asdict(self)
        out["clusters"] = [list(c) for c in self.clusters]
        out["grid_range"] = list(self.grid_range)
        out["formula"] = FUNCTIONS[self.function][0]
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "GapDataConfig":
        """Inverse of :meth:`to_dict` (the formula is ignored: the function name decides)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        kwargs["clusters"] = tuple(tuple(c) for c in kwargs.get("clusters", cls.clusters))
        kwargs["grid_range"] = tuple(kwargs.get("grid_range", cls.grid_range))
        return cls(**kwargs)


@dataclasses.dataclass
class GapData:
    """One draw of the gap data set (float64 arrays, inputs 1-D).

    Attributes:
        x, y: training inputs and targets ``[N]`` (``N = points_per_cluster * len(clusters)``),
            sorted by ``x``.
        x_grid, f_grid: the evaluation grid ``[G]`` and the noise-free function on it ``[G]``.
        x_test, y_test: held-out points ``[T]`` from the same generator (inside the clusters).
        x_test_wide, y_test_wide: held-out points ``[T]`` uniform over the grid range (gaps and
            extrapolation included).
        seed: the seed they were drawn with; config: the :class:`GapDataConfig`.
    """

    x: np.ndarray
    y: np.ndarray
    x_grid: np.ndarray
    f_grid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_test_wide: np.ndarray
    y_test_wide: np.ndarray
    seed: int
    config: GapDataConfig

    def true_function(self, x) -> np.ndarray:
        """The noise-free target at ``x`` (any shape)."""
        return FUNCTIONS[self.config.function][1](np.asarray(x, np.float64))


def _in_clusters(rng: np.random.Generator, clusters, n_per: int) -> np.ndarray:
    """``n_per`` uniform draws in each cluster, concatenated and sorted: ``[n_per * len(clusters)]``."""
    return np.sort(np.concatenate([rng.uniform(lo, hi, size=n_per) for lo, hi in clusters]))


def make_gap_data(seed: int = 0, config: GapDataConfig | None = None) -> GapData:
    """Draw the data set: a deterministic function of ``seed`` and ``config``.

    Training inputs are uniform in each cluster; targets are ``f(x) + noise_std * eps``. The
    held-out sets use the same Generator afterwards, so they never repeat training points.
    """
    seed = integer(seed, "seed", 0)
    config = config or GapDataConfig()
    f = FUNCTIONS[config.function][1]
    rng = np.random.default_rng(seed)
    per_test = -(-config.test_points // len(config.clusters))  # ceil: split the held-out points evenly

    x = _in_clusters(rng, config.clusters, config.points_per_cluster)
    y = f(x) + config.noise_std * rng.standard_normal(x.shape)
    x_test = _in_clusters(rng, config.clusters, per_test)[:config.test_points]
    y_test = f(x_test) + config.noise_std * rng.standard_normal(x_test.shape)
    x_wide = np.sort(rng.uniform(*config.grid_range, size=config.test_points))
    y_wide = f(x_wide) + config.noise_std * rng.standard_normal(x_wide.shape)
    x_grid = np.linspace(*config.grid_range, config.grid_points)
    return GapData(x=x, y=y, x_grid=x_grid, f_grid=f(x_grid), x_test=x_test, y_test=y_test,
                   x_test_wide=x_wide, y_test_wide=y_wide, seed=seed, config=config)


def features(x, kind: str = "quadratic") -> np.ndarray:
    """Network inputs for 1-D ``x [N]``: ``[N, 2]`` columns ``(x, x^2)`` ("quadratic", as the
    reference's ``featurize``) or ``[N, 1]`` ("identity"); float32."""
    x = np.asarray(x, np.float64).reshape(-1)
    if kind == "quadratic":
        out = np.stack([x, x ** 2], axis=1)
    elif kind == "identity":
        out = x[:, None]
    else:
        raise InvalidOptionError(f"features kind must be 'quadratic' or 'identity', got {kind!r}")
    return out.astype(np.float32)


def region_masks(x, clusters) -> dict[str, np.ndarray]:
    """Boolean masks ``[N]`` of where each ``x`` lies: ``"cluster"`` (inside a training cluster),
    ``"gap"`` (strictly between two clusters) and ``"outside"`` (beyond the first or last)."""
    x = np.asarray(x, np.float64).reshape(-1)
    inside = np.zeros(x.shape, bool)
    for lo, hi in clusters:
        inside |= (x >= lo) & (x <= hi)
    outside = (x < clusters[0][0]) | (x > clusters[-1][1])
    return {"cluster": inside, "gap": ~inside & ~outside, "outside": outside}


def save_gap_data(data: GapData, path) -> Path:
    """Write ``data`` to ``path`` (``.npz``) atomically, with its seed and settings as JSON."""
    from tfbdl.io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": _FORMAT, "seed": data.seed, "config": data.config.to_dict()}
    with atomic_path(path) as temp:
        np.savez(temp, meta=np.array(json.dumps(meta)), **{k: getattr(data, k) for k in _ARRAYS})
    return path


def load_gap_data(path) -> GapData:
    """Read a file written by :func:`save_gap_data`; DataFormatError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("meta", *_ARRAYS) if k not in f.files]
            if missing:
                raise DataFormatError(f"{path} is not a gap regression data file (missing {missing}); "
                                      f"delete it and rerun to regenerate it")
            meta = json.loads(str(f["meta"]))
            arrays = {k: np.asarray(f[k], np.float64) for k in _ARRAYS}
    except (OSError, ValueError) as e:
        raise DataFormatError(f"cannot read {path} ({e}); delete it and rerun to regenerate it") from e
    if meta.get("format") != _FORMAT:
        raise DataFormatError(f"{path} has format {meta.get('format')!r}, expected {_FORMAT}; regenerate it")
    if arrays["x"].shape != arrays["y"].shape or arrays["x_grid"].shape != arrays["f_grid"].shape:
        raise ShapeError(f"{path}: x/y or x_grid/f_grid have different shapes; regenerate it")
    return GapData(**arrays, seed=int(meta["seed"]), config=GapDataConfig.from_dict(meta["config"]))


def load_or_make_gap_data(path, seed: int, config: GapDataConfig | None = None) -> GapData:
    """Reuse the file at ``path`` if it holds this seed and config; else draw and save it.

    A file with another seed or config raises InvalidOptionError rather than being replaced.
    """
    config = config or GapDataConfig()
    if os.path.exists(path):
        data = load_gap_data(path)
        if data.seed != seed or data.config != config:
            raise InvalidOptionError(f"{path} holds data drawn with seed {data.seed} and other settings than "
                                     f"asked (seed {seed}); delete it or choose another output folder")
        return data
    data = make_gap_data(seed, config)
    save_gap_data(data, path)
    return data
