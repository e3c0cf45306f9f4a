"""``tfbdl bdl rethinking-generalization``: the "rethinking generalization" experiment of Wilson &
Izmailov 2020 ("Bayesian Deep Learning and a Probabilistic Perspective of Generalization").

A fraction of the training labels is corrupted (0 ... 1) and, on the same images and labels:

- GP classifiers with a CNN-GP kernel (the ConvNet GP of :mod:`tfbdl.kernels.presets`): a
  one-vs-all SVGP over all classes and a binary SVGP on two classes. Their ELBO per training
  point, a lower bound on the log marginal likelihood, is reported against the corruption.
- A PreResNet trained on the corrupted labels: train / test accuracy, and the Laplace
  approximation of its log evidence (prior precision matched to the weight decay).

The paper's point: both models can fit the noise, yet their (approximate) marginal likelihood
falls as the labels get noisier, so the evidence tells structured from random labellings.

The inputs are the same at every fraction, only the labels change, so the CNN-GP kernel matrix
of the GP training images is computed once (block by block, resumably, into ``kernel.h5``) and
the GPs look its entries up (:class:`tfbdl.gp.precomputed.PrecomputedKernel`, inputs are image
indices). Every fraction is a sub-run ``fractions/fraction-<f>/`` with its corrupted labels
(``labels.npz``, usable with ``tfbdl bdl swag --label-arr``), its GP results, the network's
per-epoch checkpoints and its results; a rerun skips whatever is finished.

Label corruption: for the classifiers over all classes, exactly ``round(f N)`` labels are
replaced by a different class drawn uniformly (:func:`tfbdl.data.labels.corrupt_labels`). For
the binary task "corrupting a fraction f" means replacing those labels by a fair coin, so that
``f = 1`` is a random labelling (flipping them all would be a perfectly structured one); this is
done exactly by flipping ``round(f N / 2)`` labels.

Reference settings (``izmailovpavel/understandingbdl``, ``experiments/rethinking_generalization``):
PreResNet20 on CIFAR-10 with corrupted label arrays at 10%, 20%, ... 100% of the 50,000 labels,
trained by ``run_swag.py`` (SGD, lr 0.1, wd 3e-4, 300 epochs), evidence by the diagonal Laplace
of ``swag.posteriors.Laplace``; GPs in GPyTorch (RBF kernel, all training points as inducing
points, 100 full-batch Adam steps at lr 0.1), the binary task being airplane vs automobile.
Here the GP kernel is the CNN-GP kernel, and the GP training set is a subset (``n_gp``) of the
network's, since its Gram matrix is N x N.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import time

import click
import numpy as np

from tfbdl.cli.bdl_generalization import bdl
from tfbdl.cli.common import open_run, record_run, run_data_line, typed_option
from tfbdl.cli.options import FiniteFloatRange, common_run_options, dataset_name
from tfbdl.errors import InvalidOptionError

EXPERIMENT = "bdl-rethinking-generalization"
KERNEL_FILE = "kernel.h5"
# The GP kernel's scale (part of the run's config, so runs made with another scale are not resumed).
KERNEL_NORMALISATION = "K_raw / K_raw(all-ones image)"
LAPLACE_KINDS = ("last_layer", "diagonal")


@dataclasses.dataclass(frozen=True)
class RethinkingPreset:
    dataset: str
    n_train: int | None  # network training images (None: the whole training set)
    n_test: int | None  # test images for the network's test accuracy (None: all)
    n_gp: int | None  # the first n_gp training images are the GPs' training set (None: all n_train)
    fractions: tuple[float, ...]
    # network
    depth: int
    widths: tuple[int, int, int]
    epochs: int
    lr_init: float
    weight_decay: float  # Trainer's: wd * |w|^2 added to the mean loss
    batch_size: int
    laplace: str  # "last_layer" (full curvature of the final Dense layer) or "diagonal" (all weights)
    # GPs
    kernel_depth: int  # conv layers of the ConvNet GP kernel
    num_inducing: int  # one-vs-all SVGP; the binary SVGP uses all its training points
    svgp_steps: int
    svgp_lr: float
    svgp_batch: int | None  # None: full batch
    svgp_natgrad: bool  # natural-gradient steps for the variational parameters (else Adam trains them)
    classes: tuple[int, int]  # the binary task
    kernel_block: int


PRESETS = {
    "tiny": RethinkingPreset("cifar10", 200, 200, None, (0.0, 0.5, 1.0), 8, (4, 8, 16), 8, 0.05, 5e-4, 50,
                             "last_layer", 2, 40, 30, 0.05, None, False, (0, 1), 100),
    # On 2 CPU cores shared with other jobs (load 5-8): the kernel of 1,000 images ~35 s, one
    # fraction's GPs 20-40 s (mostly tracing the ten class models), one full-width network (15
    # epochs of 1,000 images, last-layer Laplace) 80-110 s. At 12 epochs the network fitted less
    # of the noise and the evidence at 0.75 and 1 nearly tied; at widths 8/16/32 it did not fall
    # from 0.75 to 1. The diagonal Laplace is no option on a CPU: per-example Jacobians of every
    # weight took ~380 s per 256 images.
    "smoke": RethinkingPreset("cifar10", 1000, 1000, 800, (0.0, 0.25, 0.5, 0.75, 1.0), 20, (16, 32, 64), 15,
                              0.05, 5e-4, 64, "last_layer", 7, 100, 50, 0.1, None, True, (0, 1), 200),
    # The reference's PreResNet20 / CIFAR-10 settings (SGD schedule of run_swag.py without SWA,
    # weight decay halved because ours is wd * |w|^2 in the loss, torch adds wd * w to the
    # gradient); fractions 0, 0.1, ..., 1. GPs on the first 10,000 training images.
    "paper": RethinkingPreset("cifar10", None, None, 10000, tuple(round(0.1 * i, 1) for i in range(11)), 20,
                              (16, 32, 64), 300, 0.1, 1.5e-4, 128, "diagonal", 7, 1000, 1000, 0.1, 2000,
                              True, (0, 1), 500),
}


# --------------------------------------------------------------------------- small helpers


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` -> ``(0.0, 0.5, 1.0)``: distinct numbers in [0, 1], sorted."""
    try:
        values = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise InvalidOptionError(f"--fractions must be comma-separated numbers in [0, 1], e.g. 0,0.5,1; "
                                 f"got {text!r}") from None
    if not values:
        raise InvalidOptionError(f"--fractions needs at least one number in [0, 1], got {text!r}")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise InvalidOptionError(f"--fractions must lie in [0, 1]; {bad[0]:g} does not")
    if len(set(values)) != len(values):
        raise InvalidOptionError(f"--fractions has a repeated value: {text!r}")
    return tuple(sorted(values))


