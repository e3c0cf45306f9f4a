"""A bad-input sweep over every tfbdl command and option.

Every case must exit non-zero with one ``Error: ...`` line (usage lines before it are fine) that
names the option and what it allows, raise no Python exception out of the command (no traceback),
and leave no run folder marked complete. Cases run in-process (click.testing.CliRunner) and must
fail before TensorFlow, Keras or GPflow is imported: while this file runs alone those imports are
refused, so a case that gets as far as building a model fails loudly instead of training.

Two lists, both here so they grow with the CLI:

- ``GENERATED``: built from the CLI itself: for every option of every command, a wrong type, each
  side of its range, nan and inf for floats, an unknown choice, a missing path, a file where a folder
  is expected and a folder where a file is. A new option is swept the day it is added.
- ``CASES``: what the types cannot say: free-text options (--sizes, --widths, --shard, ...), files of
  the wrong format, runs that are not runs, corrupt or empty datasets, unwritable output, options
  that contradict each other.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from tfbdl.cli.main import cli
from tfbdl.cli.options import FiniteFloatRange

HEAVY = ("tensorflow", "keras", "gpflow", "tensorflow_probability")


# --------------------------------------------------------------------------- the inputs the cases refer to


def _inputs(root: Path) -> dict[str, str]:
    """Files and folders the cases name as {key} in their arguments."""
    import h5py

    (root / "notes.txt").write_text("not what any option expects\n")
    (root / "empty").mkdir()
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "stray.txt").write_text("x")
    # A data folder whose dataset files are all empty (zero bytes).
    data = root / "empty-data"
    for folder, names in {"mnist": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
                          "cifar10": ("cifar-10-python.tar.gz",), "notmnist": ("notMNIST_small.tar.gz",)}.items():
        (data / folder).mkdir(parents=True)
        for name in names:
            (data / folder / name).write_bytes(b"")
    (data / "fashion_mnist").symlink_to(data / "mnist")
    (data / "mnist_10k.npz").write_bytes(b"")
    # A label file of the right format with no labels.
    np.savez(root / "no-labels.npz", labels=np.zeros(0, np.int64), corrupted=np.zeros(0, bool), meta="{}")
    # A release-VAE folder whose files are text.
    (root / "text-vaes").mkdir()
    for name in ("vae7x7.npz", "vae5x5.npz"):
        (root / "text-vaes" / name).write_text("not an npz archive")
    # An HDF5 file that is neither a kernel file nor a kernel bank, with save-kernels' labels beside it.
    (root / "h5-run").mkdir()
    with h5py.File(root / "h5-run" / "kernels.h5", "w") as f:
        f["x"] = np.zeros(3)
    np.savez(root / "h5-run" / "data.npz", y_train=np.zeros(3), y_test=np.zeros(3))
    # A run folder of shard files that are text.
    (root / "text-shards").mkdir()
    (root / "text-shards" / "kernels.shard-0-of-2.h5").write_text("not HDF5")
    (root / "read-only").mkdir()
    (root / "read-only").chmod(0o555)
    return {"out": str(root / "out"), "txt": str(root / "notes.txt"), "empty": str(root / "empty"),
            "notrun": str(root / "not-a-run"), "missing": str(root / "does-not-exist"), "emptydata": str(data),
            "nolabels": str(root / "no-labels.npz"), "textvaes": str(root / "text-vaes"),
            "h5": str(root / "h5-run" / "kernels.h5"), "textshards": str(root / "text-shards"),
            "readonly": str(root / "read-only" / "out"), "proc": "/proc/tfbdl-bad-input/out"}


# --------------------------------------------------------------------------- the cases written by hand

# (command line with {input} names, fragments the Error line must hold). Each fragment list names the
# option (or, for a corrupt data file, the file) and what it allows.
CASES = [
    # wrong types, out-of-range numbers, nan / inf (the generated sweep has one of each for every option)
    ("data check --seed abc", ["'--seed'", "'abc' is not a valid integer"]),
    ("data check --seed -1", ["'--seed'", "-1 is not in the range x>=0"]),
    ("linearized compute-ntk --n-train x", ["'--n-train'", "'x' is not a valid integer"]),
    ("linearized compute-ntk --n-train 0", ["'--n-train'", "not in the range x>=2"]),
    ("dwp train-source --lr nan", ["'--lr'", "must be a finite number in the range x>0, got 'nan'"]),
    ("dwp train-source --lr inf", ["'--lr'", "must be a finite number", "got 'inf'"]),
    ("dwp train-source --lr 1e400", ["'--lr'", "must be a finite number", "got '1e400'"]),
    ("dwp train-source --lr -inf", ["'--lr'", "must be a finite number", "got '-inf'"]),
    ("bdl swag --label-corruption 1.5", ["'--label-corruption'", "not in the range 0<=x<=1"]),
    ("bdl swag --label-corruption nan", ["'--label-corruption'", "must be a finite number"]),
    ("dwp train-bnn --log-sigma2-init nan", ["'--log-sigma2-init'", "must be a finite number, got 'nan'"]),
    ("dwp train-bnn --log-sigma2-init abc", ["'--log-sigma2-init'", "'abc' is not a valid float"]),
    ("convnet-gp classify --kernels {h5} --val-fraction nan", ["'--val-fraction'", "must be a finite number"]),
    ("feature-amounts list-variants --width-scale nan", ["'--width-scale'", "must be a finite number"]),
    ("dwp train-source --widths 0 5", ["'--widths'", "0 is not in the range x>=1"]),
    ("linearized train-cifar2 --pair 3 3", ["--pair", "two different classes in 0..9"]),
    ("linearized train-cifar2 --pair 3 10", ["'--pair'", "10 is not in the range 0<=x<=9"]),
    # sizes typed as plain integers, checked by the command before anything is imported
    ("convnet-gp save-kernels --n-train 0", ["--n-train must be >= 1"]),
    ("convnet-gp finite-width --widths abc", ["'--widths'", "must be comma-separated channel counts >= 1"]),
    ("convnet-gp finite-width --draws 6 --replicates 4", ["--draws 6 must be a multiple of --replicates 4"]),
    ("convnet-gp save-kernels --n-train -5", ["--n-train must be >= 1"]),
    ("convnet-gp save-kernels --n-test -1", ["--n-test must be >= 1"]),
    ("convnet-gp run --block 0", ["--block must be >= 1"]),
    ("convnet-gp save-kernels --n-test x", ["'--n-test'", "'x' is not a valid integer"]),
    # unknown choices, options and datasets
    ("data check --scale huge", ["'--scale'", "'huge' is not one of 'tiny', 'smoke', 'paper'"]),
    ("run-all --only nonsense", ["'--only'", "'nonsense' is not one of"]),
    ("dwp train-bnn --prior bogus", ["'--prior'", "is not one of 'normal', 'log-uniform', 'dwp'"]),
    ("data check --no-such-option 1", ["No such option '--no-such-option'"]),
    ("data fetch cifar11 --data-dir {empty}", ["unknown dataset 'cifar11'", "choose one of: mnist"]),
    ("convnet-gp save-kernels --dataset nonsense", ["'--dataset'", "unknown dataset 'nonsense'; choose one of"]),
    ("convnet-gp search --dataset nonsense", ["'--dataset'", "unknown dataset"]),
    ("convnet-gp learning-curve --dataset nonsense", ["'--dataset'", "unknown dataset"]),
    ("bdl make-cifar-c --dataset nonsense", ["'--dataset'", "unknown dataset"]),
    ("bdl prior-correlations --dataset nonsense", ["'--dataset'", "unknown dataset"]),
    ("bdl rethinking-generalization --dataset nonsense", ["'--dataset'", "unknown dataset"]),
    ("convnet-gp run --dataset ''", ["'--dataset'", "unknown dataset ''"]),
    ("convnet-gp classify", ["Missing option '--kernels'"]),
    ("feature-amounts train", ["Missing option '--variant'"]),
    # free-text options
    ("convnet-gp save-kernels --shard 3/2", ["--shard '3/2'", "I must be in 0..1"]),
    ("convnet-gp save-kernels --shard abc", ["--shard must look like I/N"]),
    ("bdl multiswag --shard 2/2", ["--shard '2/2'", "in 0..1"]),
    ("feature-amounts sweep --shard 1/0", ["--shard '1/0'", "at least 1"]),
    ("convnet-gp learning-curve --sizes abc", ["--sizes must be comma-separated integers"]),
    ("convnet-gp learning-curve --sizes 0,-5", ["--sizes needs at least one size >= 2"]),
    ("convnet-gp learning-curve --sizes ''", ["--sizes"]),
    ("dwp train-bnn --sizes 50,zero", ["--sizes must be comma-separated whole numbers"]),
    ("dwp train-bnn --sizes 0,10", ["--sizes must list numbers of training examples >= 1"]),
    ("dwp run --sizes -3", ["--sizes must list numbers of training examples >= 1"]),
    ("bdl regression-1d --hidden 0,10", ["--hidden must be comma-separated positive layer widths"]),
    ("bdl regression-1d --hidden ''", ["--hidden must be comma-separated positive layer widths"]),
    ("bdl rethinking-generalization --fractions 1.5", ["--fractions must lie in [0, 1]"]),
    ("bdl rethinking-generalization --fractions nan", ["--fractions must lie in [0, 1]"]),
    ("bdl rethinking-generalization --fractions abc", ["--fractions must be comma-separated numbers in [0, 1]"]),
    ("bdl rethinking-generalization --classes 0,0", ["--classes must be two distinct"]),
    ("bdl rethinking-generalization --classes a,b", ["--classes must be two class indices"]),
    ("bdl rethinking-generalization --classes 0,11 --scale tiny", ["--classes 0,11", "classes 0..9"]),
    ("linearized compute-ntk --widths abc", ["--widths 'abc' must be positive integers"]),
    ("linearized compute-ntk --widths 6,16", ["--widths", "lenet needs 4 widths"]),
    ("linearized compute-nads --widths 0,1,2,3", ["--widths '0,1,2,3' must be positive integers"]),
    ("linearized train-cifar2 --widths ''", ["--widths", "must be positive integers"]),
    ("feature-amounts list-variants --vgg-depth 11", ["--vgg-depth must be 7 + 3k"]),
    ("feature-amounts sweep --vgg-depth 16 --vgg-depth 15", ["--vgg-depth must be 7 + 3k", "got 15"]),
    ("feature-amounts train --variant bogus", ["'--variant'", "'bogus' is not a variant id"]),
    ("feature-amounts train --variant d16-m999-s1-a0", ["'--variant'", "is not one of the 193 release variants"]),
    ("feature-amounts train --variant d16-ref --variant d16-ref", ["'--variant'", "repeats an id"]),
    # indices past what the data or the network hold
    ("linearized train-ntk --label-idx 100000 --scale tiny", ["--label-idx 100000 is out of range"]),
    ("linearized pretrained-ntk-comparison --label-idx 100000 --scale tiny", ["--label-idx 100000 is out of range"]),
    ("linearized train-nads --nad-idx 100000 --scale tiny", ["--nad-idx 100000 is out of range"]),
    ("linearized run --nad-idx 100000 --scale tiny", ["--nad-idx 100000 is out of range"]),
    ("linearized compute-nads --side 4", ["--side 4 is too small", "at least 16"]),
    # options that contradict each other
    ("bdl swag --swa-start 5 --epochs 3", ["--swa-start 5 leaves no epoch to collect"]),
    ("bdl swag --label-arr {nolabels} --label-corruption 0.2", ["either --label-arr or --label-corruption"]),
    ("bdl prior-correlations --perturb-per-class 9 --per-class 3", ["--perturb-per-class 9 is more than"]),
    ("bdl rethinking-generalization --n-gp 100 --n-train 20 --scale tiny", ["--n-gp 100 is more than the 20"]),
    ("dwp train-bnn --release-vaes {empty} --vae-run {empty}", ["either --vae-run or --release-vaes"]),
    ("dwp train-bnn --prior dwp", ["--prior dwp / --init dwp needs the kernel VAEs: pass --vae-run"]),
    ("dwp random-features --scales 1/3", ["--scales must be comma-separated width scales from 1/16"]),
    ("dwp random-features --out {out}", ["no kernel VAEs: pass --vae-run", "or --release-dir"]),
    ("dwp convergence --out {out}", ["no kernel VAEs: pass --vae-run", "or --release-dir"]),
    # missing files and folders
    ("convnet-gp classify --kernels {missing}", ["'--kernels'", "does not exist"]),
    ("convnet-gp merge-kernels {missing}", ["'RUN_DIR'", "does not exist"]),
    ("convnet-gp merge-kernels {empty}", ["no shard files kernels.shard-*-of-*.h5"]),
    ("bdl swag --label-arr {missing}", ["'--label-arr'", "does not exist"]),
    ("bdl multiswag --texture-dir {missing}", ["'--texture-dir'", "does not exist"]),
    ("bdl make-cifar-c --texture-dir {missing}", ["'--texture-dir'", "does not exist"]),
    ("bdl prior-correlations --texture-dir {missing}", ["'--texture-dir'", "does not exist"]),
    ("dwp collect-kernels --source-run {missing}", ["--source-run", "not a run directory of `tfbdl dwp train-source`"]),
    ("dwp train-vae --bank {missing}", ["'--bank'", "does not exist"]),
    ("dwp train-bnn --vae-run {missing}", ["--vae-run", "is not a run directory of `tfbdl dwp train-vae`"]),
    ("dwp train-bnn --release-vaes {missing}", ["--release-vaes", "vae7x7.npz, vae5x5.npz not found"]),
    ("dwp dwp-init --vae-run {missing}", ["--vae-run", "is not a run directory of `tfbdl dwp train-vae`"]),
    ("dwp random-features --vae-run {missing}", ["--vae-run", "is not a run directory of `tfbdl dwp train-vae`"]),
    ("dwp convergence --release-dir {missing}", ["--release-dir", "vae7x7.npz, vae5x5.npz not found"]),
    ("linearized train-ntk --ntk-run {missing}", ["'--ntk-run'", "does not exist"]),
    ("linearized train-nads --nads-run {missing}", ["'--nads-run'", "does not exist"]),
    ("linearized pretrained-ntk-comparison --ntk-run {missing}", ["'--ntk-run'", "does not exist"]),
    # folders that are not the runs they should be
    ("dwp collect-kernels --source-run {notrun}", ["--source-run", "is not a run directory"]),
    ("dwp train-vae --bank {notrun}", ["--bank", "is not a run directory of `tfbdl dwp collect-kernels`"]),
    ("dwp train-bnn --vae-run {empty}", ["--vae-run", "is not a run directory"]),
    ("dwp train-bnn --release-vaes {notrun}", ["--release-vaes", "not found there"]),
    ("linearized train-ntk --ntk-run {notrun}", ["--ntk-run", "is not a finished `tfbdl linearized compute-ntk` run"]),
    ("linearized train-nads --nads-run {empty}", ["--nads-run", "not a finished `tfbdl linearized compute-nads`"]),
    # files of the wrong format
    ("convnet-gp classify --kernels {txt}", ["--kernels", "is not an HDF5 file"]),
    ("convnet-gp classify --kernels {h5}", ["--kernels", "is not a tfbdl kernel file"]),
    ("convnet-gp merge-kernels {textshards}", ["RUN_DIR", "is not an HDF5 file"]),
    ("dwp train-vae --bank {txt}", ["--bank", "is not an HDF5 file"]),
    ("dwp train-vae --bank {h5}", ["--bank", "not a kernel bank"]),
    ("dwp train-bnn --release-vaes {textvaes}", ["--release-vaes", "not a numpy .npz archive"]),
    ("dwp random-features --release-dir {textvaes}", ["--release-dir", "not a numpy .npz archive"]),
    ("bdl swag --label-arr {txt} --scale tiny", ["--label-arr", "is not a label file written by save_labels"]),
    # a file where a folder is expected, and the reverse
    ("data check --out {txt}/x", ["'--out'", "is a file, not a folder"]),
    ("run-all --out {txt}/x --only data-check", ["'--out'", "is a file, not a folder"]),
    ("convnet-gp save-kernels --out {txt}/x", ["'--out'", "is a file, not a folder"]),
    ("feature-amounts sweep --out {txt}/x", ["'--out'", "is a file, not a folder"]),
    ("data check --data-dir {txt}", ["'--data-dir'", "is a file"]),
    ("data info --data-dir {txt}/x", ["'--data-dir'", "is a file, not a folder"]),
    ("bdl swag --data-dir {txt}/x", ["'--data-dir'", "is a file, not a folder"]),
    ("dwp train-bnn --vae-run {txt}", ["'--vae-run'", "is a file"]),
    ("convnet-gp classify --kernels {empty}", ["'--kernels'", "is a directory"]),
    ("bdl swag --label-arr {empty}", ["'--label-arr'", "is a directory"]),
    # output that cannot be written
    ("data check --out {proc}", ["'--out'", "is not writable"]),
    ("bdl swag --out {proc}", ["'--out'", "is not writable"]),
    ("run-all --out {proc}", ["'--out'", "is not writable"]),
    pytest.param("linearized compute-ntk --out {readonly}", ["'--out'", "is not writable"],
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")),
    # empty and corrupt datasets
    ("data check --scale tiny --data-dir {emptydata}", ["train-images-idx3-ubyte.gz does not match the official"]),
    ("bdl swag --scale tiny --data-dir {emptydata}", ["train-images-idx3-ubyte.gz does not match the official"]),
    ("convnet-gp run --scale tiny --data-dir {emptydata}", ["train-images-idx3-ubyte.gz does not match the official"]),
    ("bdl swag --scale tiny --label-arr {nolabels}", ["--label-arr holds 0 labels"]),
]


def _line(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


def _case_id(case) -> str:
    return _line(case).replace(" ", "_")[:80]


def _split(line: str, inputs: dict[str, str]) -> list[str]:
    import shlex

    return [word.format(**inputs) for word in shlex.split(line)]


# --------------------------------------------------------------------------- the cases generated from the CLI


def _commands(group: click.Group = cli, path=()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _bad_values(param: click.Parameter) -> list[tuple[str, str]]:
    """(bad value, fragment of click's message) for one parameter, from its type."""
    t = param.type
    if isinstance(t, click.IntRange):
        out = [("abc", "'abc' is not a valid integer")]
        if t.min is not None:
            out.append((str(t.min if t.min_open else t.min - 1), "is not in the range"))
        if t.max is not None:
            out.append((str(t.max if t.max_open else t.max + 1), "is not in the range"))
        return out
    if isinstance(t, click.FloatRange):
        out = [("abc", "'abc' is not a valid float"), ("nan", "must be a finite number"),
               ("inf", "must be a finite number")]
        if t.min is not None:
            out.append((str(t.min if t.min_open else t.min - 1), "is not in the range"))
        if t.max is not None:
            out.append((str(t.max if t.max_open else t.max + 1), "is not in the range"))
        return out
    if t is click.INT:
        return [("abc", "'abc' is not a valid integer")]
    if isinstance(t, click.Choice):
        return [("no-such-choice", "'no-such-choice' is not one of")]
    if isinstance(t, click.Path):
        out = []
        if t.exists:
            out.append(("{missing}", "does not exist"))
        if not t.file_okay:
            out.append(("{txt}", "is a file"))
        if not t.dir_okay:
            out.append(("{empty}", "is a directory"))
        return out
    return []  # free text and flags: see CASES


FILLER = {("data", "fetch"): ["mnist"], ("convnet-gp", "merge-kernels"): ["{empty}"]}


def _generated():
    cases = []
    for path, command in _commands():
        names = {p.name for p in command.params}
        for param in command.params:
            if getattr(param, "is_flag", False) or param.type is click.BOOL:
                continue
            label = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
            for value, fragment in _bad_values(param):
                words = [value] * param.nargs
                line = [*path, *([label] if isinstance(param, click.Option) else []), *words]
                if "out" in names and label != "--out":
                    line += ["--out", "{out}"]
                if isinstance(param, click.Option):
                    line += FILLER.get(path, [])  # required arguments, after the bad option so it fails first
                cases.append(pytest.param(line, [f"'{label}'", fragment], id=" ".join(line)))
    return cases


GENERATED = _generated()


# --------------------------------------------------------------------------- the checks


class _RefuseHeavyImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in HEAVY:
            raise ImportError(f"a bad-input case reached `import {name}`: the error must come before it")
        return None


@pytest.fixture(scope="module")
def shared_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    values = _inputs(root)
    yield root, values
    (root / "read-only").chmod(0o755)


@pytest.fixture
def inputs(shared_inputs, tmp_path, monkeypatch):
    """The inputs, with --out in this case's own folder; heavy imports refused while the case runs (when
    the whole suite runs and they are imported already, that changes nothing)."""
    root, values = shared_inputs
    monkeypatch.chdir(tmp_path)  # the default --out (runs) lands here, never in the repository
    monkeypatch.setenv("TFBDL_OFFLINE", "1")
    finder = _RefuseHeavyImports()
    sys.meta_path.insert(0, finder)
    yield {**values, "out": str(tmp_path / "out")}
    sys.meta_path.remove(finder)
    _assert_nothing_complete(root)


def _assert_nothing_complete(root: Path) -> None:
    complete = []
    for progress in root.rglob("progress.json"):
        if "__complete__" in json.loads(progress.read_text(encoding="utf-8")):
            complete.append(progress.parent)
    assert not complete, f"a failed command left a run marked complete: {complete}"


def _check(args: list[str], fragments: list[str], root: Path, *, exit_code=None) -> None:
    result = CliRunner().invoke(cli, args)
    shown = f"tfbdl {' '.join(args)}\n{result.output}"
    assert result.exit_code != 0, shown
    if exit_code is not None:
        assert result.exit_code == exit_code, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}\nuncaught {type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in result.output, shown
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("Error")]
    assert len(errors) == 1 and errors[0] == len(lines) - 1, f"not one final Error line:\n{shown}"
    for fragment in fragments:
        assert fragment in lines[-1], f"{fragment!r} not in the Error line:\n{shown}"
    _assert_nothing_complete(root)


