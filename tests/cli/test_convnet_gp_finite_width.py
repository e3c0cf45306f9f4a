"""``tfbdl convnet-gp finite-width``: a tiny run end to end, a rerun that recomputes nothing, a resume
that recomputes only the missing (architecture, width), and bad options as one-line errors."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tfbdl.cli.convnet_gp.finite_width import FINITE_PRESETS, batch_size, resolve_preset, unit_file
from tfbdl.cli.main import cli
from tfbdl.cli.registry import EXPERIMENTS
from tfbdl.errors import InvalidOptionError


def _run(*args):
    return CliRunner().invoke(cli, ["convnet-gp", "finite-width", *args])


def test_presets_and_batches():
    tiny = resolve_preset("tiny", (), None, None, None, None)
    assert tiny == FINITE_PRESETS["tiny"]
    chosen = resolve_preset("smoke", ("resnet_gp",), (3, 50), 8, 2, 4)
    assert (chosen.kernels, chosen.widths, chosen.draws, chosen.replicates, chosen.images) == (
        ("resnet_gp",), (3, 50), (8, 8), 2, 4)
    # a width between the preset's takes the draws of the next narrower one
    assert resolve_preset("smoke", (), (2, 50, 200), None, None, None).draws == (1024, 128, 32)
    with pytest.raises(InvalidOptionError, match="--draws 6 must be a multiple of --replicates 4"):
        resolve_preset("smoke", (), None, 6, None, None)
    assert batch_size(3, 64) == 64 and batch_size(100, 4) == 4 and batch_size(30, 8) == 8
    assert batch_size(100, 6) == 3  # a divisor of the replicate's draws within 512 channels
    (entry,) = [e for e in EXPERIMENTS if e.name == "convnet-gp-finite-width"]
    assert entry.command == ("convnet-gp", "finite-width")


def test_tiny_end_to_end_rerun_and_resume(shared_data_dir, tmp_path):
    out = tmp_path / "runs"
    args = ["--scale", "tiny", "--out", str(out), "--data-dir", str(shared_data_dir)]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in (out / "convnet-gp-finite-width").iterdir() if p.is_dir()]
    preset = FINITE_PRESETS["tiny"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = metrics["kernels"]["convnet_gp"]["rows"]
    assert [r["width"] for r in rows] == list(preset.widths)
    assert [r["networks"] for r in rows] == list(preset.draws)
    distances = [r["network_distance"] for r in rows]
    assert distances[0] > distances[1] > distances[2]  # one network's kernel approaches K as the width grows
    assert metrics["kernels"]["convnet_gp"]["mismatch"] is None
    for r in rows:
        assert 0 < r["output_noise"] and 0 < r["kernel_noise"] < r["output_noise"]
        assert r["gp_noise"] > 0 and np.isfinite(r["output_excess_kurtosis"])
    with np.load(run_dir / unit_file("convnet_gp", 3)) as unit:
        assert unit["outputs"].shape == (preset.draws[0], preset.images)
        assert unit["kernel_sum"].shape == (preset.images, preset.images)
        assert unit["kernel_curve"].shape == (preset.replicates, len(unit["curve_draws"]))
        assert unit["curve_draws"][-1] == preset.draws[0] // preset.replicates
    kernel = np.load(run_dir / "analytic" / "convnet_gp.npy")
    assert kernel.shape == (preset.images, preset.images) and np.all(np.linalg.eigvalsh(kernel) > 0)
    summary = (run_dir / "summary.md").read_text()
    assert f"{distances[0]:.3f}" in summary and f"{distances[-1]:.3f}" in summary  # numbers of this run
    assert (run_dir / "finite_width.png").stat().st_size > 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"][0]["requested"] == "mnist"

    files = {w: run_dir / unit_file("convnet_gp", w) for w in preset.widths}
    stamps = {w: f.stat().st_mtime_ns for w, f in files.items()}
    rerun = _run(*args)
    assert rerun.exit_code == 0, rerun.output
    assert "networks in" not in rerun.output  # complete: nothing drawn again
    assert {w: f.stat().st_mtime_ns for w, f in files.items()} == stamps

    # A run killed before its last width resumes with that width alone, and draws the same networks.
    with np.load(files[30]) as unit:
        before = dict(unit)
    files[30].unlink()
    progress = json.loads((run_dir / "progress.json").read_text())
    del progress["__complete__"], progress["convnet_gp/w30"]
    (run_dir / "progress.json").write_text(json.dumps(progress))
    resumed = _run(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "convnet_gp width 3: done earlier, kept" in resumed.output
    assert "convnet_gp width 30: 16 networks in" in resumed.output
    assert files[3].stat().st_mtime_ns == stamps[3]
    with np.load(files[30]) as unit:
        for name, value in before.items():
            np.testing.assert_array_equal(unit[name], value)
    again = json.loads((run_dir / "metrics.json").read_text())["kernels"]["convnet_gp"]["rows"]
    assert [{**r, "seconds": 0} for r in again] == [{**r, "seconds": 0} for r in rows]  # the same numbers


@pytest.mark.parametrize("args, code, needle", [
    (["--widths", "abc"], 2, "'--widths': must be comma-separated channel counts >= 1"),
    (["--widths", "0,10"], 2, "'--widths': must be comma-separated channel counts >= 1"),
    (["--draws", "6", "--replicates", "4"], 1, "--draws 6 must be a multiple of --replicates 4"),
    (["--replicates", "1"], 2, "'--replicates': 1 is not in the range x>=2"),
    (["--kernel", "lenet"], 2, "'--kernel': 'lenet' is not one of"),
    (["--images", "1"], 2, "'--images': 1 is not in the range x>=2"),
])
def test_a_bad_option_is_one_line(tmp_path, args, code, needle):
    result = _run(*args, "--scale", "tiny", "--out", str(tmp_path / "runs"))
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], result.output
    assert not (tmp_path / "runs").exists()  # refused before any run folder
