"""Names, seed streams and per-scale settings of the deep weight prior pipeline (no TensorFlow).

One frozen dataclass per stage (source networks, kernel bank, kernel VAEs, Bayesian networks,
DWP initialisation), gathered per scale in :data:`PRESETS` (tiny, smoke, paper); commands
replace the fields their options give (:func:`replace_given`).
"""

from __future__ import annotations

import dataclasses

from tfbdl.cli.options import comma_separated
from tfbdl.errors import InvalidOptionError

__all__ = ["ARMS", "ARM_NAMES", "BnnPreset", "COMMANDS", "CONVERGENCE_PRESETS", "ConvergencePreset", "EXPERIMENT",
           "INITS", "INIT_NAMES", "INIT_TEXT", "InitPreset", "KERNEL_SIZES", "KernelPreset", "PRESETS", "PRIORS",
           "PRIOR_NAMES", "Presets", "RFE_PRESETS", "RFE_SCALES", "RfePreset", "SEED_BNN", "SEED_CONVERGENCE",
           "SEED_INIT", "SEED_RFE", "SEED_SOURCE", "SEED_SUBSET", "SEED_TEST", "SEED_VAE", "SOURCE_DATA", "STAGES",
           "STAGE_EXPERIMENTS", "SourcePreset", "TARGET_DATA", "VaePreset", "bnn_preset", "parse_scales",
           "parse_sizes", "replace_given"]

EXPERIMENT = "dwp"
STAGES = ("source", "kernels", "vae", "bnn", "init")
STAGE_EXPERIMENTS = {stage: f"dwp-{stage}" for stage in STAGES}
COMMANDS = {"source": "train-source", "kernels": "collect-kernels", "vae": "train-vae", "bnn": "train-bnn",
            "init": "dwp-init"}  # the standalone command of each stage
PRIORS = ("normal", "log-uniform", "dwp")
PRIOR_NAMES = {"normal": "standard normal", "log-uniform": "log-uniform", "dwp": "DWP"}
INITS = ("xavier", "he", "dwp")
INIT_TEXT = {"xavier": "Xavier-normal posterior means", "he": "He-normal posterior means",
             "dwp": "posterior means from kernel-VAE decoder means"}
INIT_NAMES = {"xavier": "Xavier", "dwp": "DWP samples"}  # the two initialisations of the dwp-init stage
KERNEL_SIZES = (7, 5)  # the fconv's conv1 and conv2
SOURCE_DATA, TARGET_DATA = "notmnist", "mnist"
# Independent seed streams of the stages: tfbdl.seeding.derive_seed(seed, code, ...).
SEED_SOURCE, SEED_VAE, SEED_BNN, SEED_INIT, SEED_TEST, SEED_SUBSET = 1, 2, 3, 4, 5, 6


@dataclasses.dataclass(frozen=True)
class SourcePreset:
    """Source networks (``train-net.py``)."""

    nets: int
    widths: tuple[int, int]
    epochs: int
    batch_size: int
    learning_rate: float  # decayed linearly to 0, as the reference's lr_linear
    l2: float  # l2 * sum of squares of the convolutions' weights and biases, added to the mean loss
    n_train: int | None  # source training images used (None: all)
    n_test: int | None  # source test images evaluated (None: all)


@dataclasses.dataclass(frozen=True)
class KernelPreset:
    """Kernel bank: slices with a Frobenius norm below ``threshold`` are dropped."""

    threshold: float


@dataclasses.dataclass(frozen=True)
class VaePreset:
    """Kernel VAEs (``train-vae.py``; ``data/fconv/vae{7x7,5x5}/params.yaml``)."""

    hidden_7: int
    latent_7: int
    hidden_5: int
    latent_5: int
    epochs_7: int
    epochs_5: int
    batch_size: int
    learning_rate: float  # decayed linearly, as in the reference
    validation_fraction: float  # slices held out to report the ELBO on (the reference's test file)

    def architecture(self, k: int) -> tuple[int, int]:
        """``(hidden, latent)`` of the ``k x k`` VAE."""
        return (self.hidden_7, self.latent_7) if k == 7 else (self.hidden_5, self.latent_5)

    def epochs(self, k: int) -> int:
        """Training epochs of the ``k x k`` VAE."""
        return self.epochs_7 if k == 7 else self.epochs_5

    def epochs_text(self) -> str:
        """``"N epochs"``, or the two VAEs' epochs when they differ."""
        return (f"{self.epochs_7} epochs" if self.epochs_7 == self.epochs_5 else
                f"7x7: {self.epochs_7} epochs, 5x5: {self.epochs_5} epochs")


