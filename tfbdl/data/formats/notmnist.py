"""The notMNIST archive (Bulatov 2011): tar.gz of folders ``A``..``J`` holding 28x28 PNGs.

A few PNGs in the official archives are known to be unreadable (two are empty); they are skipped
rather than failing the whole load, and counted: the loaders record :func:`skipped_note` in the
data's provenance, so a run's summary says how many were left out.
"""

import io
import tarfile

import numpy as np

from tfbdl.errors import DataFormatError

__all__ = ["LETTERS", "parse_notmnist_archive", "skipped_note"]

LETTERS = "ABCDEFGHIJ"


def parse_notmnist_archive(archive: bytes, source: str = "notMNIST archive"):
    """Decode every PNG of an uncompressed notMNIST tar.

    Returns (images uint8 [N, 28, 28, 1], labels int64 [N], skipped: list of member names that
    could not be decoded). Members are read in sorted name order, so the result is deterministic.
    """
    from PIL import Image  # pillow comes with matplotlib; imported here to keep imports cheap

    images, labels, skipped = [], [], []
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".png")),
                             key=lambda m: m.name)
            for member in members:
                parts = member.name.split("/")
                letter = parts[-2] if len(parts) >= 2 else ""
                if letter not in LETTERS:
                    continue
                try:
                    with Image.open(io.BytesIO(tar.extractfile(member).read())) as png:
                        pixels = np.asarray(png.convert("L"), dtype=np.uint8)
                except Exception:  # the official archives hold a few truncated PNGs
                    skipped.append(member.name)
                    continue
                if pixels.shape != (28, 28):
                    skipped.append(member.name)
                    continue
                images.append(pixels)
                labels.append(LETTERS.index(letter))
    except tarfile.TarError as error:
        raise DataFormatError(f"{source}: not a readable tar archive ({error})") from error
    if not images:
        raise DataFormatError(f"{source}: no readable A-J/*.png images in the archive")
    return np.stack(images)[..., None], np.asarray(labels, dtype=np.int64), skipped


def skipped_note(skipped: list[str], shown: int = 3) -> str:
    """The provenance note for the members :func:`parse_notmnist_archive` could not decode."""
    count = len(skipped)
    names = ", ".join(skipped[:shown]) + (f" and {count - shown} more" if count > shown else "")
    return (f"{count} unreadable notMNIST file{'s were' if count != 1 else ' was'} skipped ({names})")
