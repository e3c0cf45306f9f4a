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


def load_batch_pickle(data: bytes, source: str = "CIFAR batch") -> dict:
    """Unpickle one batch safely and return it with ``str`` keys."""
    try:
        batch = BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as error:  # any decoding failure means a corrupt file
        raise DataFormatError(f"{source}: not a readable pickle ({error})") from error
    if not isinstance(batch, dict):
        raise DataFormatError(f"{source}: expected a dict, found {type(batch).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def batch_to_arrays(batch: dict, label_key: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Turn a batch dict into (images uint8 [N, 32, 32, 3], labels int64 [N])."""
    if "data" not in batch or label_key not in batch:
        raise DataFormatError(f"{source}: missing 'data' or '{label_key}' entry")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataFormatError(f"{source}: data must be uint8 [N, 3072], found {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataFormatError(f"{source}: {data.shape[0]} images but {labels.shape[0]} labels")
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
