"""Fixtures for dataset tests: a path to the lerobot side interpreter, and a small synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .dataset_helpers import synthetic_episodes, synthetic_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def lerobot_python() -> Path:
    """The interpreter of the side virtualenv that has the real lerobot; fails (never skips) when absent."""
    path = Path(os.environ.get("EMBODIA_LEROBOT_PYTHON", REPO / ".lerobot-venv" / "bin" / "python"))
    if not path.is_file():
        pytest.fail(f"lerobot side interpreter {path} not found: run `make lerobot-venv` "
                    "(or set EMBODIA_LEROBOT_PYTHON to its python)")
    return path


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> tuple[Path, list]:
    """A finished 3-episode, 2-camera dataset written by embodia, and the episodes that went in."""
    from embodia.data.writer import write_dataset

    root = tmp_path_factory.mktemp("synthetic") / "ds"
    episodes = synthetic_episodes()
    write_dataset(root, synthetic_spec(), episodes)
    return root, episodes