@dataclasses.dataclass(frozen=True)
class BnnPreset:
    """Bayesian fconv on the target data (``train-bnn.py``)."""

    sizes: tuple[int, ...]  # training examples per run
    splits: int  # disjoint stratified training splits per size
    priors: tuple[str, ...]
    init: str  # posterior means of the kernels: xavier, he or dwp (decoder means)
    widths: tuple[int, int]
    epochs: int  # passes over the training examples (one step each while N <= batch_size)
    batch_size: int
    learning_rate: float  # decayed linearly to 0 (lr * (1 - e / epochs) in epoch e)
    test_samples: int  # posterior samples averaged in the test predictive (the reference's --ens)
    n_test: int | None  # target test images (None: all)
    dwp_samples: int  # weight draws in the DWP's KL estimate (the reference's --dwp_samples)
    dwp_antithetic: bool  # draws in mirrored pairs (unbiased, less gradient noise, twice the cost; reference: plain)
    log_sigma2_init: float  # initial log sigma^2 of every kernel entry (the reference's --logvarinit -10)
    block: int  # epochs per checkpoint (a long run of one-step epochs is saved every `block` epochs)


@dataclasses.dataclass(frozen=True)
class InitPreset:
    """Ordinary fconv networks on the target data, Xavier vs DWP-initialised convolutions."""

    n_train: int  # stratified training examples
    seeds: int  # networks per initialisation
    epochs: int
    widths: tuple[int, int]
    batch_size: int
    learning_rate: float  # constant
    n_test: int | None


@dataclasses.dataclass(frozen=True)
class Presets:
    """Every stage's settings at one scale."""

    source: SourcePreset
    kernels: KernelPreset
    vae: VaePreset
    bnn: BnnPreset
    init: InitPreset


