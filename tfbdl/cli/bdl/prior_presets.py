"""The per-scale presets (tiny / smoke / paper) of the two prior studies of ``tfbdl bdl``:
``posterior-adaptivity`` (prior draws, and SGLD posterior samples after 10, 100, 1,000
examples per class) and ``prior-variance`` (SWAG trained under a range of Gaussian priors).

The paper presets follow the reference code (``izmailovpavel/understandingbdl``); the comments
say where and why a value differs.
"""

from __future__ import annotations

import dataclasses

from tfbdl.cli.bdl.presets import PRESETS, SwagPreset

__all__ = ["ADAPTIVITY_PRESETS", "AdaptivityPreset", "CHAIN_INITS", "PRIOR_VARIANCE_MODELS", "PRIOR_VARIANCE_PRESETS",
           "PriorVariancePreset"]

# --------------------------------------------------------------------------- posterior-adaptivity

CHAIN_INITS = ("prior", "standard")


@dataclasses.dataclass(frozen=True)
class AdaptivityPreset:
    """One posterior-adaptivity run: prior draws, then SGLD chains per training-set size."""

    model: str
    dataset: str
    per_class: tuple[int, ...]  # training examples per class the posterior sees (nested sets)
    test_per_class: int  # test images per class the predictive distributions are measured on
    prior_var: float  # N(0, prior_var I) on every weight (the reference: sigma = sqrt(10))
    prior_draws: int  # prior weight draws (single samples and the prior predictive)
    chains: int  # SGLD chains per training-set size; each gives one posterior sample
    init: str  # where a chain starts: "prior" (a prior draw) or "standard" (the network's initialisation)
    warmup_steps: int  # Adam steps (constant lr) that bring the chain to the data before the Langevin steps
    warmup_lr: float
    sgld_steps: int  # Langevin steps; lr cosine-annealed from sgld_lr to 0
    sgld_lr: float  # per mean loss: the step adds sqrt(2 lr / N) N(0, I) noise (temperature 1)
    batch_size: int  # a batch of all N examples when N is at most this
    checkpoints: int  # checkpoints per phase of a chain (a rerun resumes from the last)
    bn_images: int | None = 1000  # training images that refresh batch norm per draw and per sample
    conv_widths: tuple[int, ...] | None = None  # LeNet5's widths (None: the reference's 20, 50 / 500)
    dense_widths: tuple[int, ...] | None = None


# LeCun's LeNet-5 widths (conv 6, 16; dense 120, 84): on 2 busy CPU cores the reference's LeNet5
# (20, 50; 500) took twice as long a step (0.12 s for 100 digits).
_CLASSIC = ((6, 16), (120, 84))

ADAPTIVITY_PRESETS = {
    # LeNet5 has no batch norm: from a draw of N(0, 10 I) its logits are ~1e6 and Langevin steps at
    # lr 1e-3 diverged (weights ~4e7 after 200 steps), so at tiny and smoke a chain starts at the
    # standard initialisation, and Adam steps bring it to the data before the Langevin steps (SGD
    # with momentum at lr 0.05 - 0.1 left some chains at chance after 60 steps).
    "tiny": AdaptivityPreset("lenet5", "mnist", (2, 10, 50), 10, 10.0, 20, 2, "standard", 60, 3e-3, 20, 1e-3,
                             50, 1, conv_widths=_CLASSIC[0], dense_widths=_CLASSIC[1]),
    "smoke": AdaptivityPreset("lenet5", "mnist", (10, 100, 1000), 50, 10.0, 200, 3, "standard", 200, 3e-3, 300,
                              1e-3, 128, 4, conv_widths=_CLASSIC[0], dense_widths=_CLASSIC[1]),
    # The reference notebook (experiments/priors/cifar_posterior_predictions.ipynb): PreResNet20
    # without augmentation on CIFAR-10, N(0, 10 I) prior, 500 prior draws, 20 test images per
    # class; the chain starts at a prior draw and runs 5,000 full-batch SGLD epochs (its loader's
    # batch of 10,000 holds every training set), lr 1e-3 cosine-annealed, noise factor 1 / sqrt(N)
    # (temperature 1), no SGD epochs before. It draws one chain per size; three here, so that the
    # posterior predictive and the chains' disagreement can be measured too.
    # Where else it differs: the notebook runs one size, 100 per class (10 and 1,000 are the
    # paper's figure); it takes the first examples of each class in file order (training and test),
    # here the first of a seeded order, so --seed gives other sets; and it never calls eval(), so
    # its predictions normalise with the statistics of the test batch itself, while here each draw
    # and sample refreshes batch norm on up to bn_images training images and predicts in inference
    # mode, so an image's prediction does not depend on the other test images.
    "paper": AdaptivityPreset("preresnet20", "cifar10", (10, 100, 1000), 20, 10.0, 500, 3, "prior", 0, 3e-3, 5000,
                              1e-3, 10000, 50),
}


# --------------------------------------------------------------------------- prior-variance

PRIOR_VARIANCE_MODELS = ("lenet5", "preresnet20", "vgg16")


@dataclasses.dataclass(frozen=True)
class PriorVariancePreset:
    """A sweep: one SWAG run (no weight decay, a N(0, v I) prior) per prior variance v."""

    member: SwagPreset  # the SWAG settings of every value (its prior_var is replaced by each value)
    prior_vars: tuple[float, ...]


# The reference names no values (its README: train SWAG with the commands above "setting --wd=0.
# and varying --prior_var"); the paper grid is decades around its LeNet5 value 0.1, from a prior
# that decays the weights more than any usual weight decay (1e-3) to one that hardly does (100).
_PAPER_VARS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
_VALUES = {"tiny": (1e-3, 1e-1, 10.0), "smoke": (1e-3, 1e-2, 1e-1, 1.0, 10.0), "paper": _PAPER_VARS}
# LeNet5 on MNIST at tiny / smoke: fewer images and epochs than its swag presets, so that a sweep
# of values costs what one swag run does (smoke: about 1.5 minutes a value on 2 busy CPU cores).
_LENET_SIZES = {"tiny": {"n_train": 1000, "n_test": 200, "epochs": 3, "swa_start": 1, "max_rank": 2, "samples": 3},
                "smoke": {"n_train": 5000, "n_test": 2000, "epochs": 10, "swa_start": 5, "max_rank": 5,
                          "samples": 10},
                "paper": {}}


def _sweep(model: str, scale: str) -> PriorVariancePreset:
    """The model's swag preset at ``scale`` without weight decay (the reference's --wd=0.), no
    held-out split, the sizes above for LeNet5; the prior variance is set per value."""
    sizes = _LENET_SIZES[scale] if model == "lenet5" else {}
    member = dataclasses.replace(PRESETS[model][scale], weight_decay=0.0, n_val=0, prior_var=None, **sizes)
    return PriorVariancePreset(member, _VALUES[scale])


PRIOR_VARIANCE_PRESETS: dict[str, dict[str, PriorVariancePreset]] = {
    model: {scale: _sweep(model, scale) for scale in _VALUES} for model in PRIOR_VARIANCE_MODELS
}
