"""Where the random-feature and convergence studies draw conv kernels from, and the draws.

Arms (:data:`~.presets.ARMS`): ``xavier`` (the fconv's own Xavier-normal kernels), ``dwp`` (kernel-VAE
decoder means at ``z ~ N(0, I)``, the release's ``--init_list vae vae``), ``filters`` (slices drawn at
random without replacement from a kernel bank, the release's ``--init_list filters filters``), each of
the last two from our fitted VAEs / bank (``--vae-run``) or the release's (``--release-dir``, arms
``dwp-release`` / ``filters-release``).

Our bank is the one the VAE run was trained on (its config's ``bank``); the release's banks are its
``conv7x7_train.npy`` and ``conv5x5_test.npy`` (its 5x5 train split is not in the snapshot).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from tfbdl.cli.deep_weight_prior.presets import KERNEL_SIZES
from tfbdl.cli.deep_weight_prior.rundirs import finished_stage, load_vaes, release_vae_folder
from tfbdl.errors import InvalidOptionError
from tfbdl.seeding import derive_seed

__all__ = ["RELEASE_BANK_FILES", "KernelSources", "draw_filters", "find_pipeline_vaes", "initialise_kernels",
           "kernel_sources", "load_release_bank"]

RELEASE_BANK_FILES = {7: "conv7x7_train.npy", 5: "conv5x5_test.npy"}


@dataclasses.dataclass
class KernelSources:
    """The kernel VAEs ``{k: KernelVAE}`` and banks ``{k: [n, k, k]}`` per origin (``ours``, ``release``);
    ``where`` records the folders for config.json."""

    vaes: dict
    banks: dict
    where: dict

    def arms(self) -> tuple[str, ...]:
        """The arms these sources allow, in :data:`ARMS` order."""
        arms = ["xavier"]
        if "ours" in self.vaes:
            arms[:0] = ["dwp"]
            arms.append("filters")
        if "release" in self.vaes:
            arms += ["dwp-release", "filters-release"]
        return tuple(a for a in ("dwp", "xavier", "filters", "dwp-release", "filters-release") if a in arms)


def load_release_bank(folder: pathlib.Path) -> dict:
    """``{7: [n, 7, 7], 5: [m, 5, 5]}`` float32 from the release's ``conv*.npy`` (``[n, 1, k, k]``)."""
    banks = {}
    for k, name in RELEASE_BANK_FILES.items():
        path = folder / name
        if not path.is_file():
            raise InvalidOptionError(f"--release-dir {folder}: {name} not found there; the folder must hold the deep "
                                     f"weight prior release's kernel banks {' and '.join(RELEASE_BANK_FILES.values())}")
        try:
            slices = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InvalidOptionError(f"--release-dir {folder}: cannot read {name} as a numpy array ({e})") from None
        if slices.ndim != 4 or slices.shape[1:] != (1, k, k) or not len(slices):
            raise InvalidOptionError(f"--release-dir {folder}: {name} should be [n, 1, {k}, {k}], got "
                                     f"{list(slices.shape)}")
        banks[k] = np.ascontiguousarray(slices[:, 0], dtype=np.float32)
    return banks


def find_pipeline_vaes(out) -> pathlib.Path | None:
    """The newest finished ``tfbdl dwp run`` directory under ``OUT/dwp/`` (what ``run-all`` made just
    before), or None."""
    root = pathlib.Path(out) / "dwp"
    finished = []
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        try:
            finished.append(finished_stage(folder / "vae", "vae", "--vae-run").path)
        except InvalidOptionError:
            continue
    return max(finished, key=lambda f: (f / "progress.json").stat().st_mtime).parent if finished else None


def _our_bank_file(vae_run) -> pathlib.Path:
    """The kernel bank our VAE run was trained on (its config's ``bank``, relative to a ``dwp run``)."""
    bank = pathlib.Path(vae_run.config.get("bank") or "")
    if not bank.is_absolute():
        bank = vae_run.path.parent / bank
    if not bank.is_file():
        raise InvalidOptionError(f"--vae-run {vae_run.path}: its kernel bank {bank} is gone; the filters arm needs it")
    return bank


def kernel_sources(vae_run, release_dir, out) -> KernelSources:
    """The VAEs and banks of ``--vae-run`` and/or ``--release-dir``; with neither, our VAEs of the newest
    finished ``OUT/dwp/`` pipeline run; a one-line error when there are none."""
    vaes, banks, where = {}, {}, {}
    if vae_run is None and release_dir is None:
        found = find_pipeline_vaes(out)
        if found is None:
            raise InvalidOptionError(f"no kernel VAEs: pass --vae-run (a finished `tfbdl dwp train-vae` or `tfbdl dwp "
                                     f"run`) or --release-dir, or run `tfbdl dwp run --out {out}` first")
        vae_run = str(found)
    run = folder = None
    if vae_run is not None:  # every input checked before TensorFlow is imported
        run = finished_stage(vae_run, "vae", "--vae-run")
        bank_file = _our_bank_file(run)
        where["vae_run"] = str(run.path.resolve())
    if release_dir is not None:
        folder = release_vae_folder(release_dir, "--release-dir")
        banks["release"] = load_release_bank(folder)
        where["release_dir"] = str(folder)
    if run is not None:
        from tfbdl.dwp.kernel_bank import load_kernel_bank

        vaes["ours"], banks["ours"] = load_vaes(run), load_kernel_bank(bank_file)[0]
    if folder is not None:
        vaes["release"] = load_vaes(folder)
    return KernelSources(vaes, banks, where)


def draw_filters(bank: np.ndarray, num: int, seed: int) -> np.ndarray:
    """``num`` slices ``[num, k, k]`` of ``bank [n, k, k]`` drawn at random, without replacement as the
    release's ``filters`` init (``np.random.permutation(len(filters))[:N]``) while the bank is large
    enough, with replacement beyond that."""
    rng = np.random.default_rng(seed)
    if num <= len(bank):
        index = rng.permutation(len(bank))[:num]
    else:
        index = rng.integers(0, len(bank), size=num)
    return bank[index]


def initialise_kernels(model, arm: str, sources: KernelSources, seed: int) -> None:
    """Set conv1's (7x7) and conv2's (5x5) kernels of an fconv for ``arm``; ``xavier`` keeps its own.
    Biases and the dense layer keep the fconv's initialisation."""
    from tfbdl.dwp.kernel_bank import kernel_from_slices

    if arm == "xavier":
        return
    method, _, origin = arm.partition("-")
    origin = origin or "ours"
    for i, (name, k) in enumerate(zip(("conv1", "conv2"), KERNEL_SIZES)):
        layer = model.get_layer(name)
        size, _, cin, cout = (int(d) for d in layer.kernel.shape)
        assert size == k, (name, size, k)
        if method == "dwp":
            slices = sources.vaes[origin][k].sample_kernels(cin * cout, derive_seed(seed, i), mean=True)
        else:
            slices = draw_filters(sources.banks[origin][k], cin * cout, derive_seed(seed, i))
        layer.kernel.assign(kernel_from_slices(slices, cin, cout))
