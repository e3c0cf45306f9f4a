"""Metrics, figure and summary of ``convnet-gp finite-width``: how far the output covariance of random
finite networks is from the NNGP kernel matrix, for each architecture and width.

Distances are relative Frobenius norms ``||C - K|| / ||K||``. For an estimate ``C`` (a mean over
``S`` networks of per-network matrices ``X_s``), its Monte Carlo noise level is ``||SE|| / ||K||``
with ``SE`` the entries' standard errors from the draws; ``distance^2 - noise^2`` estimates the
squared finite-width bias ``||E[X] - K||^2 / ||K||^2`` without the noise (reported as its root, 0
when negative). The dashed reference is the noise level of ``S`` exact GP draws,
``sqrt(sum_ij (K_ii K_jj + K_ij^2) / S) / ||K||``.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from tfbdl.cli.common import run_data_line

__all__ = ["estimate", "finite_figure", "finite_metrics", "finite_summary", "gp_noise", "replicate_curves"]


def estimate(mean: np.ndarray, second: np.ndarray, count: int, kernel: np.ndarray) -> dict:
    """Distance, noise level, bias and largest |z| of a mean ``[N, N]`` of ``count`` draws whose
    entries' second moments are ``second [N, N]``, against ``kernel [N, N]``."""
    variance = np.maximum(second - mean**2, 0.0) * count / max(count - 1, 1)
    error = np.sqrt(variance / count)
    scale = np.linalg.norm(kernel)
    distance, noise = np.linalg.norm(mean - kernel) / scale, np.linalg.norm(error) / scale
    z = np.abs(mean - kernel)[error > 0] / error[error > 0]
    return {"distance": float(distance), "noise": float(noise),
            "bias": float(np.sqrt(max(distance**2 - noise**2, 0.0))), "max_z": float(z.max()) if z.size else 0.0}


def gp_noise(kernel: np.ndarray, count) -> np.ndarray:
    """The Monte Carlo noise level of the covariance of ``count`` exact GP draws (relative to ||K||)."""
    diag = np.diag(kernel)
    total = np.sum(np.outer(diag, diag) + kernel**2)
    return np.sqrt(total / np.asarray(count, dtype=np.float64)) / np.linalg.norm(kernel)


def replicate_curves(unit: dict, kernel: np.ndarray, replicates: int) -> dict:
    """Distance against the number of networks within each replicate, at ``unit["curve_draws"]``:
    ``output`` (the plain estimate) and ``kernel`` (readout-averaged), each ``[replicates, points]``."""
    outputs, points = unit["outputs"], [int(p) for p in unit["curve_draws"]]
    per_replicate, scale = len(outputs) // replicates, np.linalg.norm(kernel)
    values = []
    for r in range(replicates):
        f = outputs[r * per_replicate:(r + 1) * per_replicate]
        values.append([np.linalg.norm(f[:s].T @ f[:s] / s - kernel) / scale for s in points])
    return {"draws": points, "output": values, "kernel": np.asarray(unit["kernel_curve"]).tolist()}


def _row(width: int, unit: dict, kernel: np.ndarray, seconds: float) -> dict:
    """The metrics of one (architecture, width)."""
    f = unit["outputs"]
    count = len(f)
    plain = estimate(f.T @ f / count, np.square(f).T @ np.square(f) / count, count, kernel)
    averaged = estimate(unit["kernel_sum"] / count, unit["kernel_sq"] / count, count, kernel)
    z = f[:, 0] / np.sqrt(kernel[0, 0])
    centred = z - z.mean()
    distances = unit["network_distance"]
    return {"width": width, "networks": count, "seconds": seconds,
            **{f"output_{k}": v for k, v in plain.items()}, **{f"kernel_{k}": v for k, v in averaged.items()},
            "network_distance": float(distances.mean()),
            "network_distance_se": float(distances.std(ddof=1) / np.sqrt(count)),
            "gp_noise": float(gp_noise(kernel, count)),
            "output_excess_kurtosis": float(np.mean(centred**4) / np.mean(centred**2) ** 2 - 3)}


def _slope(widths, values) -> float | None:
    """Slope of log(values) against log(widths) (None with fewer than two widths)."""
    if len(widths) < 2 or min(values) <= 0:
        return None
    return float(np.polyfit(np.log(widths), np.log(values), 1)[0])


