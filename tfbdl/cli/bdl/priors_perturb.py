"""The perturbations of ``bdl prior-correlations``: random translations and the CIFAR-10-C
corruptions at intensities 1..5, batched with the clean images, and the prior outputs of such a
batch regrouped per image and intensity.
"""

from __future__ import annotations

import numpy as np

from tfbdl.errors import InvalidOptionError

__all__ = ["INTENSITIES", "per_level_outputs", "perturb", "perturbation_names", "perturbed_batch",
           "random_translation"]

INTENSITIES = (1, 2, 3, 4, 5)


def random_translation(images: np.ndarray, intensity: int, seed: int) -> np.ndarray:
    """Random crops of uint8 [N, H, W, C] images zero-padded by 2 * intensity pixels per side:
    each image is shifted by a uniform whole number of pixels in [-2k, 2k] along each axis."""
    if intensity < 0:
        raise InvalidOptionError(f"translation intensity must be >= 0, got {intensity}")
    pad = 2 * intensity
    n, h, w = images.shape[:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = np.random.default_rng([seed, intensity]).integers(0, 2 * pad + 1, size=(n, 2))
    return np.stack([padded[i, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def perturbation_names(channels: int, texture_dir) -> tuple[list[str], list[str]]:
    """``(used, skipped)`` perturbation names: translation and the informative CIFAR-10-C
    corruptions (:func:`tfbdl.data.corruptions.informative_corruptions`)."""
    from tfbdl.data.corruptions import informative_corruptions

    used, skipped = informative_corruptions(channels, texture_dir)
    return ["translation", *used], skipped


def perturb(images: np.ndarray, name: str, intensity: int, seed: int, texture_dir=None) -> np.ndarray:
    """uint8 [N, H, W, C] images under perturbation ``name`` at ``intensity`` (1..5)."""
    from tfbdl.data.corruptions import corrupt

    if name == "translation":
        return random_translation(images, intensity, seed)
    return corrupt(images, name, intensity, seed=seed, texture_dir=texture_dir)


def perturbed_batch(images: np.ndarray, names, seed: int, texture_dir=None) -> np.ndarray:
    """The clean images followed by every perturbation at intensities 1..5:
    uint8 [N * (1 + 5 P), H, W, C], blocks of N in the order clean, (name, intensity)."""
    blocks = [images]
    for name in names:
        blocks += [perturb(images, name, k, seed, texture_dir) for k in INTENSITIES]
    return np.concatenate(blocks)


def per_level_outputs(outputs: np.ndarray, n_images: int, n_perturbations: int) -> np.ndarray:
    """Prior outputs [S, N * (1 + 5 P), C] of :func:`perturbed_batch` -> [P, N, 6, C, S]
    (level 0 the clean image, levels 1..5 the intensities)."""
    s, _, c = outputs.shape
    levels = len(INTENSITIES)
    clean = outputs[:, :n_images]  # [S, N, C]
    rest = outputs[:, n_images:].reshape(s, n_perturbations, levels, n_images, c)
    clean = np.broadcast_to(clean[:, None, None], (s, n_perturbations, 1, n_images, c))
    stacked = np.concatenate([clean, rest], axis=2)  # [S, P, 6, N, C]
    return stacked.transpose(1, 3, 2, 4, 0)
