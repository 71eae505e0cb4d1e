"""The dataset checker reports corruption naming the file and the episode."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from embodia.data.check import check_dataset


@pytest.fixture
def copy_of(synthetic_dataset, tmp_path):
    root, _ = synthetic_dataset
    target = tmp_path / "ds"
    shutil.copytree(root, target)
    return target


def test_valid_dataset_passes(synthetic_dataset):
    report = check_dataset(synthetic_dataset[0])
    assert report.ok and report.problems == []


def test_truncated_video_names_file_and_episode(copy_of):
    video = copy_of / "videos/observation.images.wrist/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    report = check_dataset(copy_of)
    assert not report.ok
    assert any("observation.images.wrist" in p and ("episode" in p or "unreadable" in p) for p in report.problems)


def test_wrong_total_frames_is_reported(copy_of):
    info_path = copy_of / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["total_frames"] += 1
    info_path.write_text(json.dumps(info))
    report = check_dataset(copy_of, videos=False)
    assert any("total_frames" in p for p in report.problems)


def test_garbage_parquet_is_reported(copy_of):
    (copy_of / "data/chunk-000/file-000.parquet").write_bytes(b"not parquet")
    report = check_dataset(copy_of)
    assert any("data/chunk-000/file-000.parquet: unreadable parquet" in p for p in report.problems)


def test_broken_frame_index_names_episode(copy_of):
    path = copy_of / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    frame_index = table.column("frame_index").to_pylist()
    frame_index[9] = 99  # episode 1's second frame
    table = table.set_column(table.column_names.index("frame_index"), "frame_index",
                             [frame_index])
    pq.write_table(table, path)
    report = check_dataset(copy_of, videos=False)
    assert any(p.startswith("episode 1: frame_index") for p in report.problems)


def _edit_info(root, edit) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    edit(info["features"])
    path.write_text(json.dumps(info))


def test_declared_state_shape_over_fewer_columns_names_file_feature_and_both_sizes(copy_of):
    _edit_info(copy_of, lambda features: features["observation.state"].update(shape=[6]))
    problems = check_dataset(copy_of, videos=False).problems
    assert any("data/chunk-000/file-000.parquet" in p and "'observation.state'" in p and "[6]" in p
               and "holds 4 values" in p for p in problems), problems


def test_declared_dtype_differing_from_the_column_is_reported(copy_of):
    _edit_info(copy_of, lambda features: features["action"].update(dtype="float64"))
    problems = check_dataset(copy_of, videos=False).problems
    assert any("'action'" in p and "float64" in p and "float" in p for p in problems), problems


def test_declared_video_size_differing_from_the_stream_names_file_and_both_sizes(copy_of):
    _edit_info(copy_of, lambda features: features["observation.images.front"].update(shape=[96, 96, 3]))
    problems = check_dataset(copy_of, videos=False).problems
    assert any("videos/observation.images.front/chunk-000/file-000.mp4" in p and "[96, 96, 3]" in p
               and "32x32" in p for p in problems), problems
    assert not any("observation.images.wrist" in p for p in problems)


def test_fast_path_raises_naming_the_problem(copy_of):
    from embodia.data.check import require_valid_dataset
    from embodia.data.format import DatasetFormatError

    assert require_valid_dataset(copy_of).ok
    (copy_of / "videos/observation.images.wrist/chunk-000/file-000.mp4").unlink()
    with pytest.raises(DatasetFormatError, match="observation.images.wrist/chunk-000/file-000.mp4: missing"):
        require_valid_dataset(copy_of)
