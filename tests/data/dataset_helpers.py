"""Helpers shared by the dataset tests: run the lerobot side script, build synthetic episodes and specs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

LEROBOT_SIDE = Path(__file__).with_name("lerobot_side.py")


def run_lerobot(python: Path, *args: str) -> None:
    """Run tests/data/lerobot_side.py under the lerobot interpreter; fail with its stderr."""
    result = subprocess.run([str(python), "-W", "ignore", str(LEROBOT_SIDE), *args], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "SVT_LOG": "1"})
    if result.returncode != 0:
        pytest.fail(f"lerobot side script failed ({' '.join(args)}):\n{result.stderr[-3000:]}")


def synthetic_episodes(num_episodes: int = 3, size: int = 32, seed: int = 0):
    """Episodes with random state/action and camera frames whose colour encodes (episode, frame)."""
    from embodia.data.writer import Episode

    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(num_episodes):
        length = 8 + 3 * e
        images = np.zeros((length, size, size, 3), np.uint8)
        images[..., 0] = (np.arange(length) * 12)[:, None, None]
        images[..., 1] = 40 + 70 * e
        images[..., 2] = 200
        wrist = 255 - images
        frames = {
            "observation.state": rng.normal(size=(length, 4)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(length, 2)).astype(np.float32),
            "next.reward": rng.normal(size=length).astype(np.float32),
            "next.done": np.arange(length) == length - 1,
            "next.success": np.arange(length) >= length - 2,
        }
        episodes.append(Episode(frames=frames, images={"front": images, "wrist": wrist},
                                task="pick up the cube" if e % 2 == 0 else "place the cube",
                                info={"episode_seed": 1000 + e, "success": bool(e % 2 == 0)}))
    return episodes


def synthetic_spec(size: int = 32, cameras: tuple[str, ...] = ("front", "wrist")):
    from embodia.data.format import vector_feature
    from embodia.data.writer import DatasetSpec

    return DatasetSpec(fps=10, robot_type="toy-arm",
                       features={"observation.state": vector_feature("float32", 4), "action": vector_feature("float32", 2),
                                 "next.reward": vector_feature("float32", 1), "next.done": vector_feature("bool", 1),
                                 "next.success": vector_feature("bool", 1)},
                       cameras={c: (size, size) for c in cameras}, extra={"task": "toy"})
