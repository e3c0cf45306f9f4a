"""REPORT.md's fidelity table: each paper's headline claims beside what this sweep's runs measured.

One small function per claim reads a run directory (the ``metrics.json`` its experiment's module
writes) and returns the "this sweep" cell: the measured numbers and, where the claim is
directional, whether it holds here ("yes: 0.2508 < 0.2707"). :data:`CLAIMS` pairs each function
with its experiment, the paper's published number or qualitative claim (as README's fidelity
table quotes it) and the command that runs the paper's setting. A run that is missing, or whose
metrics lack what a claim needs, gives "not measured (why)" instead of failing the report.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np

from tfbdl.cli.common import data_line
from tfbdl.cli.convnet_gp import PAPER_TEST_ERROR

GP_PAPER = "ConvNet GP (Garriga-Alonso et al. 2019)"
BDL_PAPER = "Bayesian DL & generalization (Wilson & Izmailov 2020)"
DWP_PAPER = "Deep weight prior (Atanov et al. 2019)"
LINEARIZED_PAPER = "Linearized networks (Ortiz-Jiménez et al. 2021)"
FEATURES_PAPER = "Layer-wise feature amounts (Mundt et al. 2018)"

# The release's family sizes per VGG depth (the ConvNet GP paper's test errors: PAPER_TEST_ERROR).
PAPER_FAMILY_SIZES = {16: 193, 19: 139}
NEAR = 0.01  # "near the reference VGG's accuracy": within one percentage point of it, or above


class NotMeasured(Exception):
    """A claim cannot be read from this run; the message says why."""


# --------------------------------------------------------------------------- reading a run


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise NotMeasured(f"no {path.name}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotMeasured(f"{path.name} is not valid JSON") from None
    if not isinstance(value, dict):
        raise NotMeasured(f"{path.name} holds no JSON object")
    return value


def _metrics(run: Path) -> dict:
    return _read_json(Path(run) / "metrics.json")


def _config(run: Path) -> dict:
    """The run's resolved options (``config.json['config']``); {} when unreadable."""
    try:
        return _read_json(Path(run) / "config.json").get("config") or {}
    except NotMeasured:
        return {}


def _verdict(checks: list[bool]) -> str:
    return "yes" if all(checks) else "no" if not any(checks) else "in part"


def _falls(values) -> bool:
    """Whether a sequence falls strictly from each value to the next."""
    return all(b < a for a, b in zip(values, values[1:]))


# --------------------------------------------------------------------------- one function per claim


def convnet_gp_error(run: Path) -> str:
    m, config = _metrics(run), _config(run)
    kernel = config.get("kernel", "convnet_gp")
    error = 100 * m["test_error"]
    text = (f"{error:.2f}% test error with {m['n_train']:,} training / {m['n_test']:,} test images "
            f"({kernel}, {config.get('kind', 'nngp')})")
    paper = PAPER_TEST_ERROR.get(kernel)
    if paper is not None:
        text += f"; {'above' if error > paper else 'at or below'} the paper's {paper:.2f}%"
    return text


def convnet_gp_search(run: Path) -> str:
    m, config = _metrics(run), _config(run)
    best = m["best"]
    text = (f"{100 * (1 - best['score']):.2f}% validation error, the best of {len(m['trials'])} random trials "
            f"(depth {int(best['depth'])}, var_weight {best['var_weight']:.3g}, var_bias {best['var_bias']:.3g}; "
            f"{config.get('n_train', '?')} images to fit, {config.get('n_val', '?')} to score)")
    ml = m.get("marginal_likelihood")
    if ml:
        text += (f"; log marginal likelihood on {ml['num_points']} images {ml['lml_before']:.4g} → "
                 f"{ml['lml_after']:.4g} after optimisation")
    return text


