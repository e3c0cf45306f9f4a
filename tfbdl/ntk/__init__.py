"""Neural tangent kernels of finite networks: the empirical NTK, linearised networks, the NTK's
eigenfunctions and neural anisotropy directions (Ortiz-Jiménez, Moosavi-Dezfooli and Frossard,
"What can linearized neural networks actually say about generalization?", NeurIPS 2021).

- :mod:`tfbdl.ntk.empirical`: ``Θ(x, x') = J(x) J(x')ᵀ`` of any Keras 3 model at its current
  parameters, computed block by block with bounded memory, optionally into a resumable HDF5
  file (:func:`tfbdl.ntk.empirical.compute_ntk`).
- :mod:`tfbdl.ntk.kernel`: that NTK as a ``gpflow.kernels.Kernel``
  (:class:`tfbdl.ntk.kernel.EmpiricalNTKKernel`, also ``tfbdl.ntk.EmpiricalNTKKernel``), for
  ``GPR`` / ``SVGP``; it reads the model's weights at every evaluation.

Importing this package is cheap; TensorFlow is imported by the submodules that need it, so
import them directly (``from tfbdl.ntk.empirical import compute_ntk``). The names exported here
(``EmpiricalNTKKernel``) load their submodule on first use.
"""

from tfbdl.lazy import lazy_exports

__all__ = ["EmpiricalNTKKernel", "alignment_change", "eigenbasis_energies", "low_frequency_energy"]

_LAZY = {"EmpiricalNTKKernel": "tfbdl.ntk.kernel", "alignment_change": "tfbdl.ntk.spectral",
         "eigenbasis_energies": "tfbdl.ntk.spectral", "low_frequency_energy": "tfbdl.ntk.spectral"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
