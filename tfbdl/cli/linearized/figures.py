"""The figures of ``tfbdl linearized`` (matplotlib through :mod:`tfbdl.plots`, imported when drawn).

- ``ntk_spectrum.png`` (:func:`spectrum_figure`), ``eigenfunction_accuracy.png``
  (:func:`eigenfunction_figure`), ``ntk_alignment.png`` (:func:`alignment_figure`);
- ``nads.png`` (:func:`nads_figure`), ``nad_spectrum.png`` (:func:`nad_spectrum_figure`),
  ``nad_accuracy.png`` (:func:`nad_accuracy_figure`);
- ``pretrained_ntk_comparison.png`` (:func:`pretrained_figure`), ``cifar2_curves.png``
  (:func:`cifar2_figure`).
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.linearized.presets import NONLINEAR_CURVE, NTKPreset

__all__ = ["alignment_figure", "cifar2_figure", "eigenfunction_figure", "nad_accuracy_figure", "nad_spectrum_figure",
           "nads_figure", "pretrained_figure", "spectrum_figure"]


def spectrum_figure(path, values: np.ndarray, preset: NTKPreset) -> None:
    """Eigenvalues of the NTK Gram matrix against their index, log scale."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    index = np.arange(values.size)
    positive = values > 0
    ax.semilogy(index[positive], values[positive], lw=1.2)
    ax.set_xlabel("eigenvalue index k")
    ax.set_ylabel("eigenvalue λ_k of the NTK")
    ax.set_title(f"NTK spectrum at initialisation ({preset.net.model}, {preset.n_train + preset.n_test} images)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def _index_axis(ax, indices) -> None:
    """A symmetric-log x axis for indices that may start at 0."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=-0.2 if min(indices) == 0 else min(indices) * 0.8)


def _linear_vs_nonlinear_axes(rows: list[dict], index_key: str, xlabel: str, title: str):
    """A figure of the linear and non-linear networks' test accuracy against ``row[index_key]``."""
    from tfbdl.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    index = [r[index_key] for r in rows]
    ax.plot(index, [r["linear_test_accuracy"] for r in rows], marker="o", label="linearized network")
    ax.plot(index, [r["nonlinear_test_accuracy"] for r in rows], marker="s", label="non-linear network")
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    _index_axis(ax, index)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig, ax, index


def eigenfunction_figure(path, rows: list[dict]) -> None:
    """Test accuracy of the linear and non-linear networks against the eigenfunction index, with λ_k."""
    from tfbdl.plots import save_figure

    fig, ax, k = _linear_vs_nonlinear_axes(rows, "label_idx", "eigenfunction index k (task sign(φ_k))",
                                           "NTK eigenfunctions: linear vs non-linear training")
    twin = ax.twinx()
    twin.semilogy(k, [max(r["eigenvalue"], 1e-12) for r in rows], color="gray", ls="--", lw=0.9)
    twin.set_ylabel("λ_k (dashed)", color="gray", fontsize=8)
    save_figure(fig, path)


def alignment_figure(path, tasks: list[dict], eigenvalues: np.ndarray) -> None:
    """(a) alignment of the labels with the NTK at initialisation and after training the network;
    (b) the reference's energies of the final NTK along the initial eigenvectors."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    energies = [t for t in tasks if "energy_final" in t["alignment"]]
    fig, axes = plt.subplots(1, 2 if energies else 1, figsize=(9.2 if energies else 4.8, 3.4), squeeze=False)
    ax = axes[0, 0]
    k = [t["label_idx"] for t in tasks]
    ax.plot(k, [t["alignment"]["init"] for t in tasks], marker="o", label="NTK at initialisation")
    ax.plot(k, [t["alignment"]["final"] for t in tasks], marker="s", label="NTK of the trained network")
    _index_axis(ax, k)
    ax.set_yscale("log")
    ax.set_xlabel("eigenfunction index k")
    ax.set_ylabel("alignment yᵀΘy / (‖Θ‖_F ‖y‖²)")
    ax.legend(fontsize=8)
    ax.set_title("kernel-target alignment", fontsize=9)
    if energies:
        ax = axes[0, 1]
        j = np.arange(1, eigenvalues.size + 1)
        ax.loglog(j, np.maximum(eigenvalues, 1e-12), color="black", lw=1.0, label="λ_j (initialisation)")
        for t in energies:
            ax.loglog(j, np.maximum(t["alignment"]["energy_final"], 1e-12), lw=0.8,
                      label=f"trained on k = {t['label_idx']}")
        ax.set_xlabel("initial eigenvector index j + 1")
        ax.set_ylabel("v_jᵀ Θ_final v_j")
        ax.set_title("final NTK along the initial eigenvectors", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)


def nads_figure(path, nads: np.ndarray, shown: int) -> None:
    """The first NADs in pixel space (top) and the magnitude of their 2-D DFT, centred (bottom)."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    shown = min(shown, len(nads))
    fig, axes = plt.subplots(2, shown, figsize=(1.2 * shown, 2.7), squeeze=False)
    for i in range(shown):
        image = nads[i][..., 0]
        limit = float(np.max(np.abs(image)))
        axes[0, i].imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[1, i].imshow(np.abs(np.fft.fftshift(np.fft.fft2(image))), cmap="magma")
        axes[0, i].set_title(f"NAD {i}", fontsize=7)
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.suptitle("first NADs (top) and |DFT| (bottom, zero frequency at the centre)", fontsize=8)
    save_figure(fig, path)


def nad_spectrum_figure(path, values: np.ndarray) -> None:
    """Eigenvalues of the NAD Gram matrix against their index, log scale."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    positive = values > 0
    ax.semilogy(np.arange(values.size)[positive], values[positive], lw=1.2)
    ax.set_xlabel("NAD index i")
    ax.set_ylabel("eigenvalue of the NAD Gram matrix")
    ax.set_title("NAD spectrum (mixed-derivative NTK at initialisation)", fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def nad_accuracy_figure(path, rows: list[dict]) -> None:
    """Test accuracy of the linear and non-linear networks against the NAD index of the task."""
    from tfbdl.plots import save_figure

    fig, _, _ = _linear_vs_nonlinear_axes(rows, "nad_idx", "NAD index of the discriminative direction",
                                          "linearly separable data along one NAD")
    save_figure(fig, path)


def pretrained_figure(path, curves: dict, k: int) -> None:
    """Test accuracy per epoch of every curve of the pretrained comparison on task ``k``."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, marker="." if len(values) < 40 else None, label=name,
                ls=":" if name == NONLINEAR_CURVE else "-")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"eigenfunction task k = {k}: the kernel at initialisation vs after pre-training", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def cifar2_figure(path, metrics: dict) -> None:
    """Train and test accuracy per epoch of the network and its linearization on the binary task."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, label, colour in (("linear", "linearized", "tab:blue"), ("nonlinear", "non-linear", "tab:orange")):
        test = metrics[name]["test_curve"]
        ax.plot(np.arange(len(test)), test, color=colour, label=f"{label}: test")
        ax.plot(np.arange(1, len(test)), metrics[name]["train_curve"], color=colour, ls="--", label=f"{label}: train")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("binary CIFAR-10 task: network vs its linearization", fontsize=9)
    save_figure(fig, path)
