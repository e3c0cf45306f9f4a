"""The deep weight prior (Atanov, Ashukha, Struminsky, Vetrov, Welling, ICLR 2019).

- :mod:`tfbdl.dwp.kernel_bank`: 2-D kernel slices of trained source networks, filtered by norm
  and stored in HDF5 (numpy and h5py only).
- :mod:`tfbdl.dwp.vae`: the convolutional kernel VAE that is the prior over k x k slices.
- :mod:`tfbdl.dwp.bnn`, :mod:`tfbdl.dwp.priors`, :mod:`tfbdl.dwp.bound`: the Bayesian layers,
  the priors over their kernels and the auxiliary variational bound of the implicit prior.
- :mod:`tfbdl.dwp.fitting`: a BNN fitted in checkpointed blocks of epochs and the accuracy table
  over splits (the names below).

Submodules are imported explicitly (``from tfbdl.dwp import vae``), so importing this package
loads nothing heavy; the names below are loaded on first access.
"""

from __future__ import annotations

from tfbdl.lazy import lazy_exports

_LAZY = {
    "KLLog": "tfbdl.dwp.fitting",
    "accuracy_table": "tfbdl.dwp.fitting",
    "block_batches": "tfbdl.dwp.fitting",
    "checkpoint_block": "tfbdl.dwp.fitting",
    "elbo_per_example_loss": "tfbdl.dwp.fitting",
    "fit_bnn_blocks": "tfbdl.dwp.fitting",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
