"""The deep weight prior (Atanov, Ashukha, Struminsky, Vetrov, Welling, ICLR 2019).

- :mod:`tfbdl.dwp.kernel_bank`: 2-D kernel slices of trained source networks, filtered by norm
  and stored in HDF5 (numpy and h5py only).
- :mod:`tfbdl.dwp.vae`: the convolutional kernel VAE that is the prior over k x k slices.
- :mod:`tfbdl.dwp.bnn`, :mod:`tfbdl.dwp.priors`, :mod:`tfbdl.dwp.bound`: the Bayesian layers,
  the priors over their kernels and the auxiliary variational bound of the implicit prior.

Submodules are imported explicitly (``from tfbdl.dwp import vae``), so importing this package
loads nothing heavy.
"""
