"""Deep ensembles: independently trained networks whose predictions are averaged.

Lakshminarayanan et al. (2017) train ``M`` networks from different random initialisations;
Wilson & Izmailov (2020) read the result as a Bayesian model average over ``M`` modes of the
posterior. Here each member is a plain ``keras.Model`` trained to the MAP of the same model
HMC samples: a Gaussian likelihood with known noise plus a Gaussian prior on every weight and
bias, i.e. weight decay (:func:`fit_regression_member`).

- :class:`DeepEnsemble` trains members one at a time and saves each finished member's weights
  atomically as ``member-XXX.weights.npz`` in a folder; members already saved are skipped, so an
  interrupted run resumes, and members can be split across processes (``members=``).
- :meth:`DeepEnsemble.predict` stacks every member's outputs ``[M, N, out]``; the BMA is then
  :func:`regression_predictive` (mean, and std across members plus the noise) for regression, or
  :func:`average_probabilities` for classifiers that output probabilities.
- :func:`mixture_log_likelihood` scores held-out targets under the equally weighted Gaussian
  mixture of any set of sampled predictions (ensemble members, HMC or VI draws alike).

TensorFlow / Keras are imported only where a model is built or trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tfbdl.errors import InvalidOptionError, RunDirectoryError, ShapeError
from tfbdl.seeding import derive_seed
from tfbdl.validate import integer, positive_number

__all__ = ["DeepEnsemble", "RegressionPredictive", "average_probabilities", "fit_regression_member",
           "gaussian_nll_loss", "member_seed", "mixture_log_likelihood", "regression_predictive"]

_FORMAT = 1

#: Stream key of the members' seeds.
_MEMBER_STREAM = 0xE45E


def member_seed(base_seed: int, index: int) -> int:
    """A 31-bit seed for member ``index`` of an ensemble seeded ``base_seed`` (distinct per member).

    The top 31 bits of the 32-bit word (not the low 31 of :func:`~tfbdl.seeding.derive_seed`), as
    the ensembles trained so far were seeded: their saved members and reported results stay valid.
    """
    base_seed, index = integer(base_seed, "seed", 0), integer(index, "member index", 0)
    return derive_seed(base_seed, index, _MEMBER_STREAM, bits=32) >> 1


# --------------------------------------------------------------------------- predictives


@dataclasses.dataclass
class RegressionPredictive:
    """Moments of a Gaussian-mixture predictive at ``N`` inputs.

    Attributes:
        mean: ``[N, out]`` average of the members' outputs.
        std: ``[N, out]`` total predictive standard deviation ``sqrt(epistemic^2 + noise^2)``.
        epistemic_std: ``[N, out]`` standard deviation of the members' outputs (population, ddof 0).
    """

    mean: np.ndarray
    std: np.ndarray
    epistemic_std: np.ndarray


def _stacked(outputs, what: str) -> np.ndarray:
    """Member outputs as float64 ``[M, N, out]`` (``[M, N]`` gets an output axis)."""
    arr = np.asarray(outputs, np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[0] < 1:
        raise ShapeError(f"{what} must have shape [members, N, out] (or [members, N]), got {np.shape(outputs)}")
    return arr


def regression_predictive(member_outputs, noise_scale: float = 0.0) -> RegressionPredictive:
    """The BMA of regression members: mean, and std across members plus the known noise.

    ``member_outputs`` is ``[M, N, out]`` (or ``[M, N]``): one prediction per member (or per
    posterior sample). The predictive is the equally weighted mixture of ``N(f_m(x), noise^2)``,
    whose variance is the members' variance plus ``noise^2``.
    """
    f = _stacked(member_outputs, "member_outputs")
    noise = 0.0 if noise_scale == 0 else positive_number(noise_scale, "noise_scale")
    epistemic = f.std(axis=0)
    return RegressionPredictive(mean=f.mean(axis=0), std=np.sqrt(epistemic ** 2 + noise ** 2),
                                epistemic_std=epistemic)


def mixture_log_likelihood(member_outputs, y, noise_scale: float) -> np.ndarray:
    """Per-point log density ``[N]`` of targets ``y`` under ``(1/M) sum_m N(y | f_m(x), noise^2 I)``.

    ``member_outputs``: ``[M, N, out]`` (or ``[M, N]``); ``y``: ``[N, out]`` (or ``[N]``). Computed
    with a log-sum-exp over members, so far-off points do not underflow to ``-inf``.
    """
    f = _stacked(member_outputs, "member_outputs")
    y = np.asarray(y, np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape != f.shape[1:]:
        raise ShapeError(f"y has shape {y.shape}, the member outputs {f.shape[1:]} per member")
    noise = positive_number(noise_scale, "noise_scale")
    per_member = (-0.5 * ((y[None] - f) / noise) ** 2 - math.log(noise) - 0.5 * math.log(2 * math.pi)).sum(-1)
    top = per_member.max(axis=0)
    return top + np.log(np.exp(per_member - top).mean(axis=0))


def average_probabilities(member_probs) -> np.ndarray:
    """The BMA of classifiers: member probabilities ``[M, N, K]`` averaged to ``[N, K]``."""
    from tfbdl.metrics import ensemble_probs

    return ensemble_probs(member_probs)


# --------------------------------------------------------------------------- training a member


def gaussian_nll_loss(noise_scale: float) -> Callable:
    """Per-example ``0.5 * |y - f|^2 / noise^2`` (the Gaussian negative log likelihood with known
    noise, constants dropped), as a loss callable for :class:`tfbdl.train.loop.Trainer`."""
    import tensorflow as tf

    inv_var = 1.0 / positive_number(noise_scale, "noise_scale") ** 2

    def loss(y, f):
        y = tf.reshape(tf.cast(y, f.dtype), tf.shape(f))
        return 0.5 * inv_var * tf.reduce_sum(tf.square(y - f), axis=-1)

    return loss


def fit_regression_member(model, x, y, *, noise_scale: float, prior_scale: float, steps: int,
                          learning_rate: float = 1e-2, chunk: int = 500, verbose: bool = False) -> dict:
    """Train ``model`` to the MAP of ``N(y | f(x), noise^2) N(w | 0, prior_scale^2 I)``, full batch.

    The objective per step is the mean Gaussian NLL plus ``weight_decay * |w|^2`` with
    ``weight_decay = 1 / (2 prior_scale^2 N)`` (:func:`tfbdl.train.weight_decay.weight_decay_for_prior`),
    i.e. ``1/N`` times the negative log posterior that HMC samples. Adam with a cosine decay to
    1% of ``learning_rate`` over ``steps`` steps, so the final weights sit at the optimum rather
    than jitter around it. Runs in :class:`~tfbdl.train.loop.Trainer` epochs of ``chunk`` steps.

    Args:
        x: ``[N, in]`` inputs; y: ``[N, out]`` (or ``[N]``) targets.

    Returns:
        ``{"steps", "weight_decay", "final_loss"}``: ``final_loss`` is the mean NLL of the last
        epoch's steps (without the weight penalty).
    """
    import keras
    import tensorflow as tf

    from tfbdl.train.loop import Trainer
    from tfbdl.train.weight_decay import weight_decay_for_prior

    steps = integer(steps, "steps", 1)
    chunk = integer(chunk, "chunk", 1)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ShapeError(f"x must be [N, in] and y [N, out] with the same N > 0; got {x.shape} and {y.shape}")
    positive_number(learning_rate, "learning_rate")
    wd = weight_decay_for_prior(positive_number(prior_scale, "prior_scale") ** 2, x.shape[0])
    batch = (tf.constant(x), tf.constant(y))
    epochs = -(-steps // chunk)

    def data(epoch):  # full batch, the last epoch shorter so that exactly `steps` steps are taken
        return [batch] * min(chunk, steps - epoch * chunk)

    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.01)
    trainer = Trainer(model, lambda: keras.optimizers.Adam(schedule), loss=gaussian_nll_loss(noise_scale),
                      weight_decay=wd)
    history = trainer.fit(data, epochs, verbose=verbose, name="member")
    return {"steps": steps, "weight_decay": wd, "final_loss": float(history[-1]["train_loss"])}


# --------------------------------------------------------------------------- the ensemble


class DeepEnsemble:
    """``size`` independently trained Keras members saved in ``directory``.

    Args:
        directory: folder of the members' weight files (created when needed).
        size: number of members ``M``.
        build_member: ``build_member(seed) -> keras.Model``, a fresh untrained member whose
            initial weights depend on ``seed`` (:func:`member_seed` of ``seed`` and the index).
        seed: the ensemble's base seed.
    """

    def __init__(self, directory, size: int, build_member: Callable[[int], object], seed: int = 0):
        self.directory = Path(directory)
        self.size = integer(size, "ensemble size", 1)
        if not callable(build_member):
            raise InvalidOptionError("build_member must be a function seed -> keras.Model")
        self.build_member = build_member
        self.seed = integer(seed, "seed", 0)

    def member_seed(self, index: int) -> int:
        """The seed member ``index`` is built and trained with."""
        return member_seed(self.seed, index)

    def member_path(self, index: int) -> Path:
        """Where member ``index``'s weights are saved."""
        return self.directory / f"member-{integer(index, 'member index', 0):03d}.weights.npz"

    def missing(self) -> list[int]:
        """Indices of members not trained yet."""
        return [m for m in range(self.size) if not self.member_path(m).is_file()]

    def fit(self, train_member: Callable[[object, int], dict | None], members: Iterable[int] | None = None,
            on_member: Callable[[int, dict], None] | None = None) -> list[int]:
        """Train and save each member not saved yet; return the indices trained by this call.

        ``train_member(model, seed)`` trains a freshly built member in place and may return a
        JSON-ready dict stored with its weights (e.g. the final loss). ``members`` restricts the
        work to some indices (a shard); ``on_member(index, info)`` is called after each save.
        """
        import keras

        from tfbdl.io import atomic_path

        indices = range(self.size) if members is None else [integer(m, "member index", 0) for m in members]
        bad = [m for m in indices if m >= self.size]
        if bad:
            raise InvalidOptionError(f"member indices {bad} are outside the ensemble of {self.size}")
        self.directory.mkdir(parents=True, exist_ok=True)
        trained = []
        for m in indices:
            if self.member_path(m).is_file():
                continue
            seed = self.member_seed(m)
            keras.utils.set_random_seed(seed)
            model = self.build_member(seed)
            info = dict(train_member(model, seed) or {})
            meta = {"format": _FORMAT, "index": m, "seed": seed, "info": info}
            weights = model.get_weights()
            with atomic_path(self.member_path(m)) as temp:
                np.savez(temp, meta=np.array(json.dumps(meta)), **{f"w{i:03d}": w for i, w in enumerate(weights)})
            trained.append(m)
            if on_member is not None:
                on_member(m, info)
        return trained

    def _read(self, index: int) -> tuple[dict, list[np.ndarray]]:
        path = self.member_path(index)
        if not path.is_file():
            raise RunDirectoryError(f"ensemble member {index} is not trained yet ({path} is missing); "
                                    f"train it (rerun the command) first")
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                weights = [f[k] for k in sorted(k for k in f.files if k.startswith("w"))]
        except (OSError, ValueError, KeyError) as e:
            raise RunDirectoryError(f"cannot read {path} ({e}); delete it and rerun to retrain that member") from e
        return meta, weights

    def member_info(self, index: int) -> dict:
        """What ``train_member`` returned for member ``index`` (plus its seed)."""
        meta, _ = self._read(index)
        return {"seed": meta["seed"], **meta.get("info", {})}

    def load_member(self, index: int):
        """Member ``index`` rebuilt with its saved weights."""
        meta, weights = self._read(index)
        model = self.build_member(meta["seed"])
        shapes = [tuple(w.shape) for w in model.get_weights()]
        if shapes != [tuple(w.shape) for w in weights]:
            raise RunDirectoryError(f"{self.member_path(index)} holds weights of other shapes than the member "
                                    f"built now; delete the folder {self.directory} to retrain")
        model.set_weights(weights)
        return model

    def predict(self, x, predict_fn: Callable | None = None) -> np.ndarray:
        """Every member's outputs stacked: ``[M, N, out]`` (all members must be trained).

        ``predict_fn(model, x)`` defaults to ``model(x, training=False)``; pass e.g. a softmax of
        the logits for classifiers, then :func:`average_probabilities`.
        """
        missing = self.missing()
        if missing:
            raise RunDirectoryError(f"ensemble members {missing} are not trained yet; train them first")
        x = np.asarray(x, np.float32)
        outputs = []
        for m in range(self.size):
            model = self.load_member(m)
            out = predict_fn(model, x) if predict_fn is not None else model(x, training=False)
            outputs.append(np.asarray(out, np.float64))
        return np.stack(outputs)

