"""The deep weight prior (Atanov, Ashukha, Struminsky, Vetrov, Welling, ICLR 2019).

- :mod:`tfbdl.dwp.kernel_bank`: 2-D kernel slices of trained source networks, filtered by norm
  and stored in HDF5 (numpy and h5py only).
- :mod:`tfbdl.dwp.vae`: the convolutional kernel VAE that is the prior over k x k slices.
- :mod:`tfbdl.dwp.bnn`, :mod:`tfbdl.dwp.priors`, :mod:`tfbdl.dwp.bound`: the Bayesian layers,
  the priors over their kernels and the auxiliary variational bound of the implicit prior.
- :mod:`tfbdl.dwp.fitting`: a BNN fitted in checkpointed blocks of epochs and the accuracy table
  over splits.
- :mod:`tfbdl.dwp.diagnostics`: figures of the kernel VAE's latent space and decoded samples.

Importing this package loads nothing heavy: every public function and class of the submodules is
exported here and loaded on first access (``from tfbdl.dwp import KernelVAE``).
"""

from __future__ import annotations

from tfbdl.lazy import lazy_exports

_LAZY = {
    "BayesConv2D": "tfbdl.dwp.bnn",
    "BayesDense": "tfbdl.dwp.bnn",
    "DeepWeightPrior": "tfbdl.dwp.priors",
    "ImplicitDWP": "tfbdl.dwp.priors",
    "KLLog": "tfbdl.dwp.fitting",
    "KernelVAE": "tfbdl.dwp.vae",
    "LogUniformPrior": "tfbdl.dwp.priors",
    "Prior": "tfbdl.dwp.priors",
    "StandardNormalPrior": "tfbdl.dwp.priors",
    "TruncatedLogUniformPrior": "tfbdl.dwp.priors",
    "accuracy_table": "tfbdl.dwp.fitting",
    "bayes_layers": "tfbdl.dwp.bnn",
    "bayesian_fconv": "tfbdl.dwp.bnn",
    "block_batches": "tfbdl.dwp.fitting",
    "check_vae": "tfbdl.dwp.bound",
    "checkpoint_block": "tfbdl.dwp.fitting",
    "collect_kernel_bank": "tfbdl.dwp.kernel_bank",
    "decoder_distribution": "tfbdl.dwp.bound",
    "draw_seed": "tfbdl.dwp.bound",
    "dwp_log_prior_bound": "tfbdl.dwp.bound",
    "elbo_loss": "tfbdl.dwp.bnn",
    "elbo_per_example_loss": "tfbdl.dwp.fitting",
    "encoder_distribution": "tfbdl.dwp.bound",
    "fit_bnn": "tfbdl.dwp.bnn",
    "fit_bnn_blocks": "tfbdl.dwp.fitting",
    "gaussian_log_density": "tfbdl.dwp.diagnostics",
    "held_out_split": "tfbdl.dwp.vae",
    "importance_log_prior": "tfbdl.dwp.bound",
    "kernel_from_slices": "tfbdl.dwp.kernel_bank",
    "kernel_from_slices_tensor": "tfbdl.dwp.priors",
    "kernel_slices": "tfbdl.dwp.kernel_bank",
    "kernel_slices_tensor": "tfbdl.dwp.priors",
    "kernels_from_model": "tfbdl.dwp.kernel_bank",
    "kl_total": "tfbdl.dwp.bnn",
    "latent_prior": "tfbdl.dwp.bound",
    "load_kernel_bank": "tfbdl.dwp.kernel_bank",
    "plot_decoded_samples": "tfbdl.dwp.vae",
    "plot_latent_space": "tfbdl.dwp.vae",
    "posterior_sampling": "tfbdl.dwp.bnn",
    "predict_bnn_proba": "tfbdl.dwp.bnn",
    "prior_structure": "tfbdl.dwp.diagnostics",
    "reference_adam": "tfbdl.dwp.bnn",
    "save_kernel_bank": "tfbdl.dwp.kernel_bank",
    "slice_norms": "tfbdl.dwp.kernel_bank",
    "split_seed": "tfbdl.dwp.bound",
    "train_kernel_vae": "tfbdl.dwp.vae",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