def finite_metrics(preset, analytic: dict, units: dict, seconds: dict) -> dict:
    """Per architecture: why its networks' limit differs from the kernel (or None), one row per
    width, replicate curves, and the fitted slope of one network's distance against the width."""
    from tfbdl.kernels import paper_network
    from tfbdl.kernels.finite import limit_mismatch

    result = {}
    for name in preset.kernels:
        rows = [_row(w, units[(name, w)], analytic[name], seconds[(name, w)]) for w in preset.widths]
        curves = {str(w): replicate_curves(units[(name, w)], analytic[name], preset.replicates)
                  for w in preset.widths}
        result[name] = {"mismatch": limit_mismatch(paper_network(name)), "rows": rows, "curves": curves,
                        "network_distance_slope": _slope(preset.widths, [r["network_distance"] for r in rows])}
    return {"kernels": result, "images": preset.images, "replicates": preset.replicates}


def _band(ax, draws, values, colour, label: str) -> None:
    """The mean over replicates against the networks drawn, and their min-max band."""
    values = np.asarray(values)
    ax.loglog(draws, values.mean(0), color=colour, marker=".", label=label)
    ax.fill_between(draws, values.min(0), values.max(0), color=colour, alpha=0.2, lw=0)


def finite_figure(run, preset, metrics: dict, units: dict, analytic: dict) -> None:
    """finite_width.png: per architecture (rows) the distance of the plain and of the readout-averaged
    estimate against the networks drawn, the distances against the width, and a normal QQ plot of
    the first image's output."""
    from tfbdl.plots import pyplot, save_figure

    plt = pyplot()
    names = preset.kernels
    fig, axes = plt.subplots(len(names), 4, figsize=(15, 3.4 * len(names)), squeeze=False)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(preset.widths)))
    for row, name in enumerate(names):
        entry, kernel = metrics["kernels"][name], analytic[name]
        a, b, c, d = axes[row]
        for colour, width in zip(colours, preset.widths):
            curves = entry["curves"][str(width)]
            _band(a, curves["draws"], curves["output"], colour, f"{width} channels")
            _band(b, curves["draws"], curves["kernel"], colour, f"{width} channels")
            z = np.sort(units[(name, width)]["outputs"][:, 0] / np.sqrt(kernel[0, 0]))
            quantiles = [NormalDist().inv_cdf((i + 0.5) / z.size) for i in range(z.size)]
            d.plot(quantiles, z, color=colour, lw=1, label=f"{width} channels")
        draws = np.unique(np.concatenate([entry["curves"][str(w)]["draws"] for w in preset.widths]))
        a.loglog(draws, gp_noise(kernel, draws), "k--", lw=1, label="exact GP draws (noise)")
        a.set_title(f"{name}: output covariance over networks", fontsize=9)
        b.set_title(f"{name}: readout-averaged covariance", fontsize=9)
        for ax in (a, b):
            ax.set_xlabel("networks drawn (per replicate; band: min-max)")
            ax.set_ylabel("||C - K|| / ||K||")
            ax.legend(fontsize=6)
        rows = entry["rows"]
        widths = [r["width"] for r in rows]
        c.errorbar(widths, [r["network_distance"] for r in rows], yerr=[r["network_distance_se"] for r in rows],
                   marker="o", color="C0", label="one network's kernel (mean ± s.e.)")
        for key, marker, colour, label in (("output", "s", "C1", "output covariance"),
                                           ("kernel", "^", "C2", "readout-averaged")):
            c.plot(widths, [r[f"{key}_distance"] for r in rows], marker=marker, color=colour,
                   label=f"{label}, all networks")
            c.plot(widths, [r[f"{key}_noise"] for r in rows], ls=":", color=colour, label=f"{label}: noise level")
        c.set_xscale("log")
        c.set_yscale("log")
        c.xaxis.set_minor_locator(plt.NullLocator())
        c.set_xticks(widths, [str(w) for w in widths])
        c.set_xlabel("channels")
        c.set_ylabel("||C - K|| / ||K||")
        c.set_title(f"{name}: against the width", fontsize=9)
        c.legend(fontsize=6)
        lim = 4
        d.plot([-lim, lim], [-lim, lim], "k--", lw=1)
        d.set_xlim(-lim, lim)
        d.set_ylim(-lim, lim)
        d.set_xlabel("normal quantile")
        d.set_ylabel("f(x_1) / sqrt(K_11), sorted")
        d.set_title(f"{name}: output of the first image", fontsize=9)
        d.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, run.file("finite_width.png"))


