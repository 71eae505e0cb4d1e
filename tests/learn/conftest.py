"""Fixtures of the learn tests: a tiny state-only dataset with arm-reach's sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embodia.data import format as fmt
from embodia.data.writer import DatasetSpec, Episode, write_dataset


def write_reach_dataset(root: Path, task: str | None = "arm-reach", episodes: int = 3, frames: int = 20) -> Path:
    """A tiny state-only dataset with arm-reach's sizes (21 observation, 3 action values), random values."""
    rng = np.random.default_rng(0)
    extra = {"action_low": [-1.0] * 3, "action_high": [1.0] * 3}
    if task:
        extra["generate"] = {"task": task}
    spec = DatasetSpec(fps=20, robot_type="arm", extra=extra,
                       features={"observation.state": fmt.vector_feature("float32", 21),
                                 "action": fmt.vector_feature("float32", 3)})
    data = [Episode(frames={"observation.state": rng.normal(size=(frames, 21)).astype(np.float32),
                            "action": rng.uniform(-1, 1, (frames, 3)).astype(np.float32)}, task="reach")
            for _ in range(episodes)]
    return write_dataset(root, spec, data)


@pytest.fixture(scope="module")
def reach_dataset(tmp_path_factory) -> Path:
    return write_reach_dataset(tmp_path_factory.mktemp("learn-data") / "reach")


@pytest.fixture()
def make_reach_dataset(tmp_path):
    """Write a fresh tiny dataset under tmp_path (to damage or to leave without a task)."""
    return lambda name="ds", **kwargs: write_reach_dataset(tmp_path / name, **kwargs)