def parse_classes(text: str) -> tuple[int, int]:
    """``"3,5"`` -> ``(3, 5)``: the two distinct classes of the binary task."""
    try:
        values = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise InvalidOptionError(f"--classes must be two class indices like 0,1; got {text!r}") from None
    if len(values) != 2 or values[0] == values[1] or min(values) < 0:
        raise InvalidOptionError(f"--classes must be two distinct non-negative class indices like 0,1; got {text!r}")
    return values


def laplace_prior_precision(weight_decay: float, n_train: int) -> float:
    """The precision ``lambda`` of the Gaussian prior that the Trainer's weight decay means.

    :class:`tfbdl.train.loop.Trainer` minimises ``mean_batch loss + wd * |w|^2``. Times the
    training-set size N this is ``-log p(D | w) + N wd |w|^2``, the negative log joint with the
    prior ``N(0, lambda^-1 I)`` when ``lambda / 2 = N wd``, i.e. ``lambda = 2 N wd`` (the
    inverse of :func:`tfbdl.train.weight_decay.prior_variance`). The Laplace evidence must use this
    prior so that the network's weights are the MAP of the posterior it approximates.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or not weight_decay > 0:
        raise InvalidOptionError(f"the Laplace evidence needs a Gaussian prior: weight decay must be > 0, "
                                 f"got {weight_decay!r}")
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
        raise InvalidOptionError(f"n_train must be a positive integer, got {n_train!r}")
    return 2.0 * float(n_train) * float(weight_decay)


def binary_labels(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Binary labels with a fraction ``fraction`` randomised: exactly ``round(f N / 2)`` flipped."""
    from tfbdl.data.labels import corrupt_labels

    corrupted, _ = corrupt_labels(labels, fraction / 2.0, 2, seed)
    return corrupted


