"""The kernel bank: 2-D slices of trained convolution kernels, the data the kernel VAEs learn.

The deep weight prior treats every ``k x k`` slice ``W[:, :, i, o]`` of a convolution kernel as
one sample from a prior over ``k x k`` filters. The reference code (``get_kernels`` in
``utils.py`` of ``SamsungLabs/deep-weight-prior``) reshapes each PyTorch weight
``[out, in, k, k]`` to ``[out * in, k, k]``, and its README says that slices "with norm almost
equal to zero" are pruned before the VAEs are trained (the threshold is not in the code).
Slices are *not* normalised: the VAE models raw weights (``kl_dwp(normalize=False)`` there).

Here:

- :func:`kernel_slices` cuts one Keras kernel ``[k, k, in, out]`` into ``[in * out, k, k]`` in
  the reference's order (output channel major, see its docstring);
- :func:`kernels_from_model` gathers the ``Conv2D`` kernels of a built Keras model by size;
- :func:`collect_kernel_bank` concatenates the slices of each size and drops those whose
  Frobenius norm is strictly below a threshold, counting what it dropped;
- :func:`save_kernel_bank` / :func:`load_kernel_bank` store a bank in one HDF5 file
  (datasets ``size_<k>`` float32 ``[n, k, k]``; ``counts`` and ``meta`` as JSON attributes),
  written atomically.

numpy and h5py only; Keras is imported by :func:`kernels_from_model` alone.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from typing import Any

import numpy as np

from tfbdl.errors import DataFormatError, InvalidOptionError, ShapeError
from tfbdl.io import load_h5, save_h5

__all__ = [
    "BANK_FORMAT",
    "collect_kernel_bank",
    "kernel_from_slices",
    "kernel_slices",
    "kernels_from_model",
    "load_kernel_bank",
    "save_kernel_bank",
    "slice_norms",
]

BANK_FORMAT = "tfbdl.dwp.kernel_bank/1"
_SIZE_KEY = re.compile(r"^size_(\d+)$")


def kernel_slices(kernel: np.ndarray) -> np.ndarray:
    """The 2-D slices ``[in * out, k, k]`` of a Keras convolution kernel ``[k, k, in, out]``.

    Order: output channel major, as PyTorch's ``weight.reshape(-1, k, k)`` on ``[out, in, k, k]``
    in the reference: slice ``o * in + i`` is ``kernel[:, :, i, o]`` (spatial axes unchanged,
    rows = kernel height). The dtype is kept; the result is a new C-contiguous array.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1]:
        raise ShapeError(
            f"a conv kernel must be [k, k, in, out] with a square k x k window, got shape {kernel.shape}"
        )
    k = kernel.shape[0]
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)).reshape(-1, k, k))


def kernel_from_slices(slices: np.ndarray, in_channels: int, out_channels: int) -> np.ndarray:
    """The inverse of :func:`kernel_slices`: slices ``[in * out, k, k]`` -> kernel ``[k, k, in, out]``.

    Slice ``o * in + i`` becomes ``kernel[:, :, i, o]``; e.g. to set a conv layer's kernel from
    kernels sampled from a kernel VAE (the reference's ``vae_init``).
    """
    slices = np.asarray(slices)
    cin, cout = _size_key(in_channels), _size_key(out_channels)
    if slices.ndim != 3 or slices.shape[1] != slices.shape[2] or slices.shape[0] != cin * cout:
        raise ShapeError(
            f"slices must be [in * out, k, k] = [{cin * cout}, k, k] for in={cin}, out={cout}, got {slices.shape}"
        )
    k = slices.shape[1]
    return np.ascontiguousarray(np.transpose(slices.reshape(cout, cin, k, k), (2, 3, 1, 0)))


