"""tfbdl feature-amounts: tiny sweep end to end, rerun, resume without duplicated rows, errors."""

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfbdl.cli import feature_amounts as fa_cli

REPO = Path(__file__).resolve().parents[2]


def _tfbdl(*args):
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)


def _rows(path: Path, drop=("seconds",)) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def test_tiny_sweep_end_to_end_and_rerun_does_nothing(shared_data_dir, tmp_path):
    args = ("feature-amounts", "sweep", "--scale", "tiny", "--out", str(tmp_path), "--data-dir", str(shared_data_dir))
    first = _tfbdl(*args)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "feature-amounts").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    ids = config["config"]["variant_ids"]
    assert len(ids) == 3 and all(i.startswith("d10-") for i in ids)
    assert config["data"][0]["dataset"] == "fashion_mnist"  # the recorded stand-in for CIFAR-10
    for variant_id in ids:
        rows = _rows(run_dir / "architectures" / f"{variant_id}.csv", drop=())
        assert len(rows) == 1 and rows[0]["epoch"] == "1" and float(rows[0]["lr"]) == pytest.approx(0.05)
        assert set(rows[0]) == {"epoch", "lr", "train_loss", "train_accuracy", "seconds", "val_loss",
                                "val_accuracy", "micro_batch", "oom_retries"}
        assert 0 <= float(rows[0]["val_accuracy"]) <= 1 and int(rows[0]["micro_batch"]) >= 1
    table = _rows(run_dir / "variants.csv", drop=())
    assert [r["id"] for r in table] == ids
    from tfbdl.nn.feature_amounts import enumerate_variants

    full = {v.id: v.widths for v in enumerate_variants(10)}
    for r in table:  # the release family, every layer (the classifier's too) / 16, at least 1
        widths = [int(w) for w in r["widths"].split()]
        assert len(widths) == 9 and widths == [max(1, round(w / 16)) for w in full[r["id"]]]
    assert (run_dir / "feature_amounts.png").stat().st_size > 0 and (run_dir / "variants_table.png").is_file()
    assert "Fashion-MNIST" in (run_dir / "summary.md").read_text()
    assert not any((run_dir / "checkpoints").glob("*/*.npz"))  # finished variants drop their checkpoints

    stamp = (run_dir / "summary.md").stat().st_mtime_ns
    again = _tfbdl(*args)
    assert again.returncode == 0, again.stderr
    assert (run_dir / "summary.md").stat().st_mtime_ns == stamp
    assert "variant d10" not in again.stderr


class Interrupt(Exception):
    pass


class InterruptAt:
    """Raises after epoch index ``epoch`` has been trained (before it is checkpointed or logged)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            raise Interrupt
        return None


def test_resume_after_an_interruption_gives_the_same_rows(shared_data_dir, tmp_path):
    preset = dataclasses.replace(fa_cli.PRESETS["tiny"], variants=2, epochs=3, n_train=96, n_val=32, batch_size=32)
    common = dict(preset=preset, scale="tiny", data_dir=str(shared_data_dir), seed=3, resume=True, verbose=False)
    whole, _ = fa_cli.run_sweep(out=str(tmp_path / "a"), **common)
    ids = whole.config["variant_ids"]

    def interrupt_second(variant):
        return [InterruptAt(2)] if variant.id == ids[1] else []

    with pytest.raises(Interrupt):
        fa_cli.run_sweep(out=str(tmp_path / "b"), callbacks_for=interrupt_second, **common)
    (cut,) = (tmp_path / "b" / "feature-amounts").iterdir()
    assert len(_rows(cut / "architectures" / f"{ids[1]}.csv")) == 2  # two epochs logged, the third lost
    assert not (cut / "variants.csv").exists()
    resumed, missing = fa_cli.run_sweep(out=str(tmp_path / "b"), **common)
    assert missing == 0 and resumed.is_complete
    for variant_id in ids:
        expected = _rows(whole.path / "architectures" / f"{variant_id}.csv")
        got = _rows(resumed.path / "architectures" / f"{variant_id}.csv")
        assert [r["epoch"] for r in got] == ["1", "2", "3"]
        assert got == expected
    assert _rows(resumed.path / "variants.csv") == _rows(whole.path / "variants.csv")


def test_bad_variant_id_is_a_one_line_error(tmp_path):
    for bad, message in (("d10-bogus", "is not a variant id"),
                         ("d16-m0-s0.5-a-40", "is not one of the 193 release variants of depth 16"),
                         ("d16-conv-m0-s0.5-a-40", "is not one of the 222 conv-only variants of depth 16")):
        result = _tfbdl("feature-amounts", "train", "--variant", bad, "--scale", "tiny", "--out", str(tmp_path))
        assert result.returncode == 2 and message in result.stderr  # refused while parsing --variant
        # one line from us (TensorFlow's own start-up log lines may precede it)
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr and lines[-1].startswith("Error: ")
        assert sum(line.startswith("Error") for line in lines) == 1


def test_bad_depth_is_a_one_line_error(tmp_path):
    result = _tfbdl("feature-amounts", "sweep", "--vgg-depth", "15", "--scale", "tiny", "--out", str(tmp_path))
    assert result.returncode == 1 and "7 + 3k" in result.stderr and "Traceback" not in result.stderr


def test_list_variants_prints_the_release_family():
    result = _tfbdl("feature-amounts", "list-variants", "--vgg-depth", "16")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 194 and lines[0].startswith("d16-ref\t")
    # the release's last VGG-D model (from running its skew_normal_models.py)
    last = lines[-1].split("\t")
    assert last[0] == "d16-m15-s5.5-a-12"
    assert last[2] == "24 38 58 85 123 170 229 298 375 457 539 615 679 724 617"
    for line in lines[1:]:
        widths = [int(w) for w in line.split("\t")[2].split()]
        assert len(widths) == 15 and 0.95 * 5248 < sum(widths) <= 5248 and min(widths) >= 2
    assert "193 release variants of depth 16" in result.stderr


def test_list_variants_conv_only_family():
    result = _tfbdl("feature-amounts", "list-variants", "--vgg-depth", "16", "--family", "conv-only")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 223 and lines[0].startswith("d16-ref\t")
    assert "d16-conv-m6-s3-a0" in {line.split("\t")[0] for line in lines}
    for line in lines:
        widths = [int(w) for w in line.split("\t")[2].split()]
        assert len(widths) == 15 and sum(widths[:-2]) == 4224 and widths[-2:] == [512, 512]


def test_sweep_family_option_selects_the_variants():
    preset = fa_cli.resolve_preset("tiny", family="conv-only")
    assert [v.id.startswith("d10-conv-") for v in fa_cli.choose_variants(preset)] == [True] * 3
    assert all(v.family == "release" for v in fa_cli.choose_variants(fa_cli.PRESETS["tiny"]))