def _decreasing(values) -> bool:
    """Whether a sequence falls strictly from each value to the next."""
    values = [float(v) for v in values]
    return all(b < a for a, b in zip(values, values[1:]))


def _fraction_name(fraction: float) -> str:
    """The sub-run folder of a fraction: ``fraction-0``, ``fraction-0.25``, ``fraction-1``."""
    return f"fraction-{fraction:.6g}"


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class RethinkingData:
    """The images and true labels of a run, with the GP and binary subsets."""

    x_train: np.ndarray  # float32 [N, H, W, C] in [0, 1]
    y_train: np.ndarray  # int64 [N], true labels
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    provenance: list
    n_gp: int  # the GP training set is x_train[:n_gp]
    binary_index: np.ndarray  # indices into the GP set of the two classes
    binary_y: np.ndarray  # their true binary labels (1 for classes[1])


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What ``bdl rethinking-generalization`` at ``scale`` reads, sizes fitted to the data here."""
    return load_data(PRESETS[scale], scale, data_dir, seed).provenance


def load_data(preset: RethinkingPreset, scale: str, data_dir, seed: int) -> RethinkingData:
    """The run's training subset, test subset, GP subset and binary-pair indices (images float32
    in [0, 1]; subsets drawn as in ``bdl swag``: seeded random, kept in dataset order)."""
    from tfbdl.data import load_for_run

    train, test = (load_for_run(preset.dataset, split, scale, data_dir) for split in ("train", "test"))
    keep = train.subset(preset.n_train, seed, option=typed_option("n_train"))
    x_train, y_train = train.images[keep].astype(np.float32) / 255.0, train.labels[keep]
    keep = test.subset(preset.n_test, seed + 1, option=typed_option("n_test"))
    x_test, y_test = test.images[keep].astype(np.float32) / 255.0, test.labels[keep]
    num_classes, provenance = train.num_classes, [train.provenance, test.provenance]
    n_gp = y_train.size if preset.n_gp is None else preset.n_gp
    if n_gp > y_train.size:
        raise InvalidOptionError(f"--n-gp {n_gp} is more than the {y_train.size} training images; lower it "
                                 f"or raise --n-train")
    if max(preset.classes) >= num_classes:
        raise InvalidOptionError(f"--classes {preset.classes[0]},{preset.classes[1]}: the data has classes "
                                 f"0..{num_classes - 1}")
    gp_labels = y_train[:n_gp]
    binary_index = np.flatnonzero(np.isin(gp_labels, preset.classes))
    binary_y = (gp_labels[binary_index] == preset.classes[1]).astype(np.int64)
    if np.unique(binary_y).size < 2:
        raise InvalidOptionError(f"the {n_gp} GP training images hold fewer than two images of each of classes "
                                 f"{preset.classes}; raise --n-gp")
    return RethinkingData(x_train, y_train, x_test, y_test, num_classes, provenance, n_gp, binary_index, binary_y)


def fraction_labels(frac_run, data: RethinkingData, fraction: float, seed: int) -> np.ndarray:
    """The corrupted training labels of one fraction, saved in its sub-run (re-read on rerun)."""
    from tfbdl.data.labels import corrupt_labels, load_labels, save_labels

    path = frac_run.file("labels.npz")
    if path.exists():
        labels, _, _ = load_labels(path)
        return labels
    labels, corrupted = corrupt_labels(data.y_train, fraction, data.num_classes, seed)
    save_labels(path, labels, corrupted, {"fraction": fraction, "seed": seed, "n_train": int(labels.size)})
    return labels


# --------------------------------------------------------------------------- GP part


def kernel_matrix(run, preset: RethinkingPreset, data: RethinkingData) -> np.ndarray:
    """The CNN-GP Gram matrix of the GP training images, computed once into ``kernel.h5``.

    The kernel is the library's normalised one (:class:`tfbdl.kernels.ConvNetKernel`, variance 1:
    ``K_raw / K_raw(1, 1)`` with ``1`` the all-ones image), so its entries are O(1) and the GPs'
    own variance parameters learn the scale."""
    from tfbdl.kernels import ConvNetKernel
    from tfbdl.kernels.blocks import callables_from_gpflow, compute_kernel_file, read_kernels
    from tfbdl.kernels.presets import convnet_gp

    images = data.x_train[:data.n_gp]
    flat = images.reshape(images.shape[0], -1).astype(np.float32)
    kernel = ConvNetKernel(convnet_gp(depth=preset.kernel_depth), images.shape[1:])
    pair_fn, diag_fn = callables_from_gpflow(kernel)
    config = {"kernel": "convnet_gp", "depth": preset.kernel_depth, "image_shape": list(images.shape[1:]),
              "dtype": "float32", "normalisation": KERNEL_NORMALISATION}
    path = compute_kernel_file(run.file(KERNEL_FILE), pair_fn, diag_fn, flat, flat[:0], block=preset.kernel_block,
                               config=config)
    return read_kernels(path, names=("Kxx",))["Kxx"]


def fit_svgp(gram, index, labels, true_labels, num_classes, num_inducing, preset, *, seed, label):
    """Fit a one-vs-all SVGP on Gram-matrix rows ``index`` with ``labels``; inducing points
    stratified by the true labels (the same at every fraction). Returns the classifier, the
    inputs and the logged ``[(step, summed -ELBO of the batch)]`` (every 10% of the steps)."""
    from tfbdl.gp.precomputed import PrecomputedKernel, index_inputs
    from tfbdl.gp.svgp import OneVsAllSVGP
    from tfbdl.progress import progress

    X = index_inputs(index)
    clf = OneVsAllSVGP(lambda: PrecomputedKernel(gram), num_classes, num_inducing, seed=seed)
    clf.build(X, true_labels)
    batch = labels.size if preset.svgp_batch is None else preset.svgp_batch
    counted = [0]
    with progress(preset.svgp_steps, label) as bar:
        def advance(step, loss):
            bar.update(step - counted[0])
            counted[0] = step

        history = clf.fit(X, labels, steps=preset.svgp_steps, batch_size=batch, learning_rate=preset.svgp_lr,
                          seed=seed, natgrad=preset.svgp_natgrad, log_every=max(1, preset.svgp_steps // 10),
                          callback=advance)
    return clf, X, [(h["step"], h["loss"]) for h in history]


def _last_change(history, per: float) -> float:
    """How much the ELBO per point rose over the last logged interval (a convergence check)."""
    if len(history) < 2:
        return float("nan")
    return (history[-2][1] - history[-1][1]) / per


def gp_results(gram, preset: RethinkingPreset, data: RethinkingData, labels: np.ndarray, fraction: float,
               seed: int) -> dict:
    """ELBOs (total and per training point) of the one-vs-all and the binary SVGP at one fraction."""
    n = data.n_gp
    start = time.perf_counter()
    ova, X, ova_history = fit_svgp(gram, np.arange(n), labels[:n], data.y_train[:n], data.num_classes,
                                   preset.num_inducing, preset, seed=seed,
                                   label=f"one-vs-all SVGP, fraction {fraction:g}")
    ova_elbo = ova.elbo()
    ova_acc = float(np.mean(ova.predict(X) == labels[:n]))
    ova_variance = [float(m.kernel.variance.numpy()) for m in ova.models]
    nb = data.binary_index.size
    y_bin = binary_labels(data.binary_y, fraction, seed)
    binary, Xb, binary_history = fit_svgp(gram, data.binary_index, y_bin, data.binary_y, 2, nb, preset, seed=seed,
                                          label=f"binary SVGP, fraction {fraction:g}")
    # Both class models of a two-class one-vs-all fit the same task with the target's sign
    # swapped (zero mean, probit link), so their ELBOs agree up to optimisation error: average.
    binary_elbo = float(np.mean(binary.elbo()))
    return {"ova_elbo": float(ova_elbo.sum()), "ova_elbo_per_point": float(ova_elbo.sum() / n),
            "ova_elbo_per_class": ova_elbo.tolist(), "ova_train_accuracy": ova_acc,
            "ova_kernel_variance": ova_variance,
            "binary_elbo": binary_elbo, "binary_elbo_per_point": binary_elbo / nb,
            "binary_train_accuracy": float(np.mean(binary.predict(Xb) == y_bin)),
            "binary_flipped": float(np.mean(y_bin != data.binary_y)),
            "ova_corrupted": float(np.mean(labels[:n] != data.y_train[:n])),
            "ova_last_change": _last_change(ova_history, n), "binary_last_change": _last_change(binary_history, 2 * nb),
            "ova_history": ova_history, "binary_history": binary_history,
            "seconds": round(time.perf_counter() - start, 1)}


# --------------------------------------------------------------------------- network part


def build_network(preset: RethinkingPreset, data: RethinkingData, seed: int):
    """The PreResNet of the preset (global average pooling, so any image size works)."""
    from tfbdl.nn.preresnet import preresnet

    return preresnet(preset.depth, data.num_classes, data.x_train.shape[1:], widths=preset.widths,
                     stem_width=preset.widths[0], global_pool=True, seed=seed)


def network_results(frac_run, preset: RethinkingPreset, data: RethinkingData, labels: np.ndarray,
                    seed: int) -> dict:
    """Train the network on ``labels`` (resumable, checkpointed per epoch in ``frac_run``), then
    its train / test accuracy and Laplace log evidence."""
    import keras

    from tfbdl.bayes.laplace import diagonal_laplace, last_layer_laplace
    from tfbdl.metrics import classification_metrics
    from tfbdl.train.loop import Trainer
    from tfbdl.train.schedules import swag_schedule

    keras.utils.set_random_seed(seed)
    model = build_network(preset, data, seed)
    trainer = Trainer(model, lambda: keras.optimizers.SGD(learning_rate=preset.lr_init, momentum=0.9),
                      weight_decay=preset.weight_decay)
    start = time.perf_counter()
    history = trainer.fit((data.x_train, labels), preset.epochs, run_dir=frac_run, seed=seed,
                          batch_size=preset.batch_size,
                          lr_schedule=lambda epoch: swag_schedule(epoch, preset.lr_init, None, None, preset.epochs))
    train = trainer.evaluate((data.x_train, labels))
    train_true = trainer.evaluate((data.x_train, data.y_train))
    test = classification_metrics(trainer.predict_proba(data.x_test).astype(np.float64), data.y_test)
    n = labels.size
    precision = laplace_prior_precision(preset.weight_decay, n)
    fit_laplace = diagonal_laplace if preset.laplace == "diagonal" else last_layer_laplace
    laplace_start = time.perf_counter()
    posterior = fit_laplace(model, (data.x_train, labels), precision, batch_size=min(256, n))
    evidence = posterior.log_marginal_likelihood()
    return {"train_accuracy": train["accuracy"], "train_nll": train["loss"],
            "train_accuracy_true_labels": train_true["accuracy"], "test_accuracy": test["accuracy"],
            "test_nll": test["nll"], "laplace": preset.laplace, "laplace_parameters": posterior.dim,
            "prior_precision": precision, "laplace_log_evidence": evidence,
            "laplace_log_evidence_per_point": evidence / n, "laplace_nll": posterior.nll,
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "laplace_seconds": round(time.perf_counter() - laplace_start, 1),
            "seconds": round(time.perf_counter() - start, 1)}


# --------------------------------------------------------------------------- the run


def run_rethinking(*, preset: RethinkingPreset, scale: str, out: str, data_dir, seed: int, resume: bool):
    """Every fraction's GPs and network (each resumable), then metrics, figure and summary."""
    from tfbdl.io import RunDir

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir,
              **dataclasses.asdict(preset), "kernel_normalisation": KERNEL_NORMALISATION}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run
    data = load_data(preset, scale, data_dir, seed)
    run.record_data(data.provenance)
    frac_runs = {f: RunDir.open(run.path, "fractions", _fraction_name(f), {**config, "fraction": f})
                 for f in preset.fractions}
    labels = {f: fraction_labels(r, data, f, seed) for f, r in frac_runs.items()}

    if not all(r.is_done("gp") for r in frac_runs.values()):
        from tfbdl.gp.precomputed import gram_constant

        click.echo(f"CNN-GP kernel of {data.n_gp} images", err=True)
        gram = kernel_matrix(run, preset, data)
        shared = gram_constant(gram)  # normalised by the kernel itself; the GPs learn a variance
        mean_diagonal = float(np.mean(np.diag(gram)))
        for f, r in frac_runs.items():
            if not r.is_done("gp"):
                result = {**gp_results(shared, preset, data, labels[f], f, seed), "gram_mean_diagonal": mean_diagonal}
                r.write_json("gp.json", result)
                r.mark_done("gp", {"ova_elbo_per_point": result["ova_elbo_per_point"]})

    for f, r in frac_runs.items():
        if not r.is_done("network"):
            click.echo(f"network on labels with a fraction {f:g} corrupted", err=True)
            result = network_results(r, preset, data, labels[f], seed)
            r.write_json("network.json", result)
            r.mark_done("network", {"laplace_log_evidence": result["laplace_log_evidence"]})
            r.finish()

    rows = [_row(f, r) for f, r in frac_runs.items()]
    metrics = {"rows": rows, "num_classes": data.num_classes, "n_train": int(data.y_train.size),
               "n_test": int(data.y_test.size), "n_gp": data.n_gp, "n_binary": int(data.binary_index.size),
               "classes": list(preset.classes), "laplace": preset.laplace,
               "prior_precision": rows[0]["prior_precision"],
               "decreasing": {key: _decreasing(r[key] for r in rows) for key in CURVES}}
    run.write_metrics(metrics)
    _figure(run, preset, metrics)
    run.finish(_summary(run, preset, metrics))
    record_run(run)
    return run


