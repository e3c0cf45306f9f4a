"""Independent seeds derived from a run's seed: one rule for every stage, member and stream.

``derive_seed(seed, *keys)`` hashes ``(seed, *keys)`` with numpy's SeedSequence into a 31-bit
int (valid for numpy, Keras and ``tf.random`` alike), so streams keyed differently are
independent and each depends on its keys only, never on how many draws came before.
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed determined by ``(seed, *keys)`` (non-negative ints)."""
    return int(np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1, np.uint32)[0] & 0x7FFFFFFF)
