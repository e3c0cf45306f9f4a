"""Neural tangent kernels of finite networks: the empirical NTK, linearised networks, the NTK's
eigenfunctions and neural anisotropy directions (Ortiz-Jiménez, Moosavi-Dezfooli and Frossard,
"What can linearized neural networks actually say about generalization?", NeurIPS 2021).

- :mod:`tfbdl.ntk.empirical`: ``Θ(x, x') = J(x) J(x')ᵀ`` of any Keras 3 model at its current
  parameters, computed block by block with bounded memory, optionally into a resumable HDF5
  file (:func:`tfbdl.ntk.empirical.compute_ntk`).
- :mod:`tfbdl.ntk.structured`: the ``"structured"`` strategy's per-layer factorisations of
  Dense / Conv2D gradients (the fastest on convolutional networks with a large dense layer).
- :mod:`tfbdl.ntk.kernel`: that NTK as a ``gpflow.kernels.Kernel``
  (:class:`tfbdl.ntk.kernel.EmpiricalNTKKernel`, also ``tfbdl.ntk.EmpiricalNTKKernel``), for
  ``GPR`` / ``SVGP``; it reads the model's weights at every evaluation.

- :mod:`tfbdl.ntk.linearize`, :mod:`tfbdl.ntk.eigen`, :mod:`tfbdl.ntk.nads`,
  :mod:`tfbdl.ntk.spectral`: linearised models, the NTK's eigenfunctions as tasks, NADs, and the
  spectral summaries (low-frequency energy, alignment) of the paper's figures.
- :mod:`tfbdl.ntk.store`: the resumable NTK file.

Importing this package is cheap: the names exported here load their submodule (and TensorFlow)
on first use (``from tfbdl.ntk import compute_ntk``).
"""

from tfbdl.lazy import lazy_exports

_LAZY = {
    "EmpiricalNTKKernel": "tfbdl.ntk.kernel",
    "IncompleteNTKError": "tfbdl.ntk.store",
    "KERNEL_STRATEGIES": "tfbdl.ntk.kernel",
    "LinearizedModel": "tfbdl.ntk.linearize",
    "METHODS": "tfbdl.ntk.nads",
    "ModelFunction": "tfbdl.ntk.empirical",
    "NTKEigen": "tfbdl.ntk.eigen",
    "STRATEGIES": "tfbdl.ntk.empirical",
    "alignment": "tfbdl.ntk.eigen",
    "alignment_change": "tfbdl.ntk.spectral",
    "binary_labels": "tfbdl.ntk.eigen",
    "cast_model": "tfbdl.ntk.empirical",
    "choose_strategy": "tfbdl.ntk.empirical",
    "compute_nads": "tfbdl.ntk.nads",
    "compute_ntk": "tfbdl.ntk.empirical",
    "eigenbasis_energies": "tfbdl.ntk.spectral",
    "eigenfunction_labels": "tfbdl.ntk.eigen",
    "fix_signs": "tfbdl.ntk.eigen",
    "jacobian_block": "tfbdl.ntk.empirical",
    "linearize": "tfbdl.ntk.linearize",
    "load_eigen": "tfbdl.ntk.eigen",
    "low_frequency_energy": "tfbdl.ntk.spectral",
    "model_function": "tfbdl.ntk.empirical",
    "nad_dataset": "tfbdl.ntk.nads",
    "nad_gram": "tfbdl.ntk.nads",
    "ntk_block": "tfbdl.ntk.empirical",
    "ntk_eigendecomposition": "tfbdl.ntk.eigen",
    "ntk_vector_block": "tfbdl.ntk.empirical",
    "parameter_fingerprint": "tfbdl.ntk.empirical",
    "read_ntk_file": "tfbdl.ntk.store",
    "save_eigen": "tfbdl.ntk.eigen",
    "vmap_jacobian_block": "tfbdl.ntk.empirical",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
