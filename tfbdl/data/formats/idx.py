"""The IDX format of the MNIST family (LeCun et al.), read and written with numpy.

Layout: a big-endian magic number ``0x0000TTDD`` (TT = element type, DD = number of
dimensions), then DD big-endian int32 sizes, then the elements in C order. MNIST images use
magic 2051 (uint8, 3 dims), labels 2049 (uint8, 1 dim).
"""

import math
import struct

import numpy as np

from tfbdl.errors import DataFormatError

__all__ = ["IMAGES_MAGIC", "LABELS_MAGIC", "MAX_DIMS", "encode_idx", "parse_idx"]

# IDX element type code -> big-endian numpy dtype.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES = {dtype.newbyteorder("="): code for code, dtype in _IDX_TYPES.items()}

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


# More dimensions than any IDX file needs; a header announcing more is refused.
MAX_DIMS = 8


def parse_idx(data: bytes, *, expected_magic: int | None = None, source: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes into an array in native byte order (uint8 stays uint8).

    Raises DataFormatError on a bad magic number, a header announcing more than
    :data:`MAX_DIMS` dimensions or a size that is not positive, or a length that does not match
    the header. The announced sizes are checked against the bytes present before anything is
    allocated, in exact integer arithmetic (no overflow).
    """
    if len(data) < 4:
        raise DataFormatError(f"{source}: {len(data)} bytes is too short for an IDX header")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">i", data[:4])[0]
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise DataFormatError(f"{source}: not an IDX file (magic number {magic:#010x})")
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(f"{source}: magic number {magic}, expected {expected_magic}")
    if ndim > MAX_DIMS:
        raise DataFormatError(f"{source}: the header announces {ndim} dimensions (at most {MAX_DIMS} make sense); "
                              "the file is corrupt")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{source}: truncated header")
    shape = struct.unpack(f">{ndim}i", data[4:header])
    if any(size <= 0 for size in shape):
        raise DataFormatError(f"{source}: the header announces shape {shape}; every size must be positive, "
                              "so the file is corrupt")
    dtype = _IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
    held = len(data) - header
    if held != expected:
        problem = "truncated or corrupt" if held < expected else "corrupt (it has trailing bytes)"
        raise DataFormatError(
            f"{source}: header says shape {shape} ({expected:,} bytes of data) "
            f"but the file holds {held:,} bytes; the file is {problem}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (the inverse of :func:`parse_idx`)."""
    array = np.asarray(array)
    code = _TYPE_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataFormatError(f"IDX cannot store dtype {array.dtype}")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array, dtype=_IDX_TYPES[code]).tobytes()
