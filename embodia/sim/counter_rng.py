"""Counter-based random numbers: a pure hash of (episode seed, step, stream, dim), vectorized over the batch.

An episode's noise then depends on its seed alone, so replays reproduce it exactly, two policies evaluated on
the same seeds face identical noise, and an env's draws never depend on which other envs share its batch.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def hashed_uniform(episode_seeds: np.ndarray, steps: np.ndarray | int, stream: int, dims: int) -> np.ndarray:
    """(N, dims) uniform [0, 1) numbers that depend only on (episode seed, step, stream, dim)."""
    seeds = np.asarray(episode_seeds).astype(np.uint64)
    steps = np.broadcast_to(np.asarray(steps), seeds.shape).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(_splitmix64(seeds) ^ (steps * _MIX2))
        key = _splitmix64(key ^ (np.uint64(stream) * _MIX1))
        bits = _splitmix64(key[:, None] + np.arange(dims, dtype=np.uint64)[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def hashed_normal(episode_seeds: np.ndarray, steps: np.ndarray | int, stream: int, dims: int) -> np.ndarray:
    """(N, dims) standard normal numbers that depend only on (episode seed, step, stream, dim) (Box-Muller)."""
    u1 = hashed_uniform(episode_seeds, steps, stream, dims)
    u2 = hashed_uniform(episode_seeds, steps, stream + 1000, dims)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