@pytest.mark.parametrize("line, fragments", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_clear_line(line, fragments, inputs, tmp_path):
    args = _split(line, inputs)
    command = cli
    for word in args:
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
    if "--out" not in args and any(p.name == "out" for p in command.params):
        args += ["--out", inputs["out"]]
    _check(args, fragments, tmp_path)


@pytest.mark.parametrize("line, fragments", GENERATED)
def test_every_option_refuses_values_of_the_wrong_type_or_range(line, fragments, inputs, tmp_path):
    # Values of the wrong type or range are usage errors (exit 2): nothing of the command ran.
    _check([word.format(**inputs) for word in line], fragments, tmp_path, exit_code=2)


def test_the_sweep_covers_every_command_and_every_float_option_is_finite():
    lines = [tuple(case.values[0]) for case in GENERATED] + [tuple(_line(c).split()) for c in CASES]
    commands = dict(_commands())
    missing = [" ".join(path) for path in commands if not any(line[:len(path)] == path for line in lines)]
    assert not missing, f"commands without a bad-input case: {missing}"
    plain = [f"{' '.join(path)} {p.opts[0]}" for path, command in commands.items() for p in command.params
             if isinstance(p.type, (click.types.FloatParamType, click.FloatRange))
             and not isinstance(p.type, FiniteFloatRange)]
    assert not plain, f"float options that take nan / inf (use tfbdl.cli.options.FiniteFloatRange): {plain}"
