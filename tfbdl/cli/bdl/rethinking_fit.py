"""The two models of ``bdl rethinking-generalization`` at one fraction of corrupted labels.

- GPs: the CNN-GP Gram matrix of the GP training images (computed once, resumably, into
  ``kernel.h5``) and SVGP classifiers that look its entries up: one-vs-all over all classes and
  binary on two classes; their ELBO per training point.
- Network: a PreResNet trained on the corrupted labels, its accuracies and the Laplace
  approximation of its log evidence, the prior matched to the weight decay it was trained with.
"""

from __future__ import annotations

import time

import numpy as np

from tfbdl.cli.bdl.presets import RethinkingPreset
from tfbdl.cli.bdl.rethinking_data import RethinkingData, binary_labels
from tfbdl.errors import InvalidOptionError

__all__ = ["KERNEL_FILE", "KERNEL_NORMALISATION", "LAPLACE_KINDS", "build_network", "fit_svgp", "gp_results",
           "kernel_matrix", "network_results"]

KERNEL_FILE = "kernel.h5"
# The GP kernel's scale (part of the run's config, so runs made with another scale are not resumed).
KERNEL_NORMALISATION = "K_raw / K_raw(all-ones image)"
LAPLACE_KINDS = ("last_layer", "diagonal")


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
    from tfbdl.train.weight_decay import prior_precision

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
    try:  # the weights are the MAP of the posterior under the prior that the weight decay means
        precision = prior_precision(preset.weight_decay, n)
    except InvalidOptionError as error:
        raise InvalidOptionError(f"the Laplace evidence needs a Gaussian prior: {error}") from None
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
