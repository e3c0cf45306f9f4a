"""``tfbdl linearized``: "What can linearized neural networks actually say about generalization?"
(Ortiz-Jiménez, Moosavi-Dezfooli and Frossard, NeurIPS 2021; reference code gortizji/linearized-networks).

One command per script of the reference, each writing its own run directory:

- ``compute-ntk`` (``compute_ntk.py``): the empirical NTK Gram matrix of a network at
  initialisation on a data subset (train and test images together, as the reference), its
  eigendecomposition, the initial weights and the inputs (``eigen.h5``), the block file of the
  Gram matrix (``ntk.h5``, resumable) and ``ntk_spectrum.png``.
- ``train-ntk`` (``train_ntk.py``): for each ``--label-idx k`` the binary task
  ``sign(phi_k(x))`` on the same images, learnt by the network and by its linearization from the
  same initial weights with the same loop and optimizer; test accuracy against ``k``
  (``eigenfunction_accuracy.png``) and, for the trained network, the alignment of its final NTK
  with the labels (``ntk_alignment.png``).
- ``compute-nads`` / ``train-nads`` (``compute_nads.py`` / ``train_nads.py``): the neural
  anisotropy directions of a LeNet with a smooth activation (GeLU, as the reference) and the
  linearly separable datasets along single NADs, learnt by the linear and the non-linear network
  (``nads.png``, ``nad_spectrum.png``, ``nad_accuracy.png``).
- ``pretrained-ntk-comparison`` (``pretrained_ntk_comparison.py``): on one eigenfunction task,
  the test accuracy per epoch of the linearization at initialisation against the linearization
  after non-linear pre-training, on the task itself (the reference) and on the images' classes.
- ``train-cifar2`` (``train_cifar.py``): a binary CIFAR-10 task (classes 0-4 against 5-9, the
  reference's ``binarize_labels(labels, 4)``, or two chosen classes), network against
  linearization, training curves.
- ``run``: all of them in one run directory, one resumable sub-folder per part, and a summary.

Training is the reference's ``sgd_train``: one output logit ``z`` and the binary cross-entropy of
``sigmoid(z)``, SGD with momentum 0.9, the learning rate decayed linearly to 0 over the steps, no
weight decay; the test accuracy is measured after every epoch. The loss is computed here on the
two logits ``[-z/2, z/2]`` with the softmax cross-entropy, which is the same function and whose
argmax is ``z > 0``, so :class:`tfbdl.train.loop.Trainer` reports the right accuracy. The
linearized network is :class:`tfbdl.ntk.linearize.LinearizedModel` at the same initial weights,
trained by the same loop (the pretrained comparison linearizes without the offset ``f(x; θ0)``,
as the reference's ``linearize_diff_model``).

Data follow the reference: images in ``[0, 1]`` standardised per channel with the training
subset's mean and standard deviation. At tiny/smoke scale an absent CIFAR-10 is replaced by
Fashion-MNIST zero-padded to 32x32 (and MNIST by the embedded 10,000 digits); ``config.json``
and the summary say which data were read.

Modules: :mod:`~tfbdl.cli.linearized.presets` (scale presets and option checks),
:mod:`~tfbdl.cli.linearized.data` (the images), :mod:`~tfbdl.cli.linearized.networks` (networks
and the training loop), :mod:`~tfbdl.cli.linearized.stages` (the resumable parts),
:mod:`~tfbdl.cli.linearized.pipeline` (``run``), :mod:`~tfbdl.cli.linearized.figures`,
:mod:`~tfbdl.cli.linearized.report` (the summaries), :mod:`~tfbdl.cli.linearized.rundirs`,
:mod:`~tfbdl.cli.linearized.options` and :mod:`~tfbdl.cli.linearized.cli` (the commands). The
numerical summaries (low-frequency energy of NADs, alignment of the trained NTK) are in
:mod:`tfbdl.ntk.spectral`.
"""

from tfbdl.cli.linearized.cli import linearized
from tfbdl.cli.linearized.data import resolve_data

__all__ = ["linearized", "resolve_data"]
