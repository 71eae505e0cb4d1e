"""The dataset reader: frames, episodes, DataLoader use, metadata."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from embodia.data.format import DatasetFormatError
from embodia.data.reader import Dataset

TOLERANCE = 12


def test_frames_round_trip(synthetic_dataset):
    root, episodes = synthetic_dataset
    ds = Dataset(root)
    assert len(ds) == sum(e.length for e in episodes) and ds.num_episodes == 3
    frame = ds[episodes[0].length + 2]  # episode 1, frame 2
    assert int(frame["episode_index"]) == 1 and int(frame["frame_index"]) == 2
    np.testing.assert_array_equal(frame["observation.state"].numpy(), episodes[1].frames["observation.state"][2])
    assert frame["observation.images.front"].shape == (3, 32, 32)
    assert frame["observation.images.front"].dtype == torch.float32
    expected = episodes[1].images["front"][2, 0, 0]
    np.testing.assert_allclose(frame["observation.images.front"][:, 0, 0].numpy() * 255, expected, atol=TOLERANCE)
    assert frame["task"] == "place the cube"
    assert float(frame["timestamp"]) == pytest.approx(0.2)


def test_episode_arrays_and_extras(synthetic_dataset):
    root, episodes = synthetic_dataset
    ds = Dataset(root)
    for index, (episode, original) in enumerate(zip(ds.episodes(), episodes)):
        np.testing.assert_array_equal(episode["action"], original.frames["action"])
        np.testing.assert_array_equal(episode["next.success"], original.frames["next.success"])
        wrist = episode["observation.images.wrist"]
        assert wrist.shape == original.images["wrist"].shape and wrist.dtype == np.uint8
        assert np.abs(wrist.astype(int) - original.images["wrist"].astype(int)).max() <= TOLERANCE
        assert episode["info"] == original.info and episode["task"] == original.task


def test_dataloader_batches_and_pickles(synthetic_dataset):
    root, _ = synthetic_dataset
    ds = Dataset(root)
    ds[0]  # opens a video file; the pickled copy must not carry it
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5, shuffle=False)))
    assert batch["observation.state"].shape == (5, 4)
    assert batch["observation.images.wrist"].shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(batch["index"].numpy(), np.arange(5))


def test_metadata_and_stats(synthetic_dataset):
    root, _ = synthetic_dataset
    ds = Dataset(root)
    assert ds.cameras == ["front", "wrist"] and ds.fps == 10
    assert ds.tasks == ["pick up the cube", "place the cube"]
    assert ds.stats["action"]["mean"].shape == (2,)
    assert ds.embodia_info(2) == {"episode_seed": 1002, "success": True}


def test_out_of_range_and_bad_directory(synthetic_dataset, tmp_path):
    root, _ = synthetic_dataset
    ds = Dataset(root)
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]
    with pytest.raises(IndexError, match="episode 9"):
        ds.episode(9)
    with pytest.raises(DatasetFormatError, match="meta/info.json is missing"):
        Dataset(tmp_path)
    with pytest.raises(DatasetFormatError, match="absent does not exist"):
        Dataset(tmp_path / "absent")
