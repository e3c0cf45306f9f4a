"""Independent seeds derived from a run's seed: one rule for every stage, member and stream.

``derive_seed(seed, *keys)`` hashes ``(seed, *keys)`` with numpy's SeedSequence into a 31-bit
int (valid for numpy, Keras and ``tf.random`` alike), so streams keyed differently are
independent and each depends on its keys only, never on how many draws came before.
:func:`derive_seeds` gives several such ints at once, :func:`derive_rng` a numpy Generator on the
same hash, and :func:`stateless_seed` the ``[2]`` seed of TensorFlow's stateless random ops.

A module that draws from a stream of its own names the stream's key as a module-level constant
(e.g. ``_SPLIT_STREAM = 0x5A1D``), so that two streams of one run never share a key by accident.
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_rng", "derive_seed", "derive_seeds", "stateless_seed"]

_MASK_31 = 0x7FFFFFFF


def _sequence(seed: int, keys) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), *map(int, keys)])


def derive_seed(seed: int, *keys: int, bits: int = 31) -> int:
    """A seed determined by ``(seed, *keys)`` (non-negative ints): 31 bits by default, or the
    whole 32-bit word with ``bits=32`` (for numpy only; ``tf.random`` wants 31 bits)."""
    if bits not in (31, 32):
        raise ValueError(f"bits must be 31 or 32, got {bits!r}")
    word = int(_sequence(seed, keys).generate_state(1, np.uint32)[0])
    return word if bits == 32 else word & _MASK_31


def derive_seeds(seed: int, *keys: int, count: int) -> list[int]:
    """``count`` 31-bit seeds from ``(seed, *keys)``; the first is ``derive_seed(seed, *keys)``."""
    return [int(word) & _MASK_31 for word in _sequence(seed, keys).generate_state(int(count), np.uint32)]


def derive_rng(seed: int, *keys: int) -> np.random.Generator:
    """A numpy Generator seeded by the SeedSequence of ``(seed, *keys)`` (its whole entropy, not a
    31-bit seed)."""
    return np.random.default_rng(_sequence(seed, keys))


def stateless_seed(seed: int, *keys: int):
    """The seed ``int32 [2]`` of ``tf.random.stateless_*`` ops for stream ``keys`` of ``seed``.

    ``[seed mod 2^31, key]``: TensorFlow keys its stateless generator (Philox) with both words, so
    the second word alone separates the streams of one seed. One key (< 2^31) is used as it is,
    several are first hashed into one by :func:`derive_seed`; no key gives ``[seed mod 2^31, 0]``.
    """
    import tensorflow as tf

    if len(keys) > 1:
        stream = derive_seed(*keys)
    else:
        stream = int(keys[0]) if keys else 0
        if not 0 <= stream <= _MASK_31:
            raise ValueError(f"a stream key must lie in [0, 2^31), got {stream}")
    return tf.constant([int(seed) % (_MASK_31 + 1), stream], tf.int32)