def slice_norms(slices: np.ndarray) -> np.ndarray:
    """Frobenius norms ``[n]`` (float64) of slices ``[n, k, k]``: sqrt of the sum of squares."""
    slices = np.asarray(slices)
    if slices.ndim != 3:
        raise ShapeError(f"slices must be [n, k, k], got shape {slices.shape}")
    flat = slices.reshape(slices.shape[0], -1).astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", flat, flat))


def _size_key(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise InvalidOptionError(f"kernel sizes must be positive integers, got {size!r}")
    return int(size)


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise InvalidOptionError(f"threshold must be a finite number >= 0, got {value!r}")
    return float(value)


def collect_kernel_bank(kernels_by_size: dict[int, list[np.ndarray]],
                        threshold: float) -> tuple[dict[int, np.ndarray], dict[int, dict]]:
    """Slices of every kernel grouped by size, with near-zero slices dropped.

    Args:
        kernels_by_size: ``{k: [kernel [k, k, in, out], ...]}`` (e.g. from
            :func:`kernels_from_model`, or several source models' lists concatenated).
        threshold: a slice whose Frobenius norm (sqrt of the sum of its ``k * k`` squared
            entries, computed in float64 from the given values, before the float32 cast) is
            strictly below ``threshold`` is dropped; 0 keeps all.

    Returns:
        ``(bank, counts)``: ``bank[k]`` float32 ``[kept, k, k]``, the kept slices in input order
        (kernels in list order, each cut by :func:`kernel_slices`); ``counts[k]`` is
        ``{"total": n, "kept": kept, "dropped": n - kept}``.
    """
    if not isinstance(kernels_by_size, dict):
        raise InvalidOptionError(
            f"kernels_by_size must be a dict {{k: [kernel, ...]}}, got {type(kernels_by_size).__name__}"
        )
    threshold = _threshold(threshold)
    bank: dict[int, np.ndarray] = {}
    counts: dict[int, dict] = {}
    for size, kernels in kernels_by_size.items():
        k = _size_key(size)
        if k in bank:
            raise InvalidOptionError(f"kernel size {k} is given twice")
        if isinstance(kernels, np.ndarray) or not isinstance(kernels, (list, tuple)):
            raise InvalidOptionError(f"kernels_by_size[{k}] must be a list of kernels, got {type(kernels).__name__}")
        parts = []
        for j, kernel in enumerate(kernels):
            kernel = np.asarray(kernel)
            if kernel.ndim != 4 or kernel.shape[:2] != (k, k):
                raise ShapeError(
                    f"kernels_by_size[{k}][{j}] has shape {kernel.shape}, not [{k}, {k}, in, out]"
                )
            if not np.all(np.isfinite(kernel)):
                raise InvalidOptionError(
                    f"kernels_by_size[{k}][{j}] holds NaN or inf values; the source network diverged, "
                    "retrain it or leave it out"
                )
            parts.append(kernel_slices(kernel))
        slices = np.concatenate(parts, axis=0) if parts else np.zeros((0, k, k), np.float32)
        keep = ~(slice_norms(slices) < threshold)
        bank[k] = np.ascontiguousarray(slices[keep], dtype=np.float32)
        total, kept = int(slices.shape[0]), int(np.count_nonzero(keep))
        counts[k] = {"total": total, "kept": kept, "dropped": total - kept}
    return bank, counts


def _conv_layers(layer, found: list) -> None:
    """Append the ``keras.layers.Conv2D`` layers under ``layer`` (depth first, in layer order)."""
    import keras

    for sub in getattr(layer, "layers", []):
        if isinstance(sub, keras.layers.Conv2D):
            found.append(sub)
        elif getattr(sub, "layers", None):
            _conv_layers(sub, found)


def kernels_from_model(model) -> dict[int, list[np.ndarray]]:
    """The square ``Conv2D`` kernels of a built Keras model, ``{k: [kernel [k, k, in, out], ...]}``.

    Layers are visited in the model's layer order (nested models included), so fconv gives
    ``{7: [conv1 kernel], 5: [conv2 kernel]}``. Only plain ``keras.layers.Conv2D`` layers count
    (not transposed, depthwise or separable convolutions); non-square kernels are skipped.
    Values are numpy copies.
    """
    import keras

    if not isinstance(model, keras.Model):
        raise InvalidOptionError(f"model must be a keras.Model, got {type(model).__name__}")
    layers: list = []
    _conv_layers(model, layers)
    out: dict[int, list[np.ndarray]] = {}
    for layer in layers:
        if not layer.built:
            raise InvalidOptionError(
                f"layer {layer.name} of {model.name} is not built; call the model on a batch first"
            )
        kernel = np.array(keras.ops.convert_to_numpy(layer.kernel))
        kh, kw = kernel.shape[:2]
        if kh == kw:
            out.setdefault(int(kh), []).append(kernel)
    return out


def _check_bank(bank: dict, counts: dict) -> dict[int, np.ndarray]:
    if not isinstance(bank, dict) or not isinstance(counts, dict):
        raise InvalidOptionError("bank and counts must be dicts keyed by kernel size")
    if {_size_key(k) for k in bank} != {_size_key(k) for k in counts}:
        raise InvalidOptionError(
            f"bank has sizes {sorted(bank)} but counts has {sorted(counts)}; pass both from collect_kernel_bank"
        )
    arrays = {}
    for size, slices in bank.items():
        k = _size_key(size)
        slices = np.asarray(slices)
        if slices.ndim != 3 or slices.shape[1:] != (k, k):
            raise ShapeError(f"bank[{k}] must be [n, {k}, {k}], got shape {slices.shape}")
        arrays[k] = slices.astype(np.float32, copy=False)
    return arrays


def save_kernel_bank(path: str | os.PathLike, bank: dict[int, np.ndarray], counts: dict[int, dict],
                     meta: dict | None = None) -> None:
    """Write a bank to one HDF5 file, atomically (a killed write leaves the old file or none).

    Datasets ``size_<k>`` float32 ``[n, k, k]``; root attributes ``format``, ``counts`` and
    ``meta`` (JSON: dict keys become strings, tuples lists; ``counts`` keys are restored to
    ints on load). ``meta`` is free-form provenance (source models, threshold, seeds).
    """
    arrays = _check_bank(bank, counts)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InvalidOptionError(f"meta must be a dict of JSON values, got {type(meta).__name__}")
    attrs = {
        "format": BANK_FORMAT,
        "counts": {str(_size_key(k)): {str(a): int(b) for a, b in v.items()} for k, v in counts.items()},
        "meta": meta,
    }
    save_h5(path, {f"size_{k}": v for k, v in arrays.items()}, attrs)


def load_kernel_bank(path: str | os.PathLike) -> tuple[dict[int, np.ndarray], dict[int, dict], dict]:
    """Read a bank written by :func:`save_kernel_bank`: ``(bank, counts, meta)``."""
    arrays, attrs = load_h5(path)
    if attrs.get("format") != BANK_FORMAT:
        raise DataFormatError(
            f"{path} is not a kernel bank (format {attrs.get('format')!r}, expected {BANK_FORMAT!r}); "
            "write it with save_kernel_bank"
        )
    bank: dict[int, np.ndarray] = {}
    for name, value in arrays.items():
        match = _SIZE_KEY.match(name)
        if match is None:
            continue
        k = int(match.group(1))
        if value.ndim != 3 or value.shape[1:] != (k, k):
            raise DataFormatError(f"{path}: dataset {name} has shape {value.shape}, not [n, {k}, {k}]")
        bank[k] = value
    counts = {int(k): dict(v) for k, v in attrs.get("counts", {}).items()}
    if set(counts) != set(bank):
        raise DataFormatError(f"{path}: counts for sizes {sorted(counts)} but datasets for {sorted(bank)}")
    return bank, counts, attrs.get("meta", {})