def _trend(slope: float | None) -> str:
    if slope is None:
        return "(one width only)"
    return f"falls with the width (log-log slope {slope:.2f})" if slope < -0.1 else \
        f"does not fall with the width (log-log slope {slope:.2f})"


def _beyond_noise(rows: list[dict], key: str) -> str:
    """The widths at which an estimate is more than twice its noise level from K."""
    widths = [str(r["width"]) for r in rows if r[f"{key}_distance"] > 2 * r[f"{key}_noise"]]
    return f"at {', '.join(widths)} channels" if widths else "at no width"


def finite_summary(run, preset, metrics: dict) -> str:
    """summary.md: per architecture a table of the distances per width and what they show."""
    lines = [f"Random finite CNNs against the infinite-width GP on {preset.images} MNIST training images: at each "
             f"width, random networks drawn with the kernel's weight and bias variances (per fan-in), their "
             f"output covariance C over the networks compared with the raw NNGP kernel matrix K. Distances are "
             f"||C - K|| / ||K|| (Frobenius); 'noise' is the Monte Carlo noise level of C from the draws "
             f"({preset.replicates} independent replicates give the figure's bands), 'bias' "
             f"sqrt(max(distance^2 - noise^2, 0)). 'Readout-averaged' averages each network's output covariance "
             f"over its last readout's weights; 'one network's kernel' is the mean over networks of that "
             f"covariance's distance to K. The release's exp_random_nn used 3, 10, 30 and 100 channels, 10,000 "
             f"networks and 100 images.", ""]
    for name in preset.kernels:
        entry = metrics["kernels"][name]
        rows = entry["rows"]
        lines += [f"### {name}", "",
                  "| channels | networks | output covariance: distance (noise; bias) | largest z | readout-averaged: "
                  "distance (noise; bias) | largest z | one network's kernel | output excess kurtosis | time |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(
                f"| {r['width']} | {r['networks']:,} | {r['output_distance']:.3f} ({r['output_noise']:.3f}; "
                f"{r['output_bias']:.3f}) | {r['output_max_z']:.1f} | {r['kernel_distance']:.3f} "
                f"({r['kernel_noise']:.3f}; {r['kernel_bias']:.3f}) | {r['kernel_max_z']:.1f} | "
                f"{r['network_distance']:.3f} ± {r['network_distance_se']:.3f} | "
                f"{r['output_excess_kurtosis']:.2f} | {r['seconds']:.1f} s |")
        first, last = rows[0], rows[-1]
        lines += ["", f"One network's kernel is {first['network_distance']:.3f} from K at {first['width']} channels "
                      f"and {last['network_distance']:.3f} at {last['width']}: it "
                      f"{_trend(entry['network_distance_slope'])}. The first image's output has excess kurtosis "
                      f"{first['output_excess_kurtosis']:.2f} at {first['width']} channels and "
                      f"{last['output_excess_kurtosis']:.2f} at {last['width']} (0 for a Gaussian). Over all the "
                      f"networks drawn, the output covariance is more than twice its noise level from K "
                      f"{_beyond_noise(rows, 'output')}, the readout-averaged one {_beyond_noise(rows, 'kernel')}; "
                      f"at {last['width']} channels they are {last['output_distance']:.3f} and "
                      f"{last['kernel_distance']:.3f} from K (noise levels {last['output_noise']:.3f} and "
                      f"{last['kernel_noise']:.3f}; {last['networks']:,} exact GP draws would give "
                      f"{last['gp_noise']:.3f})."]
        if entry["mismatch"]:
            lines += ["", f"The finite networks of {name} do not have K as their limit: {entry['mismatch']}."]
        lines.append("")
    lines += [f"Data: {run_data_line(run)}.", ""]
    return "\n".join(lines)
