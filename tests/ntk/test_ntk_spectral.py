"""tfbdl.ntk.spectral: low-frequency energy of images and the alignment of a Gram matrix with labels
and with an eigenbasis, on closed-form cases."""

import numpy as np
import pytest

from tfbdl.errors import ShapeError
from tfbdl.ntk.spectral import alignment_change, eigenbasis_energies, low_frequency_energy


def _rows_cosine(side: int, frequency: int) -> np.ndarray:
    """``cos(2π f i / side)`` along the rows, constant along the columns: ``[side, side]``."""
    i = np.arange(side)[:, None]
    return np.repeat(np.cos(2 * np.pi * frequency * i / side), side, axis=1)


def test_low_frequency_energy_of_known_frequencies():
    side = 16  # the central quarter after fftshift holds frequencies -4..3 on each axis
    constant = np.full((side, side), 0.7)
    checkerboard = (-1.0) ** np.add.outer(np.arange(side), np.arange(side))  # all power at (8, 8): Nyquist
    low, high = _rows_cosine(side, 3), _rows_cosine(side, 6)
    images = np.stack([constant, checkerboard, low, high, low + high])[..., None]
    energy = low_frequency_energy(images)
    assert energy.shape == (5,) and energy.dtype == np.float64
    # Two cosines of equal amplitude carry equal power: half of it is at frequency ±3 (inside), half at ±6.
    np.testing.assert_allclose(energy, [1.0, 0.0, 1.0, 0.0, 0.5], atol=1e-12)


def test_low_frequency_energy_is_scale_free_and_checks_shapes():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 12, 10, 1))
    (value,) = low_frequency_energy(image)
    assert 0.0 < value < 1.0
    assert low_frequency_energy(-3.0 * image)[0] == pytest.approx(value, rel=1e-12)
    # White noise spreads its power evenly: the central quarter holds about a quarter of it on average.
    noise = rng.normal(size=(200, 16, 16, 1))
    assert np.mean(low_frequency_energy(noise)) == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ShapeError, match="one channel"):
        low_frequency_energy(np.ones((2, 8, 8, 3)))


def _orthonormal(n: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q


def test_eigenbasis_energies_are_the_eigenvalues_in_the_own_basis():
    vectors = _orthonormal(6, 1)
    values = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])
    gram = (vectors * values) @ vectors.T
    np.testing.assert_allclose(eigenbasis_energies(gram, vectors), values, atol=1e-12)
    np.testing.assert_allclose(eigenbasis_energies(gram, vectors[:, :2]), values[:2], atol=1e-12)
    # In the standard basis they are the diagonal.
    np.testing.assert_allclose(eigenbasis_energies(gram, np.eye(6)), np.diag(gram), atol=1e-12)
    with pytest.raises(ShapeError):
        eigenbasis_energies(gram, np.eye(5))


def test_alignment_change_closed_form():
    signs = np.array([1.0, -1.0, 1.0, 1.0])
    vectors = _orthonormal(4, 2)
    identity = np.eye(4)
    target = np.outer(signs, signs)
    result = alignment_change(identity, target, signs, vectors)
    # I: y'y / (||I||_F ||y||^2) = 4 / (2 * 4); y y': the labels' own kernel, alignment 1.
    assert result["points"] == 4
    assert result["init"] == pytest.approx(0.5) and result["final"] == pytest.approx(1.0)
    # y y' has the energy ||y||^2 = 4 along y / 2 and none orthogonal to it.
    np.testing.assert_allclose(result["energy_final"], (vectors.T @ signs) ** 2, atol=1e-12)
    assert sum(result["energy_final"]) == pytest.approx(4.0)
    on_y = alignment_change(identity, target, signs, (signs / 2)[:, None])
    assert on_y["energy_final"] == [pytest.approx(4.0)]


def test_alignment_change_on_the_first_points_has_no_energies():
    signs = np.array([1.0, 1.0, -1.0, -1.0, 1.0])
    gram0 = np.eye(3)
    gram = -np.outer(signs[:3], signs[:3])  # anti-aligned
    result = alignment_change(gram0, gram, signs, _orthonormal(5, 3))
    assert result == {"points": 3, "init": pytest.approx(1 / np.sqrt(3)), "final": pytest.approx(-1.0)}
    with pytest.raises(ShapeError):
        alignment_change(gram0, np.eye(4), signs, _orthonormal(5, 3))