def swag_nll(run: Path) -> str:
    m = _metrics(run)
    sgd, swag = m["test"]["sgd"]["nll"], m["test"]["swag"]["nll"]
    model = _config(run).get("model", "?")
    relation = "<" if swag < sgd else "≥"
    return (f"{_verdict([swag < sgd])}: SWAG {swag:.4f} {relation} SGD {sgd:.4f} "
            f"({model}, {m['n_train']:,} training / {m['n_test']:,} test images)")


def multiswag_nll(run: Path) -> str:
    curves = _metrics(run)["curves"]["test"]
    swag = [r["nll"] for r in curves["swag"]]
    ensembles = [r["nll"] for r in curves["sgd"]]
    if len(swag) < 2:
        raise NotMeasured("one model only, no curve over the number of models")
    falls, below = swag[-1] < swag[0], swag[-1] < ensembles[-1]
    return (f"{_verdict([falls, below])}: MultiSWAG {swag[0]:.4f} → {swag[-1]:.4f} "
            f"({curves['swag'][-1]['models']} models; {'falls' if falls else 'does not fall'}), "
            f"{'below' if below else 'not below'} deep ensembles {ensembles[0]:.4f} → {ensembles[-1]:.4f}")


RETHINKING_CURVES = {"laplace_log_evidence_per_point": "Laplace evidence / N",
                     "ova_elbo_per_point": "GP one-vs-all ELBO / N",
                     "binary_elbo_per_point": "GP binary ELBO / N"}


def rethinking_evidence(run: Path) -> str:
    rows = sorted(_metrics(run)["rows"], key=lambda r: r["fraction"])
    if len(rows) < 2:
        raise NotMeasured("fewer than two corruption fractions")
    checks, parts = [], []
    for key, name in RETHINKING_CURVES.items():
        values = [r[key] for r in rows]
        checks.append(_falls(values))
        parts.append(f"{name} {values[0]:.3f} → {values[-1]:.3f}"
                     + ("" if checks[-1] else " (not falling at every step)"))
    return (f"{_verdict(checks)}: " + ", ".join(parts)
            + f" (corrupted fraction {rows[0]['fraction']:g} → {rows[-1]['fraction']:g})")


def regression_gaps(run: Path) -> str:
    methods = _metrics(run)["methods"]
    ratio = {name: methods[name]["gap_to_cluster_std"] for name in ("hmc", "ensemble", "vi")}
    holds = min(ratio["hmc"], ratio["ensemble"]) > ratio["vi"]
    return (f"{_verdict([holds])}: gaps / clusters std HMC {ratio['hmc']:.2f}x, ensemble {ratio['ensemble']:.2f}x, "
            f"VI {ratio['vi']:.2f}x")


DWP_PRIORS = {"dwp": "DWP", "log-uniform": "log-uniform", "normal": "standard normal"}


def dwp_accuracy(run: Path) -> str:
    table = _metrics(run)["bnn"]["table"]
    accuracy = {(r["prior"], r["examples"]): r["accuracy_mean"] for r in table}
    if not any(prior == "dwp" for prior, _ in accuracy):
        raise NotMeasured("the DWP prior was not run")
    checks, parts = [], []
    for size in sorted({size for _, size in accuracy}):
        mine = {p: accuracy[(p, size)] for p in DWP_PRIORS if (p, size) in accuracy}
        checks.append(all(mine["dwp"] > a for p, a in mine.items() if p != "dwp"))
        parts.append(f"{size} examples: " + ", ".join(f"{DWP_PRIORS[p]} {a:.3f}" for p, a in mine.items()))
    return (f"{_verdict(checks)}: the DWP highest at {sum(checks)} of {len(checks)} sizes; "
            + "; ".join(parts))


def _prior_drawn_ahead(accuracy: dict, where: str) -> str:
    """``accuracy``: arm -> mean accuracy; the verdict that every non-Xavier arm beat Xavier."""
    if "xavier" not in accuracy or len(accuracy) < 2:
        raise NotMeasured("no Xavier arm and prior-drawn arm to compare")
    checks = [a > accuracy["xavier"] for arm, a in accuracy.items() if arm != "xavier"]
    return f"{_verdict(checks)}: {where}: " + ", ".join(f"{arm} {a:.3f}" for arm, a in accuracy.items())


