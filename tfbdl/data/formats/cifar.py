"""The CIFAR-10/100 "python version" archives: tar.gz of pickled batch dictionaries.

A batch is a pickled dict with bytes keys: ``b"data"`` a uint8 array [N, 3072] (1024 red,
then green, then blue values, each row-major 32x32) and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` / ``b"coarse_labels"`` (CIFAR-100). Pickles can run arbitrary code, so they
are read with :class:`BatchUnpickler`, which admits only the numpy reconstruction functions the
format needs.
"""

import io
import pickle
import tarfile

import numpy as np

from tfbdl.errors import DataFormatError, UnsafePickleError

__all__ = [
    "BatchUnpickler",
    "batch_to_arrays",
    "load_batch_pickle",
    "parse_cifar_archive",
    "read_tar_members",
]

# (module, name) pairs a CIFAR batch pickle may reference: how numpy arrays are pickled.
_ALLOWED_GLOBALS = frozenset(
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
) | {("numpy", "ndarray"), ("numpy", "dtype")}


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside the numpy array machinery."""

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refused to load {module}.{name} from a CIFAR batch: the format never needs it, "
            "so the file is not an official CIFAR batch (delete it and download it again)"
        )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def load_batch_pickle(data: bytes, source: str = "CIFAR batch") -> dict:
    """Unpickle one batch safely and return it with ``str`` keys.

    numpy checks each array's bytes against the shape and dtype the pickle announces before it
    builds the array; any mismatch (or an announced size beyond memory) is a DataFormatError.
    """
    try:
        batch = BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError:
        raise
    except MemoryError:
        raise DataFormatError(f"{source}: the pickle announces more data than the file holds or memory allows; "
                              "the file is corrupt (delete it and download it again)") from None
    except Exception as error:  # any decoding failure means a corrupt file
        raise DataFormatError(f"{source}: not a readable pickle ({_one_line(error)}); the file is corrupt "
                              "(delete it and download it again)") from error
    if not isinstance(batch, dict):
        raise DataFormatError(f"{source}: expected a dict, found {type(batch).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def batch_to_arrays(batch: dict, label_key: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Turn a batch dict into (images uint8 [N, 32, 32, 3], labels int64 [N]).

    Raises DataFormatError unless ``data`` is a uint8 array [N, 3072] with N >= 1 and the labels
    are N integers.
    """
    if "data" not in batch or label_key not in batch:
        raise DataFormatError(f"{source}: missing 'data' or '{label_key}' entry")
    data = batch["data"]
    if not isinstance(data, np.ndarray):
        raise DataFormatError(f"{source}: 'data' must be a uint8 array [N, 3072], found {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] == 0:
        raise DataFormatError(f"{source}: data must be uint8 [N, 3072] with N >= 1, found {data.dtype} {data.shape}")
    raw_labels = batch[label_key]
    if not isinstance(raw_labels, (list, tuple, np.ndarray)):
        raise DataFormatError(f"{source}: '{label_key}' must be a list of integers, found {type(raw_labels).__name__}")
    try:
        labels = np.asarray(raw_labels)
        if labels.size and labels.dtype.kind not in "iu":
            raise TypeError(f"{labels.dtype} values")
        labels = labels.astype(np.int64)
    except (TypeError, ValueError, OverflowError) as error:
        raise DataFormatError(f"{source}: '{label_key}' must be integers ({_one_line(error)})") from None
    if labels.shape != (data.shape[0],):
        found = f"{labels.shape[0]} labels" if labels.ndim == 1 else f"labels of shape {labels.shape}"
        raise DataFormatError(f"{source}: {data.shape[0]} images but {found}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_tar_members(archive: bytes, names: list[str], source: str) -> dict[str, bytes]:
    """Read the named members (paths inside the archive) from uncompressed tar bytes."""
    found = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for name in names:
                try:
                    member = tar.getmember(name)
                except KeyError:
                    raise DataFormatError(f"{source}: the archive has no member {name!r}") from None
                found[name] = tar.extractfile(member).read()
    except tarfile.TarError as error:
        raise DataFormatError(f"{source}: not a readable tar archive ({error})") from error
    return found


def parse_cifar_archive(archive: bytes, batch_names: list[str], label_key: str, source: str):
    """Parse the named batches of an uncompressed CIFAR tar and concatenate them in order."""
    members = read_tar_members(archive, batch_names, source)
    parts = [batch_to_arrays(load_batch_pickle(members[n], f"{source}:{n}"), label_key, f"{source}:{n}")
             for n in batch_names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
