"""The data-check experiment: load the data each paper needs at a scale, check known facts.

It records which data a run at this scale really gets (full files, embedded subset, or a
stand-in), checks facts known from each dataset's documentation, and draws sample grids.
"""

from __future__ import annotations

import numpy as np

from tfbdl.cli.common import open_run, record_run
from tfbdl.errors import TfbdlError

EXPERIMENT = "data-check"

# (dataset, split) pairs the five papers read, in report order.
REQUESTS = (
    ("fashion_mnist", "train"), ("fashion_mnist", "test"),
    ("mnist", "train"), ("mnist", "test"),
    ("mnist_sample", "all"),
    ("cifar10", "train"), ("cifar10", "test"),
    ("notmnist", "all"),
)

# Facts from each dataset's documentation: (number of examples, examples per class or None).
KNOWN_FACTS = {
    ("fashion_mnist", "train"): (60000, [6000] * 10),
    ("fashion_mnist", "test"): (10000, [1000] * 10),
    ("mnist", "train"): (60000, None),
    ("mnist", "test"): (10000, None),
    ("mnist_sample", "all"): (10000, [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]),
    ("cifar10", "train"): (50000, [5000] * 10),
    ("cifar10", "test"): (10000, [1000] * 10),
    ("notmnist", "all"): (18724, [1872, 1873, 1873, 1873, 1873, 1872, 1872, 1872, 1872, 1872]),
}
EMBEDDED_FACTS = {"train": [100] * 10, "test": [50] * 10}


class DataCheckFailed(TfbdlError):
    """Loaded data contradict a documented fact about the dataset."""


def check_facts(provenance: dict, labels: np.ndarray) -> list[str]:
    """Problems found (empty when all facts hold) for the data actually loaded."""
    counts = np.bincount(labels, minlength=10).tolist()
    key = (provenance["dataset"], provenance["split"])
    if provenance["source"] == "embedded subset":
        expected = EMBEDDED_FACTS.get(provenance["split"])
        return [] if counts == expected else [f"{key}: embedded per-class counts {counts} != {expected}"]
    if key not in KNOWN_FACTS:
        return []
    size, per_class = KNOWN_FACTS[key]
    problems = []
    if labels.size != size:
        problems.append(f"{key}: {labels.size} examples, documented {size}")
    if per_class is not None and counts != per_class:
        problems.append(f"{key}: per-class counts {counts}, documented {per_class}")
    return problems


def resolve_data(scale: str, data_dir=None, seed: int = 0) -> list[dict]:
    """What the data check at ``scale`` reads."""
    from tfbdl.data import load_for_run

    return [load_for_run(name, split, scale, data_dir).provenance for name, split in REQUESTS]


def run_data_check(*, scale: str, out: str, data_dir=None, seed: int = 0, resume: bool = True):
    """Run the data check and return its RunDir."""
    from tfbdl.data import get_spec, load_for_run
    from tfbdl.plots import class_sample_grid

    config = {"experiment": EXPERIMENT, "scale": scale, "seed": seed, "data_dir": data_dir}
    run = open_run(EXPERIMENT, config, out=out, scale=scale, resume=resume)
    if run.is_complete:
        record_run(run)
        return run

    rows, problems, drawn, provenance = [], [], set(), []
    for name, split in REQUESTS:
        loaded = load_for_run(name, split, scale, data_dir)
        p = loaded.provenance
        provenance.append(p)
        counts = np.bincount(loaded.labels, minlength=get_spec(p["dataset"]).num_classes)
        found = check_facts(p, loaded.labels)
        problems.extend(found)
        rows.append({
            "requested": f"{p['requested']}/{p['requested_split']}", "used": f"{p['dataset']}/{p['split']}", "source": p["source"],
            "reason": p["reason"], "examples": int(loaded.labels.size),
            "per_class_min": int(counts.min()), "per_class_max": int(counts.max()),
            "pixel_mean": round(float(loaded.images.mean()) / 255.0, 4),
            "shape": "x".join(map(str, loaded.images.shape[1:])), "facts": "ok" if not found else "FAILED",
        })
        figure_key = (p["dataset"], p["split"], p["source"])
        if figure_key not in drawn:
            drawn.add(figure_key)
            class_sample_grid(loaded.images, loaded.labels, get_spec(p["dataset"]).class_names,
                              run.file(f"samples_{p['dataset']}_{p['split']}.png"),
                              title=loaded.describe(), seed=seed)
    run.record_data(provenance)
    run.write_metrics({"datasets": rows, "problems": problems})
    summary = _summary(rows, problems, scale)
    if problems:
        run.write_summary(summary)
        raise DataCheckFailed("data check failed: " + "; ".join(problems))
    run.finish(summary)
    record_run(run)
    return run


def _summary(rows: list[dict], problems: list[str], scale: str) -> str:
    lines = [
        f"Data each paper reads, as a `{scale}` run gets it. 'embedded subset' means the stratified "
        "subset shipped in the package; a different 'used' dataset is a stand-in for an absent one.",
        "",
        "| requested | used | source | examples | per class | pixel mean | image | documented facts |",
        "|---|---|---|---:|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['requested']} | {r['used']} | {r['source']} | {r['examples']} | "
                     f"{r['per_class_min']}–{r['per_class_max']} | {r['pixel_mean']} | {r['shape']} | {r['facts']} |")
    stand_ins = [r for r in rows if r["reason"] and r["requested"].split("/")[0] != r["used"].split("/")[0]]
    if stand_ins:
        lines += ["", "Stand-ins:"] + [f"- {r['requested']} → {r['used']}: {r['reason']}" for r in stand_ins]
    lines += ["", "All documented facts hold." if not problems else "Problems:"] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"