def dwp_random_features(run: Path) -> str:
    metrics = _metrics(run)
    scales = list(dict.fromkeys(r["scale"] for r in metrics["table"]))
    small, large = scales[0], scales[-1]
    at = {k: {r["arm"]: r["accuracy_mean"] for r in metrics["table"] if r["scale"] == k} for k in (small, large)}
    text = _prior_drawn_ahead(at[small], f"k = {small}")
    if large != small:
        text += f"; k = {large}: " + ", ".join(f"{arm} {a:.3f}" for arm, a in at[large].items())
    return text


def dwp_convergence(run: Path) -> str:
    metrics = _metrics(run)
    steps = np.asarray(metrics["steps"])
    i = int(np.argmin(np.abs(steps - 50)))
    return _prior_drawn_ahead({arm: c["mean"][i] for arm, c in metrics["curves"].items()},
                              f"after {int(steps[i])} steps")


def linearized_eigenfunctions(run: Path) -> str:
    tasks = sorted(_metrics(run)["train-ntk"]["tasks"], key=lambda t: t["label_idx"])
    if len(tasks) < 2:
        raise NotMeasured("fewer than two eigenfunction tasks")
    top, bottom = tasks[0], tasks[-1]
    a, b = top["linear_test_accuracy"], bottom["linear_test_accuracy"]
    return (f"{_verdict([a > b])}: linearized network test accuracy {100 * a:.1f}% at k = {top['label_idx']} → "
            f"{100 * b:.1f}% at k = {bottom['label_idx']}")


def _trained_by_depth(run: Path) -> dict[int, list[dict]]:
    by_depth: dict[int, list[dict]] = {}
    for row in _metrics(run)["variants"]:
        by_depth.setdefault(int(row["depth"]), []).append(row)
    if not by_depth:
        raise NotMeasured("no variant was trained")
    return by_depth


def feature_family_size(run: Path) -> str:
    from tfbdl.nn.feature_amounts import enumerate_variants

    by_depth, family = _trained_by_depth(run), _config(run).get("family", "release")
    checks, parts = [], []
    for depth, rows in sorted(by_depth.items()):
        size = len(enumerate_variants(depth, family=family))
        trained = sum(r["mean"] is not None for r in rows)
        text = f"VGG-{depth}: {size} variants in the {family} family ({trained} trained)"
        if depth in PAPER_FAMILY_SIZES:
            checks.append(size == PAPER_FAMILY_SIZES[depth])
            text += f", the paper's {PAPER_FAMILY_SIZES[depth]}"
        parts.append(text)
    verdict = _verdict(checks) if checks else "not comparable (the paper's depths are 16 / 19)"
    return f"{verdict}: " + "; ".join(parts)


def feature_accuracy_spread(run: Path) -> str:
    checks, parts = [], []
    for depth, rows in sorted(_trained_by_depth(run).items()):
        accuracy = [r["best_val_accuracy"] for r in rows if r["mean"] is not None]
        references = [r["best_val_accuracy"] for r in rows if r["mean"] is None]
        if not accuracy:
            continue
        text = (f"VGG-{depth}: {len(accuracy)} variants {100 * min(accuracy):.1f}–{100 * max(accuracy):.1f}% "
                "best validation accuracy")
        if references:
            near = sum(a >= references[0] - NEAR for a in accuracy)
            checks.append(near > 0)
            text += f", {near} within {100 * NEAR:g} pt of the reference's {100 * references[0]:.1f}% or above"
        parts.append(text)
    if not parts:
        raise NotMeasured("only reference networks were trained")
    verdict = _verdict(checks) if checks else "not measured (no reference VGG trained)"
    return f"{verdict}: " + "; ".join(parts)