CURVES = {"laplace_log_evidence_per_point": "Laplace log evidence / N",
          "ova_elbo_per_point": "one-vs-all GP ELBO / N",
          "binary_elbo_per_point": "binary GP ELBO / N"}


def _row(fraction: float, frac_run) -> dict:
    """One fraction's numbers from its sub-run's JSON files."""
    gp = json.loads(frac_run.file("gp.json").read_text())
    net = json.loads(frac_run.file("network.json").read_text())
    return {"fraction": fraction, **net, **{k: v for k, v in gp.items() if k != "seconds"},
            "gp_seconds": gp["seconds"], "network_seconds": net["seconds"]}


def _figure(run, preset: RethinkingPreset, metrics: dict) -> None:
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    rows = metrics["rows"]
    f = [r["fraction"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    ax = axes[0]
    ax.plot(f, [r["train_accuracy"] for r in rows], marker="o", label="train (labels fitted)")
    ax.plot(f, [r["test_accuracy"] for r in rows], marker="s", label="test")
    ax.axhline(1.0 / metrics["num_classes"], color="gray", linestyle=":", linewidth=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"PreResNet{preset.depth} accuracy", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(f, [r["laplace_log_evidence_per_point"] for r in rows], marker="o", color="tab:red")
    ax.set_ylabel("log evidence / N")
    ax.set_title(f"Laplace evidence ({preset.laplace.replace('_', '-')})", fontsize=9)
    ax = axes[2]
    ax.plot(f, [r["ova_elbo_per_point"] for r in rows], marker="o", label="one-vs-all (sum over classes)")
    ax.plot(f, [r["binary_elbo_per_point"] for r in rows], marker="s",
            label=f"binary (classes {preset.classes[0]} vs {preset.classes[1]})")
    ax.set_ylabel("ELBO / N")
    ax.set_title("CNN-GP marginal likelihood (ELBO)", fontsize=9)
    ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("fraction of corrupted labels")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, run.file("rethinking_generalization.png"))


def _trend(rows: list, key: str, name: str) -> str:
    """A sentence on whether the curve ``key`` decreases monotonically."""
    values = [r[key] for r in rows]
    if _decreasing(values):
        return f"The {name} decreases monotonically ({values[0]:.4f} → {values[-1]:.4f})."
    rises = [f"{a['fraction']:g} → {b['fraction']:g} ({a[key]:.4f} → {b[key]:.4f})"
             for a, b in zip(rows, rows[1:]) if b[key] >= a[key]]
    return (f"The {name} does NOT decrease monotonically: it rises or stays level at {'; '.join(rises)} "
            f"(overall {values[0]:.4f} → {values[-1]:.4f}).")


def _convergence(rows: list) -> str:
    """A sentence comparing the SVGPs' last ELBO gains with the gaps between fractions."""
    parts = []
    for kind, name in (("ova", "one-vs-all"), ("binary", "binary")):
        rise = max(r[f"{kind}_last_change"] for r in rows)
        values = [r[f"{kind}_elbo_per_point"] for r in rows]
        gap = min((abs(a - b) for a, b in zip(values, values[1:])), default=float("nan"))
        parts.append(f"{name}: the ELBO / N rose by at most {rise:.4f} over the last 10% of the steps, the "
                     f"smallest gap between neighbouring fractions is {gap:.4f}")
    return "SVGP convergence: " + "; ".join(parts) + "."


def _summary(run, preset: RethinkingPreset, metrics: dict) -> str:
    used = run_data_line(run)
    rows = metrics["rows"]
    optimiser = "natural-gradient + Adam" if preset.svgp_natgrad else "Adam"
    laplace = {"last_layer": "last-layer Laplace (full curvature of the final Dense layer, the layers below "
                             "held at their trained values)",
               "diagonal": "diagonal Laplace over every weight"}[preset.laplace]
    lines = [f"PreResNet{preset.depth} (widths {'/'.join(map(str, preset.widths))}) trained {preset.epochs} epochs "
             f"on {metrics['n_train']} images with a fraction of the labels corrupted (SGD + momentum, lr "
             f"{preset.lr_init}, weight decay {preset.weight_decay}, no augmentation); evidence by the {laplace} "
             f"with prior precision 2 N wd = {metrics['prior_precision']:g}; test accuracy on {metrics['n_test']} "
             f"test images. GPs: CNN-GP kernel (ConvNet GP, {preset.kernel_depth} conv layers, divided by its value "
             f"on the all-ones image) on the first "
             f"{metrics['n_gp']} training images, one-vs-all SVGP with {preset.num_inducing} fixed inducing points, "
             f"binary SVGP on the {metrics['n_binary']} images of classes {preset.classes[0]} and "
             f"{preset.classes[1]} (all of them inducing points, a corrupted fraction f is a fair coin, i.e. f/2 "
             f"flipped), {preset.svgp_steps} {optimiser} steps each; ELBO per training point "
             f"(one-vs-all: summed over the {len(rows[0]['ova_elbo_per_class'])} class models).", "",
             "| corrupted fraction | train acc (fitted labels) | test acc | Laplace log evidence / N | "
             "GP one-vs-all ELBO / N | GP binary ELBO / N |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['fraction']:g} | {100 * r['train_accuracy']:.1f}% | {100 * r['test_accuracy']:.1f}% | "
                     f"{r['laplace_log_evidence_per_point']:.4f} | {r['ova_elbo_per_point']:.4f} | "
                     f"{r['binary_elbo_per_point']:.4f} |")
    if metrics["n_gp"] < metrics["n_train"]:
        shares = ", ".join(f"{r['ova_corrupted']:.3f}" for r in rows)
        lines += ["", f"Exactly the stated fraction of the {metrics['n_train']} network training labels is corrupted; "
                      f"on the GPs' first {metrics['n_gp']} images the corrupted shares are {shares}."]
    lines += [""] + [_trend(rows, key, name) for key, name in CURVES.items()] + ["", _convergence(rows)]
    lines += ["", f"Data: {used}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command


@bdl.command("rethinking-generalization")
@click.option("--dataset", default=None, callback=dataset_name,
              help="Training / test images (default: scale preset, cifar10; at tiny/smoke an absent CIFAR-10 is "
                   "replaced and REPORT.md says so).")
@click.option("--fractions", default=None,
              help="Comma-separated fractions of corrupted labels in [0, 1], e.g. 0,0.5,1 (default: scale preset).")
@click.option("--n-train", type=click.IntRange(min=10), default=None,
              help="Training images for the network, a seeded random subset (default: scale preset).")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Test images for the test accuracy.")
@click.option("--n-gp", type=click.IntRange(min=10), default=None,
              help="The first N training images are the GPs' training set (its Gram matrix is N x N).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Network training epochs.")
@click.option("--lr-init", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Initial learning rate (decayed to 1% by the reference's SGD schedule).")
@click.option("--wd", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Weight decay wd * |w|^2 in the loss; the Laplace prior precision is 2 N wd.")
@click.option("--laplace", type=click.Choice(["last-layer", "diagonal"]), default=None,
              help="Laplace approximation of the network's evidence (diagonal: every weight, slow on a CPU).")
@click.option("--svgp-steps", type=click.IntRange(min=1), default=None, help="Optimisation steps of each SVGP.")
@click.option("--num-inducing", type=click.IntRange(min=1), default=None,
              help="Inducing points (training images, fixed) of the one-vs-all SVGP.")
@click.option("--kernel-depth", type=click.IntRange(min=1), default=None,
              help="Convolutional layers of the ConvNet GP kernel.")
@click.option("--classes", default=None, help="The two classes of the binary GP task, e.g. 0,1.")
@common_run_options
def rethinking_command(dataset, fractions, n_train, n_test, n_gp, epochs, lr_init, wd, laplace, svgp_steps,
                       num_inducing, kernel_depth, classes, scale, out, data_dir, seed, resume):
    """Corrupted labels: GP ELBO and PreResNet Laplace evidence fall as more labels are corrupted."""
    base = PRESETS[scale]
    overrides = {"dataset": dataset, "n_train": n_train, "n_test": n_test, "n_gp": n_gp, "epochs": epochs,
                 "lr_init": lr_init, "weight_decay": wd, "svgp_steps": svgp_steps, "num_inducing": num_inducing,
                 "kernel_depth": kernel_depth,
                 "fractions": parse_fractions(fractions) if fractions is not None else None,
                 "classes": parse_classes(classes) if classes is not None else None,
                 "laplace": laplace.replace("-", "_") if laplace is not None else None}
    preset = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if n_train is not None and n_gp is None and preset.n_gp is not None and preset.n_gp > n_train:
        preset = dataclasses.replace(preset, n_gp=None)
    run = run_rethinking(preset=preset, scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"bdl rethinking-generalization run written to {run.path}")