PRESETS: dict[str, Presets] = {
    # CI: seconds per stage.
    "tiny": Presets(
        SourcePreset(nets=2, widths=(8, 16), epochs=1, batch_size=256, learning_rate=1e-3, l2=1e-3, n_train=2000,
                     n_test=300),
        KernelPreset(threshold=1e-2),
        VaePreset(hidden_7=8, latent_7=2, hidden_5=8, latent_5=4, epochs_7=2, epochs_5=2, batch_size=128,
                  learning_rate=1e-3, validation_fraction=0.1),
        BnnPreset(sizes=(50,), splits=2, priors=PRIORS, init="xavier", widths=(8, 16), epochs=4, batch_size=256,
                  learning_rate=1e-3, test_samples=3, n_test=300, dwp_samples=1, dwp_antithetic=False,
                  log_sigma2_init=-10.0, block=2),
        InitPreset(n_train=100, seeds=2, epochs=2, widths=(8, 16), batch_size=50, learning_rate=1e-3, n_test=300),
    ),
    # A few minutes on two CPU cores. Batches of 128 give the source networks more steps for the
    # compute; 10 epochs (~800 steps each) move their kernels well away from the random init (after
    # ~300 steps the 5x5 slices were still close to it). The DWP's KL term runs the 5x5 VAE on every
    # 5x5 slice at every step (~4M multiply-adds per slice at hidden 64), so the BNNs are narrower than
    # the paper's; the 5x5 VAE keeps the paper's hidden 64 (at hidden 32 its latent collapsed to the
    # prior, held-out KL 0.001; at 64 it is 2.2 nats after 20 epochs). The BNNs take 500 steps (the
    # paper 10,000): with log sigma^2 starting at -10 and Adam moving it ~lr a step, 100 steps left
    # every posterior a point mass at its init.
    "smoke": Presets(
        SourcePreset(nets=4, widths=(32, 64), epochs=10, batch_size=128, learning_rate=1e-3, l2=1e-3, n_train=10000,
                     n_test=2000),
        KernelPreset(threshold=1e-2),
        # The few 7x7 slices (one per conv1 filter) make two batches an epoch: more epochs for that VAE.
        VaePreset(hidden_7=32, latent_7=2, hidden_5=64, latent_5=4, epochs_7=200, epochs_5=20, batch_size=128,
                  learning_rate=1e-3, validation_fraction=0.1),
        BnnPreset(sizes=(50, 100), splits=3, priors=PRIORS, init="xavier", widths=(16, 32), epochs=500,
                  batch_size=256, learning_rate=1e-3, test_samples=10, n_test=1000, dwp_samples=1,
                  dwp_antithetic=False, log_sigma2_init=-10.0, block=50),
        InitPreset(n_train=500, seeds=3, epochs=10, widths=(16, 32), batch_size=64, learning_rate=1e-3, n_test=1000),
    ),
    # The reference's settings (README.md, train-*.py defaults).
    "paper": Presets(
        SourcePreset(nets=100, widths=(256, 512), epochs=100, batch_size=256, learning_rate=1e-3, l2=1e-3,
                     n_train=None, n_test=None),
        KernelPreset(threshold=1e-2),
        VaePreset(hidden_7=32, latent_7=2, hidden_5=64, latent_5=4, epochs_7=300, epochs_5=300, batch_size=128,
                  learning_rate=1e-3, validation_fraction=0.1),
        BnnPreset(sizes=(50, 100, 200, 500, 1000), splits=10, priors=PRIORS, init="xavier", widths=(32, 128),
                  epochs=10000, batch_size=256, learning_rate=1e-3, test_samples=10, n_test=None, dwp_samples=1,
                  dwp_antithetic=False, log_sigma2_init=-10.0, block=100),
        InitPreset(n_train=1000, seeds=10, epochs=50, widths=(32, 128), batch_size=256, learning_rate=1e-3,
                   n_test=None),
    ),
}


def replace_given(preset, **overrides):
    """``preset`` with the options that were given (not None) replaced."""
    return dataclasses.replace(preset, **{k: v for k, v in overrides.items() if v is not None})