def prior_correlations(run: Path) -> str:
    m = _metrics(run)
    alpha = max(m["class_pairs"], key=float)
    pairs = np.asarray(m["class_pairs"][alpha], dtype=float)
    if pairs.ndim != 2 or pairs.shape[0] < 2:
        raise NotMeasured("fewer than two classes in the class-pair correlations")
    same, different = np.nanmean(np.diag(pairs)), np.nanmean(pairs[~np.eye(len(pairs), dtype=bool)])
    clean = np.asarray(m["perturbations"][alpha]["translation"]["matrix"], dtype=float)[0]
    if clean.size < 3:
        raise NotMeasured("no translation intensities in the perturbation correlations")
    checks = [same > different, clean[-1] < clean[1]]
    return (f"{_verdict(checks)}: alpha {alpha}: same class {same:.3f} {'>' if checks[0] else '≤'} different classes "
            f"{different:.3f}; correlation with the translated image {clean[1]:.3f} → {clean[-1]:.3f} "
            f"(intensity 1 → {clean.size - 1})")


# --------------------------------------------------------------------------- the table of claims


def finite_width_convergence(run: Path) -> str:
    """Per architecture: one network's kernel distance to K at the smallest and largest width,
    and whether the covariance over networks lies within twice its noise of K at the largest."""
    parts, checks = [], []
    for name, kernel in _metrics(run)["kernels"].items():
        rows = sorted(kernel["rows"], key=lambda r: r["width"])
        first, last = rows[0], rows[-1]
        close = last["kernel_distance"] <= 2 * last["kernel_noise"]
        falls = last["network_distance"] < first["network_distance"]
        checks.append(falls and close)
        parts.append(f"{name}: one network's kernel {first['network_distance']:.2f} → {last['network_distance']:.2f} "
                     f"of ||K|| from {first['width']} to {last['width']} channels; over networks "
                     f"{last['kernel_distance']:.2f} (noise {last['kernel_noise']:.2f})")
    return f"{_verdict(checks)}: " + "; ".join(parts)


def posterior_adaptivity(run: Path) -> str:
    """A prior draw's top-class share against the posterior samples', and the chains' disagreement."""
    m = _metrics(run)
    sizes = sorted(m["posterior"], key=int)
    post = [m["posterior"][k] for k in sizes]
    spread = post[-1]["top_class_share"] < m["prior"]["top_class_share"]
    concentrates = post[-1]["disagreement"] < post[0]["disagreement"]
    shares = " → ".join(f"{p['top_class_share']:.3f}" for p in post)
    disagreement = " → ".join(f"{p['disagreement']:.3f}" for p in post)
    return (f"{_verdict([spread, concentrates])}: a prior draw puts {m['prior']['top_class_share']:.3f} of the test "
            f"images on one class, posterior samples {shares} after {' / '.join(sizes)} examples per class; "
            f"disagreement {disagreement} nats")


def prior_variance_range(run: Path) -> str:
    """SWAG's NLL per prior variance: where it is within 10% of its best, and where below SGD's."""
    values = _metrics(run)["values"]
    nll = {v["prior_var"]: v["test"]["swag"]["nll"] for v in values}
    best = min(nll.values())
    near = [f"{v:g}" for v, x in nll.items() if x <= 1.1 * best]
    below = sum(v["test"]["swag"]["nll"] < v["test"]["sgd"]["nll"] for v in values)
    return (f"SWAG NLL within 10% of its best ({best:.4f}) at v = {', '.join(near)} of {len(nll)} values; "
            f"below SGD's at {below} of {len(values)}")


@dataclasses.dataclass(frozen=True)
class Claim:
    experiment: str  # the registered experiment (tfbdl.cli.registry) whose runs it reads
    claim: str
    paper: str  # the paper's published number or qualitative claim
    measure: Callable[[Path], str]  # run directory -> the "this sweep" cell
    command: str  # the paper-scale command


