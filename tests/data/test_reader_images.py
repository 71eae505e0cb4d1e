"""lerobot image features stored in parquet (`dtype: "image"`, use_videos=False) are read, checked and shown."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from embodia.data.check import check_dataset
from embodia.data.reader import Dataset
from embodia.data.viewer import write_page

from .dataset_helpers import run_lerobot, synthetic_episodes, synthetic_spec

KEY = "observation.images.top"
HEIGHT, WIDTH = 12, 20


def _pixels(episode_index: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 frames whose colour and a gradient encode (episode, frame)."""
    images = np.zeros((len(episode_index), HEIGHT, WIDTH, 3), np.uint8)
    images[..., 0] = (frame_index * 17 % 256)[:, None, None]
    images[..., 1] = (40 + 70 * episode_index)[:, None, None]
    images[..., 2] = np.arange(WIDTH, dtype=np.uint8) * 12
    return images


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_dataset(tmp_path_factory):
    """An embodia dataset turned into what lerobot writes with use_videos=False: a struct {bytes, path} column of
    PNGs in the data parquet and an `image` feature in info.json; returns (root, images in global index order)."""
    from embodia.data.writer import write_dataset

    root = tmp_path_factory.mktemp("images") / "ds"
    write_dataset(root, synthetic_spec(cameras=()), synthetic_episodes())
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    order = np.argsort(table.column("index").to_numpy())
    images = _pixels(table.column("episode_index").to_numpy(), table.column("frame_index").to_numpy())
    cells = pa.array([{"bytes": _png(image), "path": f"frame-{i:06d}.png"} for i, image in enumerate(images)],
                     type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(table.append_column(KEY, cells), path)
    info = json.loads((root / "meta/info.json").read_text())
    info["features"][KEY] = {"dtype": "image", "shape": [HEIGHT, WIDTH, 3], "names": ["height", "width", "channels"]}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root, images[order]


def test_image_feature_frames_are_read_exactly(image_dataset):
    root, images = image_dataset
    ds = Dataset(root)
    assert ds.cameras == ["top"] and ds.image_keys == [KEY] and ds.camera_keys == {"top": KEY}
    frame = ds[10]
    assert frame[KEY].shape == (3, HEIGHT, WIDTH) and frame[KEY].dtype.is_floating_point
    np.testing.assert_array_equal((frame[KEY].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), images[10])
    start = ds.episode_info(1)["dataset_from_index"]
    episode = ds.episode(1)
    np.testing.assert_array_equal(episode[KEY], images[start:start + len(episode["action"])])
    np.testing.assert_array_equal(ds.episode_images(2, "top"), images[ds.episode_info(2)["dataset_from_index"]:])
    ds.close()


def test_image_feature_dataset_passes_the_check_and_a_wrong_size_fails(image_dataset, tmp_path):
    import shutil

    root, _ = image_dataset
    report = check_dataset(root)
    assert report.ok, report.problems
    copy = tmp_path / "ds"
    shutil.copytree(root, copy)
    info = json.loads((copy / "meta/info.json").read_text())
    info["features"][KEY]["shape"] = [96, 96, 3]
    (copy / "meta/info.json").write_text(json.dumps(info))
    problems = check_dataset(copy).problems
    assert any("data/chunk-000/file-000.parquet" in p and KEY in p and "[96, 96, 3]" in p and f"{HEIGHT}x{WIDTH}" in p
               for p in problems), problems


def test_image_feature_shows_in_the_viewer(image_dataset, tmp_path):
    text = write_page(image_dataset[0], tmp_path / "page.html", max_episodes=2).read_text()
    assert text.count("data:video/mp4;base64,") == 2 and "camera top" in text


def test_undecodable_image_names_the_feature_and_frame(image_dataset, tmp_path):
    import shutil

    from embodia.data.format import DatasetFormatError

    copy = tmp_path / "ds"
    shutil.copytree(image_dataset[0], copy)
    path = copy / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    cells = table.column(KEY).to_pylist()
    cells[3] = {"bytes": b"not an image", "path": "x.png"}
    table = table.set_column(table.column_names.index(KEY), KEY, pa.array(cells, type=table.schema.field(KEY).type))
    pq.write_table(table, path)
    with pytest.raises(DatasetFormatError, match=f"frame 3 of image feature '{KEY}'.*undecodable"):
        Dataset(copy)[3]


@pytest.mark.lerobot
def test_we_read_images_written_by_lerobot(lerobot_python, tmp_path):
    root = tmp_path / "lerobot_ds"
    expected = tmp_path / "written.npz"
    run_lerobot(lerobot_python, "write-images", str(root), str(expected))
    written = np.load(expected)
    assert json.loads((root / "meta/info.json").read_text())["features"]["observation.images.front"]["dtype"] == "image"
    assert check_dataset(root).ok
    ds = Dataset(root)
    assert ds.cameras == ["front"] and len(ds) == 15
    decoded = np.concatenate([ds.episode(e)["observation.images.front"] for e in range(ds.num_episodes)])
    np.testing.assert_array_equal(decoded, written["images"])  # PNG is lossless
    np.testing.assert_array_equal(ds.column("observation.state"), written["state"])
    frame = ds[8]
    assert frame["task"] == "task 1"
    np.testing.assert_array_equal((frame["observation.images.front"].permute(1, 2, 0).numpy() * 255).round(),
                                  written["images"][8])
    ds.close()
