"""Run directories of the pipeline: a stage's sub-run, the finished stage given as a command's input
(``--source-run``, ``--bank``, ``--vae-run``, ``--release-vaes``), and networks' weights on disk.

A stage's input may be its own ``dwp-<stage>`` run or a ``dwp run`` directory holding the stage as
a sub-folder; anything else is refused with a one-line :class:`InvalidOptionError`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib

import numpy as np

from tfbdl.cli.deep_weight_prior.presets import COMMANDS, KERNEL_SIZES
from tfbdl.cli.options import check_hdf5
from tfbdl.errors import InvalidOptionError

__all__ = ["RELEASE_VAE_FILES", "bank_file", "finished_stage", "load_vaes", "load_weights", "read_json",
           "release_vae_folder", "save_weights", "stage_config", "stage_provenance", "stage_run", "vae_input"]

RELEASE_VAE_FILES = {7: "vae7x7.npz", 5: "vae5x5.npz"}


def stage_run(parent, stage: str, config: dict):
    """The resumable sub-run ``<parent run>/<stage>/`` of the pipeline."""
    from tfbdl.io import RunDir

    return RunDir.open(parent.path.parent, parent.path.name, stage, config)


def stage_config(stage: str, preset, *, scale: str, seed: int, data_dir=None, **inputs) -> dict:
    """A stage's config: its name, scale, seed, data folder, inputs and every preset field."""
    return {"stage": stage, "scale": scale, "seed": seed, "data_dir": data_dir, **inputs,
            **dataclasses.asdict(preset)}


def finished_stage(path, stage: str, option: str):
    """The finished ``stage`` run at ``path`` (a ``dwp-<stage>`` run or a ``dwp run`` directory)."""
    from tfbdl.io import RunDir

    folder = pathlib.Path(path)
    if (folder / stage / "config.json").is_file():
        folder = folder / stage
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InvalidOptionError(f"{option} {path} is not a run directory of `tfbdl dwp {COMMANDS[stage]}` "
                                 f"(no config.json); run that command first")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidOptionError(f"{option} {path}: cannot read {config_file} ({e}); rerun `tfbdl dwp "
                                 f"{COMMANDS[stage]}`") from None
    run = RunDir(folder, folder.parent.name, folder.name, config)
    if config.get("stage") != stage:
        raise InvalidOptionError(f"{option} {path} is a {config.get('stage') or 'different'} run, not a "
                                 f"`tfbdl dwp {COMMANDS[stage]}` run")
    if not run.is_complete:
        raise InvalidOptionError(f"{option} {path} is not finished; rerun `tfbdl dwp {COMMANDS[stage]}` to "
                                 "complete it")
    return run


def read_json(run, name: str):
    """The JSON file ``name`` of ``run``."""
    return json.loads(run.file(name).read_text(encoding="utf-8"))


def stage_provenance(run) -> list[dict]:
    """The data records of a finished stage run (its config.json's ``data``)."""
    return json.loads((run.path / "config.json").read_text(encoding="utf-8")).get("data", [])


def bank_file(path) -> pathlib.Path:
    """The kernel bank of a ``--bank`` value: an .h5 file or a run directory holding kernel_bank.h5."""
    candidate = pathlib.Path(path)
    if candidate.is_dir():
        stage = finished_stage(candidate, "kernels", "--bank")
        candidate = stage.path / "kernel_bank.h5"
    if not candidate.is_file():
        raise InvalidOptionError(f"--bank {path} is neither a kernel bank file nor a finished `tfbdl dwp "
                                 "collect-kernels` run")
    what = "a kernel bank (kernel_bank.h5) or the `tfbdl dwp collect-kernels` run that holds it"
    check_hdf5(candidate, "--bank", what)
    import h5py

    expected = importlib.import_module("tfbdl.dwp.kernel_bank").BANK_FORMAT
    with h5py.File(candidate, "r") as f:
        found = f.attrs.get("format")
    found = found.decode("utf-8") if isinstance(found, bytes) else found
    if found != expected:
        raise InvalidOptionError(f"--bank {path} is an HDF5 file but not a kernel bank (format {found!r}, expected "
                                 f"{expected!r}); give {what}")
    return candidate


def vae_input(vae_run, needed: bool, why: str):
    """The finished VAE run given by ``--vae-run`` (required when ``needed``)."""
    if vae_run is None:
        if needed:
            raise InvalidOptionError(f"{why} needs the kernel VAEs: pass --vae-run (a finished `tfbdl dwp "
                                     "train-vae` run)")
        return None
    return finished_stage(vae_run, "vae", "--vae-run")


def release_vae_folder(folder, option: str = "--release-vaes") -> pathlib.Path:
    """``--release-vaes`` (or ``option``): a folder with the release's ``vae7x7.npz`` and ``vae5x5.npz``."""
    path = pathlib.Path(folder)
    missing = [name for name in RELEASE_VAE_FILES.values() if not (path / name).is_file()]
    if missing:
        raise InvalidOptionError(f"{option} {folder}: {', '.join(missing)} not found there; the folder must "
                                 f"hold the deep weight prior release's {' and '.join(RELEASE_VAE_FILES.values())}")
    import zipfile

    not_npz = [name for name in RELEASE_VAE_FILES.values() if not zipfile.is_zipfile(path / name)]
    if not_npz:
        verb = "is" if len(not_npz) == 1 else "are"
        raise InvalidOptionError(f"{option} {folder}: {', '.join(not_npz)} {verb} not a numpy .npz archive; "
                                 "the folder must hold the deep weight prior release's kernel VAEs saved with "
                                 "numpy.savez")
    return path.resolve()


def load_vaes(source) -> dict:
    """Kernel size -> KernelVAE, from a finished VAE stage (a RunDir) or from a folder holding the
    release's ``vae7x7.npz`` and ``vae5x5.npz`` (a ``pathlib.Path``)."""
    from tfbdl.dwp.vae import KernelVAE

    if isinstance(source, pathlib.Path):
        return {k: KernelVAE.from_release(source / RELEASE_VAE_FILES[k]) for k in KERNEL_SIZES}
    return {k: KernelVAE.load(source.path / f"kernel_vae_{k}x{k}.h5") for k in KERNEL_SIZES}


def save_weights(model, path, attrs: dict) -> None:
    """Every layer's weights as ``<layer>/<index>`` datasets in one HDF5 file (atomic, no pickles)."""
    from tfbdl.io import save_h5

    arrays = {f"{layer.name}/{i}": np.asarray(w.numpy()) for layer in model.layers
              for i, w in enumerate(layer.weights)}
    save_h5(path, arrays, attrs)


def load_weights(model, path) -> None:
    """Set ``model``'s weights from :func:`save_weights`'s file."""
    from tfbdl.errors import DataFormatError
    from tfbdl.io import load_h5

    arrays, _ = load_h5(path)
    for layer in model.layers:
        for i, w in enumerate(layer.weights):
            value = arrays.get(f"{layer.name}/{i}")
            if value is None or tuple(value.shape) != tuple(w.shape):
                raise DataFormatError(f"{path} does not hold {layer.name}'s weight {i} of shape {tuple(w.shape)}; "
                                      "retrain the source networks")
            w.assign(value)
