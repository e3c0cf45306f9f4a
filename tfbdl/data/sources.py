"""Data for a run at a given scale, with fallbacks and a record of what was used.

``paper`` scale loads (and downloads) the real dataset and never substitutes. ``tiny`` and
``smoke`` use the full files when present, else download them (giving up within seconds when
there is no network, or at once with ``TFBDL_OFFLINE=1``), else the subset embedded in the
package, else the closest available dataset, and say so in :attr:`LoadedData.provenance`,
which runs copy into their config and report.

A run then asks for a number of examples (:meth:`LoadedData.fit_count`, :meth:`LoadedData.subset`).
When a preset asks for more than the data hold, the run uses what exists and a note says so
("smoke asked for 5,000 mnist/train images; the 1,000 of the embedded subset were used"); a size
the user typed that cannot be met is an error naming what exists and how to get more.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import numpy as np

from tfbdl.data import files
from tfbdl.data.datasets import get_spec, is_available, is_downloadable, load_dataset
from tfbdl.data.subsets import seeded_subset
from tfbdl.errors import ChecksumError, DatasetNotFound, InvalidOptionError

__all__ = [
    "EMBEDDED",
    "LoadedData",
    "SCALES",
    "SUBSTITUTES",
    "add_note",
    "embedded_info",
    "embedded_path",
    "fit_holdout",
    "load_embedded",
    "load_for_run",
]

SCALES = ("tiny", "smoke", "paper")

# Datasets with a subset in tfbdl/data/embedded/<name>.npz (keys train_images, train_labels, ...).
EMBEDDED = ("fashion_mnist", "mnist_sample")

# Closest available stand-in when a paper's dataset is absent at tiny/smoke scale, and why.
SUBSTITUTES = {
    "mnist": ("mnist_sample", "the full MNIST files are absent; real MNIST digits of the MNIST sample stand in"),
    "cifar10": ("fashion_mnist", "CIFAR-10 is absent; Fashion-MNIST is the closest available 10-class "
                                 "object-image set (grey-scale 28x28, not colour 32x32)"),
    "cifar100": ("fashion_mnist", "CIFAR-100 is absent; Fashion-MNIST stands in (10 classes, not 100)"),
    "notmnist": ("fashion_mnist", "notMNIST is absent; Fashion-MNIST stands in as another 28x28 "
                                  "grey-scale domain that is not digits"),
}


@dataclasses.dataclass
class LoadedData:
    """Images uint8 [N, H, W, C], labels int64 [N], and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    provenance: dict

    @property
    def num_classes(self) -> int:
        return get_spec(self.provenance["dataset"]).num_classes

    def describe(self) -> str:
        """One line for reports: which data, from where, any substitution, any reduced size."""
        p = self.provenance
        text = f"{p['dataset']}/{p['split']} ({p['source']}, {len(self.labels)} examples)"
        if p["dataset"] != p["requested"]:
            text += f", standing in for {p['requested']}/{p['requested_split']}: {p['reason']}"
        if p.get("notes"):
            text += "; " + "; ".join(p["notes"])
        return text

    def note(self, text: str) -> None:
        """Record ``text`` in the provenance (once) and print it: the run's record of what it used."""
        add_note(self.provenance, text)

    def fit_count(self, asked: int | None, *, option: str | None = None, available: int | None = None,
                  what: str = "images") -> int:
        """How many examples to take when a run asks for ``asked`` (None: all of them).

        ``available`` is the size of the pool drawn from (default: every example). A preset size
        beyond it is reduced to it, with a note; a size the user typed (``option``, e.g.
        ``'--n-train'``) or any shortage at ``paper`` scale raises InvalidOptionError.
        """
        available = self.labels.size if available is None else int(available)
        if asked is None or asked <= available:
            return available if asked is None else int(asked)
        p = self.provenance
        if option is not None or p.get("scale") == "paper":
            how = (f"'tfbdl data fetch {p['requested']}'" if is_downloadable(p["requested"], _split(p))
                   else f"the {p['requested']} files")
            raise InvalidOptionError(
                f"{option + ' ' if option else ''}{asked:,} asks for more {what} than the {available:,} of "
                f"{self.describe()}; lower it, or get the full data with {how} (put the files in --data-dir "
                f"or ${files.DATA_DIR_ENV})")
        source = "full files" if p["source"] == "full" else p["source"]
        standing = f" of {p['dataset']}/{p['split']}" if p["dataset"] != p["requested"] else ""
        self.note(f"{p['scale']} asked for {asked:,} {p['requested']}/{p['requested_split']} {what}; "
                  f"the {available:,} of the {source}{standing} were used")
        return available

    def subset(self, asked: int | None, seed: int, *, option: str | None = None) -> np.ndarray:
        """Sorted seeded indices of ``asked`` examples (all when None), reduced with a note as in
        :meth:`fit_count` when the data hold fewer."""
        return seeded_subset(self.labels.size, self.fit_count(asked, option=option), seed)