def parse_sizes(text: str | None) -> tuple[int, ...] | None:
    """``"50,100,200"`` -> ``(50, 100, 200)`` (sorted, distinct, each >= 1); None stays None."""
    if text is None:
        return None
    try:
        sizes = comma_separated(text)
    except ValueError:
        raise InvalidOptionError(f"--sizes must be comma-separated whole numbers such as 50,100, "
                                 f"got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise InvalidOptionError(f"--sizes must list numbers of training examples >= 1, got {text!r}")
    return sizes


def bnn_preset(scale: str, *, priors, init, sizes, splits, epochs, widths, batch_size, lr, n_test, test_samples,
               dwp_samples, dwp_antithetic=None, log_sigma2_init=None) -> BnnPreset:
    """The ``scale`` BNN preset with the given options (``priors`` kept in :data:`PRIORS` order,
    ``sizes`` as ``--sizes`` text)."""
    return replace_given(PRESETS[scale].bnn, priors=tuple(p for p in PRIORS if p in priors) if priors else None,
                         init=init, sizes=parse_sizes(sizes), splits=splits, epochs=epochs, widths=widths,
                         batch_size=batch_size, learning_rate=lr, n_test=n_test, test_samples=test_samples,
                         dwp_samples=dwp_samples, dwp_antithetic=dwp_antithetic, log_sigma2_init=log_sigma2_init)


# --------------------------------------------------------------------------- random features, convergence

# Kernel initialisations of the random-feature and convergence studies: Xavier-normal, decoder means
# of the kernel VAEs (ours, the release's) and slices drawn from a kernel bank (ours, the release's).
ARMS = ("dwp", "xavier", "filters", "dwp-release", "filters-release")
ARM_NAMES = {"dwp": "dwp", "xavier": "xavier", "filters": "filters", "dwp-release": "dwp (release VAEs)",
             "filters-release": "filters (release bank)"}
SEED_RFE, SEED_CONVERGENCE = 7, 8
RFE_SCALES = {"1/16": 1 / 16, "1/8": 1 / 8, "1/4": 1 / 4, "1/2": 1 / 2, "1": 1.0}


@dataclasses.dataclass(frozen=True)
class RfePreset:
    """Random feature extraction: conv kernels drawn once and frozen, the dense layer trained."""

    scales: tuple[str, ...]  # width scales k, keys of RFE_SCALES
    base_widths: tuple[int, int]  # widths at k = 1
    seeds: int
    epochs: int
    batch_size: int
    learning_rate: float  # Adam, decayed linearly to 0 over the epochs (the release's lr_linear)
    n_train: int | None  # target training images (None: all)
    n_test: int | None


@dataclasses.dataclass(frozen=True)
class ConvergencePreset:
    """Faster convergence: every parameter trained, test accuracy after every ``eval_every`` steps."""

    steps: int
    eval_every: int
    seeds: int
    widths: tuple[int, int]
    batch_size: int
    learning_rate: float  # Adam, constant
    n_train: int | None
    n_test: int | None
    vae_steps: int  # the VAE-on-MNIST panel (0: not run)
    vae_eval_every: int
    vae_widths: tuple[int, int]  # its encoder's 7x7 and 5x5 convolutions
    vae_latent: int
    vae_learning_rate: float  # Adam, constant


# The release's train-net.py defaults (--lr 0.001, --bs 256, --epochs 100, lr_linear) and the
# paper's MNIST net (--hid_dim 32 128); its figures: k = 1/16..1, 0..300 steps.
RFE_PRESETS = {
    # CI: narrow nets so the frozen features cost little; two scales exercise the scaling.
    "tiny": RfePreset(scales=("1/16", "1/4"), base_widths=(16, 64), seeds=2, epochs=10, batch_size=64,
                      learning_rate=1e-3, n_train=500, n_test=300),
    # The release's 100 epochs on a sixth of MNIST (3,900 Adam steps, a sixth of the release's): with
    # 10 epochs the dense heads were far from trained (Xavier 0.84 at k = 1 against 0.92 with 100).
    "smoke": RfePreset(scales=("1/16", "1/4", "1"), base_widths=(32, 128), seeds=3, epochs=100, batch_size=256,
                       learning_rate=1e-3, n_train=10000, n_test=2000),
    "paper": RfePreset(scales=tuple(RFE_SCALES), base_widths=(32, 128), seeds=5, epochs=100, batch_size=256,
                       learning_rate=1e-3, n_train=None, n_test=None),
}
CONVERGENCE_PRESETS = {
    "tiny": ConvergencePreset(steps=10, eval_every=5, seeds=2, widths=(8, 16), batch_size=64, learning_rate=1e-3,
                              n_train=500, n_test=300, vae_steps=6, vae_eval_every=3, vae_widths=(4, 8), vae_latent=2,
                              vae_learning_rate=1e-3),
    "smoke": ConvergencePreset(steps=300, eval_every=10, seeds=3, widths=(32, 128), batch_size=256,
                               learning_rate=1e-3, n_train=10000, n_test=2000, vae_steps=500, vae_eval_every=25,
                               vae_widths=(32, 64), vae_latent=16, vae_learning_rate=1e-3),
    # The paper's panels: 300 steps of the ConvNet, 1,000 of the VAE (its network is not in the release).
    "paper": ConvergencePreset(steps=300, eval_every=5, seeds=10, widths=(32, 128), batch_size=256,
                               learning_rate=1e-3, n_train=None, n_test=None, vae_steps=1000, vae_eval_every=20,
                               vae_widths=(32, 64), vae_latent=16, vae_learning_rate=1e-3),
}


def parse_scales(text: str | None) -> tuple[str, ...] | None:
    """``"1/16,1"`` -> ``("1/16", "1")`` in increasing order; None stays None."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in RFE_SCALES]
    if not items or unknown:
        raise InvalidOptionError(f"--scales must be comma-separated width scales from {', '.join(RFE_SCALES)}, "
                                 f"got {text!r}")
    return tuple(s for s in RFE_SCALES if s in items)
