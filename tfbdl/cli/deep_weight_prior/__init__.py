"""``tfbdl dwp``: "The Deep Weight Prior" (Atanov, Ashukha, Struminsky, Vetrov, Welling, ICLR 2019).

The pipeline of the reference code (``SamsungLabs/deep-weight-prior``), one command per step:

1. ``train-source``: many small fconv networks (``tfbdl.nn.fconv``) trained with different seeds on
   the source data (notMNIST; ``train-net.py --data not-mnist --bs 256 --hid_dim 256 512 --l2 0.001
   --model fconv --net_cfg vanilla``, Adam 1e-3 decayed linearly to 0 over 100 epochs, the L2
   penalty on the convolutions' parameters only).
2. ``collect-kernels``: every 7x7 and 5x5 kernel slice of those networks, slices of almost-zero norm
   dropped, in one HDF5 kernel bank.
3. ``train-vae``: one kernel VAE per slice size (7x7: hidden 32, latent 2; 5x5: hidden 64, latent 4;
   300 epochs; ``train-vae.py``).
4. ``train-bnn``: the Bayesian fconv (``FConvMNIST('bayes')``, widths 32 and 128) on MNIST with 50 to
   1,000 training examples (ten seeded stratified splits), one prior on both convolutions: standard
   normal, log-uniform or the deep weight prior (``train-bnn.py``: Adam 1e-3 decayed linearly,
   batch 256, 10,000 epochs, test accuracy of a 10-sample ensemble).
5. ``dwp-init``: ordinary fconv networks initialised from kernel-VAE decoder samples against Xavier
   initialisation, learning curves on MNIST with few examples.
6. ``random-features``: fconv networks whose conv kernels are drawn from the DWP, Xavier or the kernel
   bank ("filters") and frozen, only the dense layer trained; accuracy against the width scale k
   (the release's ``train-net.py --rfe 1``).
7. ``convergence``: the same initialisations, every parameter trained; the ConvNet's test accuracy and
   a convolutional VAE's lower bound per optimisation step (``train-net.py --fastconv 1``).
8. ``run``: all of it in one run directory ``OUT/dwp/<run-id>/`` with one resumable sub-folder per
   stage (``source/``, ``kernels/``, ``vae/``, ``bnn/``, ``init/``).

Each standalone command writes its own ``OUT/dwp-<stage>/<run-id>/`` and takes the previous stage's
run directory as input (``--source-run``, ``--bank``, ``--vae-run``); a ``run`` directory works there
too. Every network, VAE and BNN is a resumable sub-run (per-epoch checkpoints), so a killed command
continues where it stopped and a finished one is skipped.

At tiny/smoke scale Fashion-MNIST stands in for notMNIST and 10,000 real MNIST digits for MNIST
(``tfbdl.data.load_for_run``); ``config.json`` and ``summary.md`` say so.

Modules: :mod:`.presets` (settings per scale), :mod:`.data`, :mod:`.rundirs` (stage inputs and
sub-runs), one per stage (:mod:`.source`, :mod:`.kernels` for the bank and the VAEs, :mod:`.bnn`,
:mod:`.initialisation`, :mod:`.random_features`, :mod:`.convergence` with :mod:`.mnist_vae`; the
kernel draws in :mod:`.kernel_sources`, the Adam steps in :mod:`.stepwise`), :mod:`.pipeline`
(``run``), :mod:`.figures`, :mod:`.report` (summary.md) and :mod:`.cli` (the Click commands). The
generic block-wise BNN fitting is :mod:`tfbdl.dwp.fitting`. TensorFlow is imported only when a stage runs.
"""

from __future__ import annotations

from tfbdl.cli.deep_weight_prior.cli import dwp
from tfbdl.cli.deep_weight_prior.data import resolve_data
from tfbdl.cli.deep_weight_prior.presets import PRESETS

__all__ = ["PRESETS", "dwp", "resolve_data"]
