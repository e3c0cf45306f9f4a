"""Spectral summaries of NTK experiments (numpy): how much of an image's energy is at low spatial
frequencies, and how a trained network's NTK lines up with a task's labels and with the initial
NTK's eigenvectors.

Ortiz-Jiménez et al. (NeurIPS 2021) report that the first neural anisotropy directions (NADs) of a
CNN are low-frequency images, and that training aligns the NTK with the labels it is trained on
(gortizji/linearized-networks ``train_ntk.py``). These functions compute those numbers from arrays
already in memory; the Gram matrices themselves come from :mod:`tfbdl.ntk.empirical`.

- :func:`low_frequency_energy`: per image, the fraction of its 2-D DFT power in the central
  quarter of the (zero-frequency-centred) spectrum.
- :func:`eigenbasis_energies`: ``v_j^T Θ v_j`` for every column ``v_j`` of a basis.
- :func:`alignment_change`: kernel-target alignment of the initial and the final Gram matrices
  with ±1 labels, and the final one's energies along the initial eigenvectors.
"""

from __future__ import annotations

import numpy as np

from tfbdl.errors import ShapeError
from tfbdl.ntk.eigen import alignment

__all__ = ["alignment_change", "eigenbasis_energies", "low_frequency_energy"]


def low_frequency_energy(images) -> np.ndarray:
    """Fraction of each image's spectral energy in the central quarter of its centred 2-D DFT.

    ``images [K, H, W, 1]`` (one channel, e.g. NADs reshaped to images) -> float64 ``[K]`` in
    ``[0, 1]``. The power ``|fftshift(fft2(image))|^2`` is summed over rows ``H//4 .. H - H//4``
    and columns ``W//4 .. W - W//4`` (the lowest frequencies, zero frequency at the centre) and
    divided by the total. A constant image gives 1; the checkerboard ``(-1)^(i+j)`` gives 0.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ShapeError(f"images must be [K, H, W, 1] (one channel), got shape {images.shape}; "
                         "add the channel axis with images[..., None]")
    out = []
    for image in images:
        power = np.abs(np.fft.fftshift(np.fft.fft2(image[..., 0]))) ** 2
        h, w = power.shape
        centre = power[h // 4:h - h // 4, w // 4:w - w // 4]
        out.append(float(centre.sum() / power.sum()))
    return np.asarray(out, dtype=np.float64)


def eigenbasis_energies(gram, vectors) -> np.ndarray:
    """``v_j^T Θ v_j`` for every column ``v_j``: ``gram [N, N]``, ``vectors [N, M]`` -> float64 ``[M]``.

    With the eigenvectors of ``gram`` itself these are its eigenvalues; with the eigenvectors of
    another Gram matrix (the NTK at initialisation) they show where ``gram`` put its energy.
    """
    gram = np.asarray(gram, np.float64)
    vectors = np.asarray(vectors)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or vectors.ndim != 2 or vectors.shape[0] != gram.shape[0]:
        raise ShapeError(f"gram must be [N, N] and vectors [N, M], got shapes {gram.shape} and {vectors.shape}")
    return np.einsum("ij,ij->j", vectors, gram @ vectors)


def alignment_change(gram0, gram, signs, eigenvectors) -> dict:
    """How the NTK's alignment with a task's labels changed with training.

    ``gram0 [n, n]`` and ``gram [n, n]``: the Gram matrices at initialisation and after training on
    the first ``n`` inputs; ``signs [N]`` (``N >= n``) the task's ±1 labels; ``eigenvectors [N, M]``
    those of the initial NTK on all ``N`` inputs. Returns ``{"points": n, "init": a0, "final": a1}``
    (:func:`tfbdl.ntk.eigen.alignment` of each matrix with ``signs[:n]``) and, when ``n == N``,
    ``"energy_final"``: :func:`eigenbasis_energies` of ``gram`` along ``eigenvectors`` (a list of
    ``M`` floats), as the reference's ``v_j^T Θ_end v_j``.
    """
    gram0 = np.asarray(gram0)
    gram = np.asarray(gram, np.float64)
    signs = np.asarray(signs)
    eigenvectors = np.asarray(eigenvectors)
    n = len(gram0)
    if gram.shape != (n, n) or signs.shape[0] < n:
        raise ShapeError(f"gram must have the shape of gram0 ({n}, {n}) and signs at least {n} entries, got "
                         f"{gram.shape} and {signs.shape}")
    result = {"points": n, "init": alignment(gram0, signs[:n]), "final": alignment(gram, signs[:n])}
    if n == eigenvectors.shape[0]:
        result["energy_final"] = [float(e) for e in eigenbasis_energies(gram, eigenvectors)]
    return result
