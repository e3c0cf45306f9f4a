"""The registered convnet-gp experiment (``run``): kernel matrices, exact GP classification,
metrics, figures and summary in one resumable run directory."""

from __future__ import annotations

from tfbdl.cli.common import record_run
from tfbdl.cli.convnet_gp.classify import classify_file
from tfbdl.cli.convnet_gp.kernels import save_kernels
from tfbdl.cli.convnet_gp.report import run_figures, run_summary

__all__ = ["run_experiment"]


def run_experiment(*, kernel, kind, dataset, preset, dtype, scale, out, data_dir, seed, resume):
    """Compute (or resume) the kernel file, classify with the noise chosen on 10% held out, and
    finish the run; returns the run directory."""
    run, path, seconds = save_kernels(kernel=kernel, kind=kind, dtype=dtype, dataset=dataset, scale=scale, out=out,
                                      data_dir=data_dir, seed=seed, resume=resume, preset=preset)
    if run.is_complete:
        record_run(run)
        return run
    result = classify_file(path, val_fraction=0.1, seed=seed)
    result["kernel_seconds_this_run"] = seconds
    run.write_metrics(result)
    run_figures(run, path, result)
    run.finish(run_summary(run, kernel, kind, result))
    record_run(run)
    return run
