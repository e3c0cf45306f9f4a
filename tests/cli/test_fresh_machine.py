"""A fresh machine: no dataset folder, no network. Every registered experiment's tiny and smoke
presets resolve against the embedded data alone (sizes only, nothing trained), a preset that asks
for more than exists says what it used, and a size the user typed that cannot be met is one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfbdl.cli.registry import EXPERIMENTS
from tfbdl.cli.run_all import data_used_section, run_data_notes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def offline_fresh_machine(isolated_data, monkeypatch):
    monkeypatch.setenv("TFBDL_OFFLINE", "1")
    return isolated_data


@pytest.mark.parametrize("scale", ["tiny", "smoke"])
@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_resolves_on_the_embedded_data_alone(offline_fresh_machine, experiment, scale):
    records = experiment.resolve_data(scale)
    if experiment.data is None:
        assert experiment.name == "bdl-regression-1d" and records == []  # generated data
        return
    assert records
    for record in records:
        assert record["source"] == "embedded subset" and record["scale"] == scale
        assert record["reason"]  # why the full files were not used
        for note in record.get("notes", ()):
            assert note.startswith(f"{scale} asked ")


def test_a_reduced_preset_is_stated_in_the_provenance(offline_fresh_machine):
    (convnet,) = [e for e in EXPERIMENTS if e.name == "convnet-gp"]
    train, test = convnet.resolve_data("smoke")
    assert train["notes"] == ["smoke asked for 5,000 mnist/train images; the 1,000 of the embedded subset of "
                              "mnist_sample/train were used"]
    assert "notes" not in test  # the preset asks for every test image
    (swag,) = [e for e in EXPERIMENTS if e.name == "bdl-swag"]
    train, _ = swag.resolve_data("smoke")
    assert train["notes"][1] == "smoke asked to hold out 1,000 of the 1,000 training images; 200 (a fifth) were held out"


def test_with_the_full_files_nothing_is_reduced(shared_data_dir, monkeypatch):
    monkeypatch.setenv("TFBDL_OFFLINE", "1")
    (convnet,) = [e for e in EXPERIMENTS if e.name == "convnet-gp"]
    train, test = convnet.resolve_data("smoke", data_dir=str(shared_data_dir))
    assert (train["dataset"], train["source"], test["source"]) == ("mnist", "full", "full")
    assert "notes" not in train and "notes" not in test


def test_report_lists_the_data_used_and_each_runs_notes(tmp_path):
    run = tmp_path / "convnet-gp" / "smoke-abc"
    run.mkdir(parents=True)
    record = {"requested": "mnist", "requested_split": "train", "dataset": "mnist_sample", "split": "train",
              "source": "embedded subset", "reason": "the full MNIST files are absent", "scale": "smoke",
              "notes": ["smoke asked for 5,000 mnist/train images; the 1,000 of the embedded subset were used"]}
    (run / "config.json").write_text(json.dumps({"data": [record, {**record, "notes": []}]}))
    assert run_data_notes(run) == record["notes"]
    section = "\n".join(data_used_section([(None, 0, [run])]))
    assert "| mnist/train | mnist_sample/train | embedded subset | the full MNIST files are absent |" in section


def _offline_tfbdl(tmp_path, *args):
    env = {**os.environ, "TFBDL_OFFLINE": "1", "TFBDL_DATA_DIR": "", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "tfbdl.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


@pytest.mark.parametrize("args, needle", [
    (["convnet-gp", "save-kernels", "--scale", "tiny", "--n-train", "5000"],
     "--n-train 5,000 asks for more images than the 1,000 of mnist_sample/train"),
    (["bdl", "make-cifar-c", "--scale", "tiny", "--n-images", "2000"],
     "--n-images 2,000 asks for more images than the 500 of fashion_mnist/test"),
    (["bdl", "swag", "--scale", "tiny", "--val-size", "900"],
     "--val-size 900 would hold out more than half of the 1,000 training images"),
    (["bdl", "rethinking-generalization", "--scale", "tiny", "--n-test", "2000"],
     "--n-test 2,000 asks for more images than the 500 of fashion_mnist/test"),
    (["dwp", "train-source", "--scale", "tiny", "--n-train", "5000"],
     "--n-train 5,000 asks for more images than the 1,000 of fashion_mnist/train"),
    (["feature-amounts", "sweep", "--scale", "tiny", "--n-train", "5000"],
     "--n-train 5,000 asks for more images than the 1,000 of fashion_mnist/train"),
    (["linearized", "compute-ntk", "--scale", "tiny", "--n-train", "5000"],
     "--n-train 5,000 asks for more images than the 1,000 of fashion_mnist/train"),
])
def test_a_typed_size_that_cannot_be_met_is_one_line_naming_what_exists(tmp_path, args, needle):
    result = _offline_tfbdl(tmp_path, *args, "--out", str(tmp_path / "runs"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert "tfbdl data fetch" in errors[0] or "lower it" in errors[0]
    assert "Traceback" not in result.stderr
