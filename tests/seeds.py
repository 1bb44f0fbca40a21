"""The seed of a seeded property test: printed, and replayed from ``GITREG_TEST_SEED``."""

from __future__ import annotations

import os
import random


def seeded(default: int | None = None) -> tuple[int, random.Random]:
    """The seed (``GITREG_TEST_SEED``, else ``default``, else a random one) and its generator."""
    chosen = os.environ.get("GITREG_TEST_SEED")
    seed = int(chosen) if chosen else default if default is not None else random.randrange(1 << 30)
    print(f"seed {seed} (GITREG_TEST_SEED={seed} replays it)")
    return seed, random.Random(seed)
