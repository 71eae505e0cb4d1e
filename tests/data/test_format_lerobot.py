"""Round trips against the real lerobot 0.4.4 (run in its side virtualenv): ours -> LeRobotDataset, lerobot's -> ours."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.data.reader import Dataset

from .dataset_helpers import run_lerobot

pytestmark = pytest.mark.lerobot

IMAGE_TOLERANCE = 12  # max abs uint8 difference after lossy AV1 on flat colour fields


def test_lerobot_loads_our_dataset_with_equal_values(synthetic_dataset, lerobot_python, tmp_path):
    root, episodes = synthetic_dataset
    out = tmp_path / "frames.npz"
    run_lerobot(lerobot_python, "load", str(root), str(out))
    loaded = np.load(out)
    assert int(loaded["num_episodes"]) == len(episodes)
    state = np.concatenate([e.frames["observation.state"] for e in episodes])
    action = np.concatenate([e.frames["action"] for e in episodes])
    np.testing.assert_array_equal(loaded["observation.state"], state)
    np.testing.assert_array_equal(loaded["action"], action)
    np.testing.assert_array_equal(loaded["next.done"], np.concatenate([e.frames["next.done"] for e in episodes]))
    lengths = [e.length for e in episodes]
    np.testing.assert_array_equal(loaded["index"], np.arange(sum(lengths)))
    np.testing.assert_array_equal(loaded["episode_index"], np.repeat(np.arange(len(episodes)), lengths))
    np.testing.assert_array_equal(loaded["frame_index"], np.concatenate([np.arange(n) for n in lengths]))
    assert list(loaded["task"]) == [e.task for e in episodes for _ in range(e.length)]
    for camera in ("front", "wrist"):
        images = np.concatenate([e.images[camera] for e in episodes]).astype(int)
        diff = np.abs(loaded[f"observation.images.{camera}"].astype(int) - images)
        assert diff.max() <= IMAGE_TOLERANCE, f"{camera}: max pixel error {diff.max()}"


def test_we_read_a_dataset_written_by_lerobot(lerobot_python, tmp_path):
    root = tmp_path / "lerobot_ds"
    expected = tmp_path / "written.npz"
    run_lerobot(lerobot_python, "write", str(root), str(expected))
    written = np.load(expected)
    ds = Dataset(root)
    assert ds.num_episodes == 2 and len(ds) == 15 and ds.fps == 10 and ds.cameras == ["front"]
    np.testing.assert_array_equal(ds.column("observation.state"), written["state"])
    np.testing.assert_array_equal(ds.column("action"), written["action"])
    episode = ds.episode(1)
    assert episode["task"] == "task 1"
    np.testing.assert_array_equal(episode["frame_index"], np.arange(9))
    decoded = np.concatenate([ds.episode(0)["observation.images.front"], episode["observation.images.front"]])
    assert np.abs(decoded.astype(int) - written["images"].astype(int)).max() <= IMAGE_TOLERANCE
    frame = ds[8]  # episode 1, frame 2
    assert frame["task"] == "task 1" and int(frame["frame_index"]) == 2
    np.testing.assert_allclose(frame["observation.images.front"][:, 0, 0].numpy() * 255, written["images"][8, 0, 0],
                               atol=IMAGE_TOLERANCE)
