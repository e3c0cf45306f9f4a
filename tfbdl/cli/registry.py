"""The experiments ``tfbdl run-all`` runs, in order. Each paper's module adds its own here."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered experiment: its name, the CLI words that run it, what it reproduces, and the
    function that resolves the data it reads (``module:function``; None for generated data)."""

    name: str
    command: tuple[str, ...]  # e.g. ("data", "check"); run-all appends the common options
    title: str
    data: str | None
    data_options: tuple[tuple[str, str], ...] = ()  # keyword arguments of the data function

    def resolve_data(self, scale: str, data_dir=None, seed: int = 0) -> list[dict]:
        """The provenance of every dataset the experiment reads at ``scale``, sizes fitted to the
        data on this machine, without training anything: what its ``config.json`` will record."""
        if self.data is None:
            return []
        import importlib

        module, function = self.data.split(":")
        return getattr(importlib.import_module(module), function)(scale, data_dir, seed, **dict(self.data_options))


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("data-check", ("data", "check"),
               "Data layer: which data each paper gets at this scale, checked against documented facts",
               "tfbdl.cli.data_check:resolve_data"),
    Experiment("convnet-gp", ("convnet-gp", "run"),
               "Deep Convolutional Networks as shallow Gaussian Processes: ConvNet GP kernel, exact GP "
               "classification", "tfbdl.cli.convnet_gp:resolve_data"),
    Experiment("convnet-gp-search", ("convnet-gp", "search"),
               "Deep Convolutional Networks as shallow Gaussian Processes: random hyperparameter search, "
               "marginal-likelihood optimisation", "tfbdl.cli.convnet_gp:resolve_search_data"),
    Experiment("convnet-gp-finite-width", ("convnet-gp", "finite-width"),
               "Deep Convolutional Networks as shallow Gaussian Processes: random finite CNNs against the "
               "infinite-width GP", "tfbdl.cli.convnet_gp.finite_width:resolve_data"),
    Experiment("bdl-swag", ("bdl", "swag"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: SGD vs SWA vs SWAG",
               "tfbdl.cli.bdl.swag:resolve_data"),
    Experiment("bdl-swag-preresnet20", ("bdl", "swag", "--model", "preresnet20"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: SGD vs SWA vs SWAG, "
               "PreResNet20 on CIFAR-10", "tfbdl.cli.bdl.swag:resolve_data", (("model", "preresnet20"),)),
    Experiment("bdl-multiswag", ("bdl", "multiswag"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: deep ensembles vs "
               "MultiSWA vs MultiSWAG", "tfbdl.cli.bdl.multiswag:resolve_data"),
    Experiment("bdl-multiswag-preresnet20", ("bdl", "multiswag", "--model", "preresnet20"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: deep ensembles vs "
               "MultiSWA vs MultiSWAG on CIFAR-10 and CIFAR-10-C, PreResNet20",
               "tfbdl.cli.bdl.multiswag:resolve_data", (("model", "preresnet20"),)),
    Experiment("bdl-cifar-c", ("bdl", "make-cifar-c"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: CIFAR-10-C corruptions",
               "tfbdl.cli.bdl.cifar_c:resolve_data"),
    Experiment("bdl-prior-correlations", ("bdl", "prior-correlations"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: prior correlations",
               "tfbdl.cli.bdl.priors:resolve_data"),
    Experiment("bdl-regression-1d", ("bdl", "regression-1d"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: HMC vs deep ensembles "
               "vs VI on 1-D regression", None),
    Experiment("bdl-rethinking-generalization", ("bdl", "rethinking-generalization"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: rethinking "
               "generalization (corrupted labels)", "tfbdl.cli.bdl.rethinking:resolve_data"),
    Experiment("bdl-posterior-adaptivity", ("bdl", "posterior-adaptivity"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: prior draws, the prior "
               "predictive and SGLD posterior samples after 10, 100, 1,000 examples per class",
               "tfbdl.cli.bdl.adaptivity:resolve_data"),
    Experiment("bdl-prior-variance", ("bdl", "prior-variance"),
               "Bayesian Deep Learning and a Probabilistic Perspective of Generalization: SGD, SWA and SWAG "
               "against the prior variance (no weight decay)", "tfbdl.cli.bdl.prior_variance:resolve_data"),
    Experiment("dwp", ("dwp", "run"),
               "The Deep Weight Prior: kernel bank, kernel VAEs, BNNs with standard-normal / log-uniform / DWP priors, "
               "DWP initialisation", "tfbdl.cli.deep_weight_prior:resolve_data"),
    Experiment("dwp-random-features", ("dwp", "random-features"),
               "The Deep Weight Prior: random feature extraction, frozen conv kernels from the DWP / Xavier / the "
               "kernel bank, accuracy against the width scale",
               "tfbdl.cli.deep_weight_prior.random_features:resolve_data"),
    Experiment("dwp-convergence", ("dwp", "convergence"),
               "The Deep Weight Prior: faster convergence, DWP / Xavier / kernel-bank initialisation, ConvNet accuracy "
               "and VAE lower bound per step",
               "tfbdl.cli.deep_weight_prior.convergence:resolve_data"),
    Experiment("linearized", ("linearized", "run"),
               "What can linearized neural networks actually say about generalization?: NTK eigenfunctions, NADs, "
               "linear vs non-linear training", "tfbdl.cli.linearized:resolve_data"),
    Experiment("feature-amounts", ("feature-amounts", "sweep"),
               "Rethinking Layer-wise Feature Amounts: a VGG family that moves a fixed feature budget between layers",
               "tfbdl.cli.feature_amounts:resolve_data"),
)


def by_name(names) -> list[Experiment]:
    """The registered experiments named in ``names`` (all of them when empty), in run order."""
    if not names:
        return list(EXPERIMENTS)
    known = {e.name for e in EXPERIMENTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        from tfbdl.errors import InvalidOptionError

        raise InvalidOptionError(f"unknown experiment(s) {', '.join(unknown)}; "
                                 f"registered: {', '.join(sorted(known))}")
    return [e for e in EXPERIMENTS if e.name in names]
