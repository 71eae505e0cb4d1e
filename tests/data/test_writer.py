"""The v3.0 writer: layout, info.json, statistics, staging and its input checks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from embodia.data.writer import OutputExistsError, StagingArea, write_dataset

from .dataset_helpers import synthetic_episodes, synthetic_spec


def test_layout_matches_lerobot_v30(synthetic_dataset):
    root, episodes = synthetic_dataset
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/info.json",
        "meta/stats.json", "meta/tasks.parquet",
        "videos/observation.images.front/chunk-000/file-000.mp4",
        "videos/observation.images.wrist/chunk-000/file-000.mp4",
    ]
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["total_episodes"] == 3 and info["total_frames"] == sum(e.length for e in episodes)
    assert info["total_tasks"] == 2 and info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    front = info["features"]["observation.images.front"]
    assert front["dtype"] == "video" and front["shape"] == [32, 32, 3]
    assert front["info"]["video.codec"] == "av1" and front["info"]["video.fps"] == 10
    assert info["features"]["next.reward"]["shape"] == [1]
    assert info["embodia"] == {"task": "toy"}


def test_data_columns_have_lerobot_types(synthetic_dataset):
    root, _ = synthetic_dataset
    schema = pq.read_schema(root / "data/chunk-000/file-000.parquet")
    assert str(schema.field("observation.state").type) == "fixed_size_list<element: float>[4]"
    assert str(schema.field("next.reward").type) == "float"
    assert str(schema.field("next.done").type) == "bool"
    assert str(schema.field("index").type) == "int64"
    assert b"huggingface" in schema.metadata


def test_episode_table_spans_and_extras(synthetic_dataset):
    root, episodes = synthetic_dataset
    table = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    lengths = [e.length for e in episodes]
    assert table["length"] == lengths
    assert table["dataset_from_index"] == [0, lengths[0], lengths[0] + lengths[1]]
    assert table["videos/observation.images.front/from_timestamp"] == pytest.approx([0, 0.8, 1.9])
    assert table["videos/observation.images.front/to_timestamp"] == pytest.approx([0.8, 1.9, 3.3])
    assert table["embodia/episode_seed"] == [1000, 1001, 1002]
    assert table["embodia/success"] == [True, False, True]
    assert table["tasks"] == [["pick up the cube"], ["place the cube"], ["pick up the cube"]]


def test_stats_aggregate_equals_whole_dataset(synthetic_dataset):
    root, episodes = synthetic_dataset
    stats = json.loads((root / "meta/stats.json").read_text())
    action = np.concatenate([e.frames["action"] for e in episodes]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], action.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], action.std(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["min"], action.min(0))
    assert stats["action"]["count"] == [len(action)]
    assert np.asarray(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)
    assert stats["observation.images.front"]["mean"][2][0][0] == pytest.approx(200 / 255, abs=1e-6)
    assert stats["index"]["max"] == [len(action) - 1]


def test_refuses_to_overwrite_a_dataset(synthetic_dataset):
    root, _ = synthetic_dataset
    with pytest.raises(OutputExistsError, match="already holds a finished dataset"):
        StagingArea.create(root, synthetic_spec())


def test_refuses_a_non_empty_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        StagingArea.create(tmp_path, synthetic_spec())


def test_rejects_episode_missing_camera_or_bad_shape(tmp_path):
    staging = StagingArea.create(tmp_path / "ds", synthetic_spec())
    episode = synthetic_episodes(1)[0]
    del episode.images["wrist"]
    with pytest.raises(ValueError, match="missing camera 'wrist'"):
        staging.write_episode(0, episode)
    episode = synthetic_episodes(1)[0]
    episode.frames["action"] = episode.frames["action"][:, :1]
    with pytest.raises(ValueError, match="feature 'action' has shape"):
        staging.write_episode(0, episode)


def test_staged_episodes_finalize_in_key_order(tmp_path):
    staging = StagingArea.create(tmp_path / "ds", synthetic_spec(cameras=()))
    episodes = synthetic_episodes(3)
    for key, episode in zip((30, 10, 20), episodes):
        staging.write_episode(key, episode)
    assert staging.keys() == [10, 20, 30]
    root = staging.finalize()
    table = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert table["embodia/episode_seed"] == [1001, 1002, 1000]
    assert not (root / ".staging").exists()


def test_resume_requires_same_settings(tmp_path):
    StagingArea.create(tmp_path / "ds", synthetic_spec())
    with pytest.raises(OutputExistsError, match="--resume"):
        StagingArea.create(tmp_path / "ds", synthetic_spec())
    with pytest.raises(ValueError, match="different settings"):
        StagingArea.create(tmp_path / "ds", synthetic_spec(size=64), resume=True)
    assert StagingArea.create(tmp_path / "ds", synthetic_spec(), resume=True).keys() == []


def test_write_dataset_without_cameras(tmp_path):
    root = write_dataset(tmp_path / "ds", synthetic_spec(cameras=()), synthetic_episodes(2))
    info = json.loads((root / "meta/info.json").read_text())
    assert info["video_path"] is None and not (root / "videos").exists()