CLAIMS: tuple[Claim, ...] = (
    Claim("convnet-gp", f"{GP_PAPER}: MNIST test error", "1.03% (50,000 training images; val 0.71%)",
          convnet_gp_error, "`tfbdl convnet-gp run --scale paper`"),
    Claim("convnet-gp-search", f"{GP_PAPER}: random hyperparameter search, validation error",
          "0.71% (its chosen ConvNet GP)", convnet_gp_search,
          "`tfbdl convnet-gp search --scale paper`"),
    Claim("convnet-gp-finite-width", f"{GP_PAPER}: random finite CNNs converge to the GP as channels grow",
          "yes (the release's exp_random_nn, 3 to 100 channels)", finite_width_convergence,
          "`tfbdl convnet-gp finite-width --scale paper`"),
    Claim("bdl-swag", f"{BDL_PAPER}: SWAG's test NLL below SGD's (LeNet5 / MNIST)",
          "yes (CIFAR-10 PreResNet20, VGG16)", swag_nll, "`tfbdl bdl swag --scale paper`"),
    Claim("bdl-swag-preresnet20", f"{BDL_PAPER}: SWAG's test NLL below SGD's (PreResNet20 / CIFAR-10)",
          "yes (CIFAR-10 PreResNet20, VGG16)", swag_nll, "`tfbdl bdl swag --model preresnet20 --scale paper`"),
    Claim("bdl-multiswag", f"{BDL_PAPER}: MultiSWAG's NLL falls with the number of models (LeNet5 / MNIST)",
          "yes, below deep ensembles", multiswag_nll, "`tfbdl bdl multiswag --scale paper`"),
    Claim("bdl-multiswag-preresnet20",
          f"{BDL_PAPER}: MultiSWAG's NLL falls with the number of models (PreResNet20 / CIFAR-10)",
          "yes, below deep ensembles", multiswag_nll, "`tfbdl bdl multiswag --model preresnet20 --scale paper`"),
    Claim("bdl-prior-correlations",
          f"{BDL_PAPER}: a N(0, alpha² I) prior correlates same-class images more, less under translation",
          "yes (figures, qualitative)", prior_correlations, "`tfbdl bdl prior-correlations --scale paper`"),
    Claim("bdl-posterior-adaptivity",
          f"{BDL_PAPER}: single prior draws are confident, posterior samples spread and agree with data",
          "yes (figure; PreResNet20, CIFAR-10)", posterior_adaptivity,
          "`tfbdl bdl posterior-adaptivity --scale paper`"),
    Claim("bdl-prior-variance", f"{BDL_PAPER}: SWAG works over a broad range of prior variances (no weight decay)",
          "figure (values not listed by the release)", prior_variance_range,
          "`tfbdl bdl prior-variance --model preresnet20 --scale paper`"),
    Claim("bdl-rethinking-generalization",
          f"{BDL_PAPER}: rethinking generalization, marginal likelihood falls with label corruption", "yes",
          rethinking_evidence, "`tfbdl bdl rethinking-generalization --scale paper`"),
    Claim("bdl-regression-1d",
          f"{BDL_PAPER}: 1-D regression, HMC and ensembles grow uncertainty in gaps, mean-field VI does not",
          "yes (figure)", regression_gaps, "`tfbdl bdl regression-1d --scale paper`"),
    Claim("dwp", f"{DWP_PAPER}: MNIST test accuracy at 50 / 100 examples, the DWP highest",
          "DWP 0.800 / 0.867, log-uniform 0.766 / 0.839, standard normal 0.717 / 0.816", dwp_accuracy,
          "`tfbdl dwp run --scale paper` (needs notMNIST)"),
    Claim("dwp-random-features", f"{DWP_PAPER}: random feature extraction on MNIST, frozen kernels from the DWP or "
          "the kernel bank beat Xavier at small width scale k",
          "k = 1/16: DWP 0.956, filters 0.963, Xavier 0.930; k = 1: all 0.983-0.987", dwp_random_features,
          "`tfbdl dwp random-features --scale paper`"),
    Claim("dwp-convergence", f"{DWP_PAPER}: ConvNet on MNIST, DWP / filters initialisation ahead of Xavier after "
          "50 steps", "DWP ≈ 0.96, filters ≈ 0.96, Xavier ≈ 0.93", dwp_convergence,
          "`tfbdl dwp convergence --scale paper`"),
    Claim("linearized", f"{LINEARIZED_PAPER}: the linear model learns top NTK eigenfunctions, worse further down",
          "yes", linearized_eigenfunctions, "`tfbdl linearized run --scale paper`"),
    Claim("feature-amounts", f"{FEATURES_PAPER}: the VGG-D / VGG-E family", "193 / 139 variants (the release's grid)",
          feature_family_size, "`tfbdl feature-amounts sweep --scale paper`"),
    Claim("feature-amounts", f"{FEATURES_PAPER}: accuracy across the family",
          "variants near the reference VGG's accuracy with other layer-wise amounts (figures)",
          feature_accuracy_spread, "`tfbdl feature-amounts sweep --scale paper`"),
)


