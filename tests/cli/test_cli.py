"""The tfbdl command line: fast help, one-line errors without tracebacks, data commands, run-all."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tfbdl.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def _tfbdl(*args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO, timeout=300)


def test_help_does_not_import_tensorflow():
    code = ("import sys; from tfbdl.cli.main import cli\n"
            "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'gpflow', 'tensorflow_probability', 'matplotlib', 'h5py')"
            " if m in sys.modules]\nprint('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_every_command_documents_every_option():
    runner = CliRunner()
    for path in (["--help"], ["data", "--help"], ["data", "check", "--help"], ["data", "fetch", "--help"],
                 ["data", "info", "--help"], ["run-all", "--help"]):
        result = runner.invoke(cli, path)
        assert result.exit_code == 0, result.output
    check_help = runner.invoke(cli, ["data", "check", "--help"]).output
    for option in ("--scale", "--out", "--data-dir", "--seed", "--resume / --no-resume"):
        assert option in check_help
    assert "--only" in runner.invoke(cli, ["run-all", "--help"]).output


@pytest.mark.parametrize("args, needle, code", [
    (["data", "fetch", "cifar11"], "unknown dataset 'cifar11'", 1),
    (["data", "check", "--scale", "huge"], "Invalid value for '--scale'", 2),
    (["run-all", "--only", "nonsense"], "Invalid value for '--only'", 2),
    (["data", "fetch", "mnist"], "train-images-idx3-ubyte.gz is missing", 1),
])
def test_user_errors_print_one_clear_line_and_no_traceback(args, needle, code, tmp_path):
    result = _tfbdl(*args, "--data-dir", str(tmp_path),
                    env_extra={"TFBDL_OFFLINE": "1", "HOME": str(tmp_path), "TFBDL_DATA_DIR": ""}) \
        if args[:2] == ["data", "fetch"] else _tfbdl(*args)
    assert result.returncode == code
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1


def test_data_info_lists_every_dataset(shared_data_dir):
    result = CliRunner().invoke(cli, ["data", "info", "--data-dir", str(shared_data_dir)])
    assert result.exit_code == 0
    for name in ("mnist", "fashion_mnist", "mnist_sample", "cifar10", "cifar100", "notmnist"):
        assert f"{name}: " in result.output
    assert f"found in {shared_data_dir / 'fashion_mnist'}" in result.output


def test_run_all_tiny_writes_report_and_resumes(shared_data_dir, tmp_path):
    out = tmp_path / "runs"
    args = ("run-all", "--scale", "tiny", "--out", str(out), "--data-dir", str(shared_data_dir), "--only", "data-check")
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    report = (out / "REPORT.md").read_text()
    assert "## data-check" in report and "All documented facts hold." in report
    assert "| fashion_mnist/train | fashion_mnist/train | full | 60000 | 6000–6000 |" in report
    figures = [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert figures and all((out / figure).is_file() for figure in figures)
    (run_dir,) = (out / "data-check").iterdir()
    assert (run_dir / "config.json").is_file() and (run_dir / "metrics.json").is_file()
    # The same command again finds the run complete and keeps it.
    stamp = (run_dir / "summary.md").stat().st_mtime_ns
    second = _tfbdl(*args)
    assert second.returncode == 0 and (run_dir / "summary.md").stat().st_mtime_ns == stamp
    assert [p.name for p in (out / "data-check").iterdir()] == [run_dir.name]
