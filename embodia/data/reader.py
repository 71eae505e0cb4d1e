"""Read LeRobot v3.0 datasets (embodia's or lerobot's own): frames, whole episodes, metadata and statistics.

`Dataset` is a `torch.utils.data.Dataset`: `ds[i]` returns one frame like `LeRobotDataset[i]` (tensors,
images float32 (3, H, W) in [0, 1]). Cameras are MP4 streams (`dtype: "video"`), decoded one whole episode at
a time and cached so reading frames in episode order costs one sequential decode, or PNG/JPEG images stored in
the parquet files (`dtype: "image"`, lerobot's `use_videos=False`), decoded per frame.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from embodia.data import format as fmt
from embodia.data.video import VideoFile


class Dataset(torch.utils.data.Dataset):
    """A LeRobot v3.0 dataset on disk; `len(ds)` frames, `ds.num_episodes` episodes."""

    def __init__(self, root: str | Path, *, cache_episodes: int = 2) -> None:
        self.root = Path(root)
        self.info = fmt.read_info(self.root)
        self.fps = int(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        self.video_keys = [key for key, f in self.features.items() if f["dtype"] == "video"]
        self.image_keys = [key for key, f in self.features.items() if f["dtype"] == "image"]
        # camera name ('front') -> feature key ('observation.images.front'), video streams and parquet images alike
        self.camera_keys = {key.removeprefix(fmt.IMAGE_KEY_PREFIX): key for key in self.video_keys + self.image_keys}
        self.cameras = list(self.camera_keys)
        self.data_keys = [key for key, f in self.features.items() if f["dtype"] not in ("video", "image")]
        self.episodes_table = self._read_episodes()
        self.tasks = self._read_tasks()
        self._columns, self._images = self._read_data()
        self._cache_size = cache_episodes
        self._reset_caches()

    # ---------------------------------------------------------------- loading
    def _read_parquet(self, path: Path) -> pa.Table:
        try:
            return pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as error:
            raise fmt.DatasetFormatError(f"{path}: unreadable parquet ({error})") from None

    def _read_episodes(self) -> dict[str, list]:
        paths = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not paths:
            raise fmt.DatasetFormatError(f"{self.root}: no episode table under meta/episodes/")
        table = pa.concat_tables([self._read_parquet(p) for p in paths], promote_options="default")
        keep = [name for name in table.column_names if not name.startswith("stats/")]
        episodes = table.select(keep).to_pydict()
        order = np.argsort(episodes["episode_index"])
        return {name: [values[i] for i in order] for name, values in episodes.items()}

    def _read_tasks(self) -> list[str]:
        table = self._read_parquet(self.root / fmt.TASKS_PATH)
        text = next(name for name in table.column_names if name != "task_index")
        pairs = sorted(zip(table.column("task_index").to_pylist(), table.column(text).to_pylist()))
        return [task for _, task in pairs]

    def _read_data(self) -> tuple[dict[str, np.ndarray], dict[str, pa.Array]]:
        """Data columns as arrays and image columns as their encoded bytes, both in global `index` order."""
        paths = sorted((self.root / "data").glob("chunk-*/file-*.parquet"))
        if not paths:
            raise fmt.DatasetFormatError(f"{self.root}: no data files under data/")
        tables = [self._read_parquet(p) for p in paths]
        for key in self.data_keys + self.image_keys:
            absent = next((path for path, table in zip(paths, tables) if key not in table.column_names), None)
            if absent is not None:
                raise fmt.DatasetFormatError(f"{absent}: column {key!r} declared in info.json is missing")
        columns = {key: np.concatenate([fmt.table_column(table, key, self.features[key]) for table in tables])
                   for key in self.data_keys}
        order = np.argsort(columns["index"], kind="stable")
        images = {key: pa.concat_arrays([_image_bytes(table, key, path) for path, table in zip(paths, tables)])
                  .take(pa.array(order)) for key in self.image_keys}
        return {key: values[order] for key, values in columns.items()}, images

    def _reset_caches(self) -> None:
        self._video_files: dict[Path, VideoFile] = {}
        self._episode_frames: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own video files
        state = self.__dict__.copy()
        state["_video_files"], state["_episode_frames"] = {}, OrderedDict()
        return state

    # ---------------------------------------------------------------- metadata
    @property
    def num_episodes(self) -> int:
        return len(self.episodes_table["episode_index"])

    @property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """meta/stats.json as arrays."""
        import json

        return fmt.stats_from_json(json.loads((self.root / fmt.STATS_PATH).read_text()))

    def episode_info(self, episode_index: int) -> dict[str, Any]:
        """The episodes-table row of one episode (lengths, index ranges, video spans, embodia extras)."""
        self._check_episode_index(episode_index)
        return {name: values[episode_index] for name, values in self.episodes_table.items()}

    def embodia_info(self, episode_index: int) -> dict[str, Any]:
        """embodia's extra per-episode fields (episode_seed, success, ...), empty for foreign datasets."""
        row = self.episode_info(episode_index)
        return {k.removeprefix("embodia/"): v for k, v in row.items() if k.startswith("embodia/")}

    def _check_episode_index(self, episode_index: int) -> None:
        if not 0 <= episode_index < self.num_episodes:
            raise IndexError(f"episode {episode_index} out of range: {self.root} has {self.num_episodes} episodes")

    # ---------------------------------------------------------------- frames
    def __len__(self) -> int:
        return len(self._columns["index"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} out of range: {self.root} has {len(self)} frames")
        index %= len(self)
        frame: dict[str, Any] = {}
        for key in self.data_keys:
            value = self._columns[key][index]
            frame[key] = torch.as_tensor(value)
        episode_index = int(self._columns["episode_index"][index])
        frame_index = int(self._columns["frame_index"][index])
        for camera, key in self.camera_keys.items():
            if key in self._images:
                image = self._decode_image(key, index)
            else:
                image = self.episode_images(episode_index, camera)[frame_index]
            frame[key] = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        frame["task"] = self.tasks[int(self._columns["task_index"][index])]
        return frame

    def episode_images(self, episode_index: int, camera: str) -> np.ndarray:
        """(T, H, W, 3) uint8 frames of one camera over one episode (decoded once, then cached)."""
        cache_key = (camera, episode_index)
        if cache_key in self._episode_frames:
            self._episode_frames.move_to_end(cache_key)
            return self._episode_frames[cache_key]
        if camera not in self.camera_keys:
            raise KeyError(f"camera {camera!r} not in {self.root}; it has {self.cameras}")
        row = self.episode_info(episode_index)
        key = self.camera_keys[camera]
        if key in self._images:
            frames = self._decode_images(key, row["dataset_from_index"], row["dataset_to_index"])
        else:
            path = self.root / self.info["video_path"].format(
                video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"])
            from_s = row[f"videos/{key}/from_timestamp"]
            frames = self._video(path).decode_range(from_s, from_s + row["length"] / self.fps, self.fps)
        self._episode_frames[cache_key] = frames
        while len(self._episode_frames) > self._cache_size * max(1, len(self.cameras)):
            self._episode_frames.popitem(last=False)
        return frames

    def _decode_image(self, key: str, index: int) -> np.ndarray:
        """(H, W, 3) uint8 pixels of frame `index` (global order) of a parquet image feature."""
        data = self._images[key][index].as_py()
        if data is None:
            raise fmt.DatasetFormatError(f"{self.root}: frame {index} of image feature {key!r} has no image bytes")
        try:
            return fmt.decode_image(data)
        except fmt.DatasetFormatError as error:
            raise fmt.DatasetFormatError(f"{self.root}: frame {index} of image feature {key!r}: {error}") from None

    def _decode_images(self, key: str, start: int, stop: int) -> np.ndarray:
        """(T, H, W, 3) uint8 frames start..stop-1 of a parquet image feature, all of one size."""
        frames = [self._decode_image(key, index) for index in range(start, stop)]
        sizes = {frame.shape for frame in frames}
        if len(sizes) > 1:
            raise fmt.DatasetFormatError(f"{self.root}: image feature {key!r} mixes image sizes {sorted(sizes)} "
                                         f"within frames {start}..{stop - 1}")
        return np.stack(frames)

    def _video(self, path: Path) -> VideoFile:
        if path not in self._video_files:
            self._video_files[path] = VideoFile(path)
        return self._video_files[path]

    # ---------------------------------------------------------------- episodes
    def episode(self, episode_index: int, images: bool = True) -> dict[str, Any]:
        """One whole episode as arrays: every data feature (T, ...), camera frames (T, H, W, 3) uint8, task, extras."""
        row = self.episode_info(episode_index)
        span = slice(row["dataset_from_index"], row["dataset_to_index"])
        out: dict[str, Any] = {key: self._columns[key][span] for key in self.data_keys}
        if images:
            for camera, key in self.camera_keys.items():
                out[key] = self.episode_images(episode_index, camera)
        out["task"] = row["tasks"][0] if row.get("tasks") else ""
        out["info"] = self.embodia_info(episode_index)
        return out

    def episodes(self, images: bool = True) -> Iterator[dict[str, Any]]:
        """Every episode in order (see `episode`)."""
        for episode_index in range(self.num_episodes):
            yield self.episode(episode_index, images=images)

    def column(self, key: str) -> np.ndarray:
        """A whole data column over all frames, e.g. 'action' (N, act_dim)."""
        if key not in self._columns:
            raise KeyError(f"{key!r} is not a data column of {self.root}; columns: {self.data_keys}")
        return self._columns[key]

    def close(self) -> None:
        """Close open video files."""
        for video in self._video_files.values():
            video.close()
        self._reset_caches()

    def __repr__(self) -> str:
        return (f"Dataset({str(self.root)!r}, episodes={self.num_episodes}, frames={len(self)}, "
                f"fps={self.fps}, cameras={self.cameras})")


def _image_bytes(table: pa.Table, key: str, path: Path) -> pa.Array:
    """The encoded images of a lerobot image column (struct {bytes, path}), 64-bit offsets so files can be joined."""
    column = table.column(key).combine_chunks()
    if not (pa.types.is_struct(column.type) and column.type.get_field_index("bytes") >= 0):
        raise fmt.DatasetFormatError(f"{path}: image column {key!r} holds {column.type}, expected lerobot's struct "
                                     "{bytes, path} of PNG/JPEG images")
    return column.field("bytes").cast(pa.large_binary())