def measure(claim: Claim, run: Path) -> str:
    """The claim's "this sweep" cell for one run, or "not measured (why)"."""
    try:
        return claim.measure(Path(run))
    except NotMeasured as why:
        return f"not measured ({why})"
    except KeyError as key:
        return f"not measured (metrics.json lacks {key})"
    except (TypeError, ValueError, IndexError, AttributeError) as error:
        return f"not measured (metrics.json is not as {claim.experiment} writes it: {error})"


def data_cell(run: Path, scale: str) -> str:
    """:func:`tfbdl.cli.common.data_line` of the run's data records (generated data by name), and its scale."""
    try:
        stored = _read_json(Path(run) / "config.json")
    except NotMeasured:
        return f"—, {scale}"
    records = [r for r in stored.get("data") or [] if isinstance(r, dict)]
    parts = []
    try:
        read = [r for r in records if "requested" in r]
        if read:
            parts.append(data_line(read))
    except KeyError:
        pass
    parts += [f"{r.get('dataset', '?')} ({r.get('source', '?')})" for r in records if "requested" not in r]
    return f"{'; '.join(parts) or '—'}, {(stored.get('config') or {}).get('scale', scale)}"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def fidelity_section(results, scale: str) -> list[str]:
    """REPORT.md's section: one row per claim (and run) of every experiment that ran in the sweep;
    ``results`` is run-all's list of ``(experiment, exit status, run directories)``."""
    rows, unclaimed = [], []
    for experiment, status, runs in results:
        claims = [c for c in CLAIMS if c.experiment == experiment.name]
        if not claims:
            unclaimed.append(experiment.name)
        for claim in claims:
            if not runs:
                why = (f"the run failed, see `logs/{experiment.name}.log`" if status != 0
                       else "no run directory recorded")
                rows.append([claim.claim, claim.paper, f"not measured ({why})", "—", claim.command])
            rows += [[claim.claim, claim.paper, measure(claim, run), data_cell(run, scale), claim.command]
                     for run in runs]
    if not results:
        return []
    lines = ["## Fidelity: the papers' numbers beside this sweep's", ""]
    if rows:
        lines += ["Computed from this sweep's run directories (each run's `metrics.json`); the paper's column quotes "
                  "the paper. Where the sweep ran a smaller setting than the paper's, compare with care.", "",
                  "| paper, claim | paper | this sweep | data, scale | paper-scale command |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    else:
        lines.append("No experiment with a headline claim ran in this sweep.")
    if unclaimed:
        lines += ["", f"Ran without a headline claim in this table: {', '.join(unclaimed)}."]
    return lines + [""]