def add_note(provenance: dict, text: str) -> None:
    """Append ``text`` to a provenance record's notes (once) and print it on stderr."""
    notes = provenance.setdefault("notes", [])
    if text not in notes:
        notes.append(text)
        import click

        click.echo(f"note: {text}", err=True)


def fit_holdout(provenance: dict, asked: int, pool: int, *, option: str | None = None) -> int:
    """How many of ``pool`` training examples to hold out when a run asks for ``asked``.

    At most half the pool may be held out: a preset's larger hold-out becomes a fifth of the
    pool (noted in ``provenance``); one the user typed (``option``) is an InvalidOptionError.
    """
    if asked <= pool // 2:
        return int(asked)
    if option is not None or provenance.get("scale") == "paper":
        raise InvalidOptionError(f"{option + ' ' if option else ''}{asked:,} would hold out more than half of the "
                                 f"{pool:,} training images; lower it to at most {pool // 2:,}")
    fitted = max(1, pool // 5)
    add_note(provenance, f"{provenance['scale']} asked to hold out {asked:,} of the {pool:,} training images; "
                         f"{fitted:,} (a fifth) were held out")
    return fitted


def _split(provenance: dict) -> str:
    requested = provenance["requested"]
    split = provenance["requested_split"]
    return split if split in get_spec(requested).splits else get_spec(requested).splits[0]


def embedded_path(name: str):
    """The packaged resource of a dataset's embedded subset."""
    return resources.files("tfbdl.data.embedded").joinpath(f"{name}.npz")


def load_embedded(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load the embedded subset of ``name`` ('train' or 'test')."""
    if name not in EMBEDDED:
        raise DatasetNotFound(f"no embedded subset of {name!r}; embedded ones: {', '.join(EMBEDDED)}")
    if split not in ("train", "test"):
        raise InvalidOptionError(f"embedded subsets have splits 'train' and 'test', not {split!r}")
    with embedded_path(name).open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        return archive[f"{split}_images"], archive[f"{split}_labels"].astype(np.int64)


def embedded_info(name: str) -> dict:
    """The build record stored with an embedded subset (source, seed, counts)."""
    with embedded_path(name).open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
        return json.loads(str(archive["info"]))


def load_for_run(name: str, split: str, scale: str, data_dir=None) -> LoadedData:
    """The data a run at ``scale`` should use for ``name``/``split`` (see the module docstring)."""
    if scale not in SCALES:
        raise InvalidOptionError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    get_spec(name)  # unknown names fail here, before any fallback
    record = {"requested": name, "requested_split": split, "dataset": name, "split": split, "reason": "",
              "scale": scale}
    notes: list[str] = []  # the loader's remarks, recorded in the provenance
    if scale == "paper" or is_available(name, split, data_dir):
        images, labels = load_dataset(name, split, data_dir, download=(scale == "paper"), notes=notes)
        return _with_notes(LoadedData(images, labels, {**record, "source": "full"}), notes)
    downloaded, why = _try_download(name, split, data_dir, notes)
    if downloaded is not None:
        return _with_notes(LoadedData(*downloaded, {**record, "source": "full (downloaded)"}), notes)
    if name in EMBEDDED:
        used_split = split if split in ("train", "test") else "train"  # 'all' -> the training subset
        images, labels = load_embedded(name, used_split)
        return LoadedData(images, labels, {**record, "split": used_split, "source": "embedded subset",
                                           "reason": "the full files are absent" + why})
    if name in SUBSTITUTES:
        stand_in, reason = SUBSTITUTES[name]
        stand_in_split = split if split in get_spec(stand_in).splits else "train"
        loaded = load_for_run(stand_in, stand_in_split, scale, data_dir)
        loaded.provenance.update(requested=name, requested_split=split, reason=reason + why)
        return loaded
    raise DatasetNotFound(f"{name}/{split} is not on this machine and has no stand-in; fetch it with "
                          f"'tfbdl data fetch {name}'")


def _with_notes(loaded: LoadedData, notes: list[str]) -> LoadedData:
    """``loaded`` with the loader's remarks (skipped files, ...) recorded in its provenance."""
    for text in notes:
        loaded.note(text)
    return loaded


def _try_download(name: str, split: str, data_dir, notes: list[str]) -> tuple[tuple | None, str]:
    """``((images, labels), '')`` when the full split downloads (short timeouts), else
    ``(None, why)`` with ``why`` to append to "the full files are absent" ('' without an address)."""
    if not is_downloadable(name, split):
        return None, ""
    if files.offline():
        return None, f" (downloads are off: {files.OFFLINE_ENV} is set)"
    try:
        return load_dataset(name, split, data_dir, download=True, timeout=files.FALLBACK_TIMEOUT, notes=notes), ""
    except files.DownloadFailed as error:
        return None, f" and could not be downloaded ({error.reason})"
    except ChecksumError as error:
        return None, f" and the download was refused ({error})"
