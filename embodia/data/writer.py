"""Crash-safe LeRobot v3.0 writer: each finished episode lands whole in a staging area, then one finalize step
lays out data/, videos/ and meta/ (meta/info.json last, so a dataset with info.json is always complete).

A SIGKILL at any moment leaves either a finished dataset or a staging area from which `finalize` (or
`embodia data generate --resume`) continues; every staged episode is intact because it is renamed into
place only after all its files are written.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from embodia.core.atomic import atomic_write_json
from embodia.core.errors import ConfigError, UserError
from embodia.data import format as fmt
from embodia.data.video import VideoConfig, concatenate, encode_frames

STAGING_DIR = ".staging"
SPEC_FILE = "spec.json"
EPISODE_FILE = "episode.json"
FRAMES_FILE = "frames.parquet"


class OutputExistsError(UserError):
    """The output directory already holds something that generation must not overwrite."""


class DatasetSpec(BaseModel):
    """What every frame of a dataset holds: rate, robot, non-video features, cameras and their encoding."""

    model_config = ConfigDict(extra="forbid")

    fps: int = Field(..., ge=1, description="frames per second (1 / control dt)")
    robot_type: str = Field("unknown", description="robot name recorded in info.json")
    features: dict[str, dict[str, Any]] = Field(..., description="per-frame non-video features: key -> {dtype, shape, names}")
    cameras: dict[str, tuple[int, int]] = Field(default_factory=dict, description="camera name -> (height, width)")
    video: VideoConfig = Field(default_factory=VideoConfig, description="how camera streams are encoded")
    extra: dict[str, Any] = Field(default_factory=dict, description="embodia fields stored under info.json['embodia']")

    def all_features(self) -> dict[str, dict[str, Any]]:
        """Features as info.json lists them: data features then one video feature per camera."""
        videos = {fmt.camera_key(name): fmt.video_feature(h, w, self.fps, self.video.codec,
                                                          {"video.g": self.video.gop, "video.crf": self.video.crf})
                  for name, (h, w) in self.cameras.items()}
        return {**self.features, **videos}


@dataclass
class Episode:
    """One finished episode in memory: per-frame columns (T, ...), camera frames (T, H, W, 3) uint8, task text, extras."""

    frames: dict[str, np.ndarray]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    task: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # embodia extras: episode_seed, success, ...

    @property
    def length(self) -> int:
        return len(next(iter(self.frames.values())))


class StagingArea:
    """Finished episodes, one directory each, under DIR/.staging; keys order them in the final dataset."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / STAGING_DIR
        self.spec = DatasetSpec.model_validate_json((self.path / SPEC_FILE).read_text())

    @classmethod
    def create(cls, root: Path, spec: DatasetSpec, resume: bool = False, may_change: tuple[str, ...] = ()) -> StagingArea:
        """Open DIR for writing: a fresh (empty or absent) directory, or with `resume` an unfinished one whose
        spec equals `spec` except at the dotted keys `may_change` (then the new spec is stored)."""
        root = Path(root)
        staging = root / STAGING_DIR
        if (root / fmt.INFO_PATH).is_file():
            raise OutputExistsError(f"{root} already holds a finished dataset; choose a new --out directory")
        if staging.is_dir() and (staging / SPEC_FILE).is_file():
            if not resume:
                raise OutputExistsError(f"{root} holds an unfinished generation; add --resume to continue it "
                                        "or choose a new --out directory")
            area = cls(root)
            area._resume_with(spec, may_change)
            return area
        if root.exists() and not root.is_dir():
            raise OutputExistsError(f"--out {root} is a file, not a directory")
        if root.is_dir() and any(root.iterdir()):
            raise OutputExistsError(f"--out {root} is not empty and is not an embodia dataset; choose a new directory")
        try:
            staging.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create {staging}: {error.strerror}; choose a writable --out") from None
        atomic_write_json(staging / SPEC_FILE, json.loads(spec.model_dump_json()), indent=4)
        return cls(root)

    def _resume_with(self, spec: DatasetSpec, may_change: tuple[str, ...]) -> None:
        """Refuse a spec that changes the data, naming the first differing field; store allowed changes."""
        old, new = self.spec.model_dump(mode="json"), spec.model_dump(mode="json")
        difference = describe_difference(old, new, may_change)
        if difference:
            raise ConfigError(f"--resume: {self.root} was started with different settings: {difference}; rerun "
                              "with the same value or choose a new --out directory")
        if old != new:
            atomic_write_json(self.path / SPEC_FILE, json.loads(spec.model_dump_json()), indent=4)
            self.spec = spec

    # ---------------------------------------------------------------- episodes
    def episode_dir(self, key: int) -> Path:
        return self.path / "episodes" / f"{key:012d}"

    def keys(self) -> list[int]:
        """Keys of the fully written episodes, sorted."""
        directory = self.path / "episodes"
        if not directory.is_dir():
            return []
        return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / EPISODE_FILE).is_file())

    def remove_partial(self) -> int:
        """Delete episode directories a crash left half-written; returns how many."""
        directory = self.path / "episodes"
        partial = [p for p in directory.iterdir() if not p.name.isdigit()] if directory.is_dir() else []
        for path in partial:
            shutil.rmtree(path, ignore_errors=True)
        return len(partial)

    def write_episode(self, key: int, episode: Episode) -> Path:
        """Write one episode's frames, videos and stats under a temp name, then rename it into place."""
        spec = self.spec
        self._check_episode(episode)
        final = self.episode_dir(key)
        tmp = final.with_name(f"tmp-{key:012d}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        table = fmt.frames_to_table(episode.frames, spec.features)
        pq.write_table(table, tmp / FRAMES_FILE)
        stats = {key_: fmt.feature_stats(np.asarray(episode.frames[key_])) for key_ in spec.features}
        for camera in spec.cameras:
            frames = episode.images[camera]
            encode_frames(tmp / f"{camera}.mp4", frames, spec.fps, spec.video)
            stats[fmt.camera_key(camera)] = fmt.image_stats(frames)
        meta = {"task": episode.task, "length": episode.length, "info": episode.info,
                "stats": fmt.stats_to_json(stats)}
        (tmp / EPISODE_FILE).write_text(json.dumps(meta, default=_json_default))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        return final

    def _check_episode(self, episode: Episode) -> None:
        length = episode.length
        if length < 1:
            raise fmt.DatasetFormatError("an episode must have at least one frame")
        for key, feature in self.spec.features.items():
            if key not in episode.frames:
                raise fmt.DatasetFormatError(f"episode is missing feature {key!r}; the dataset declares {list(self.spec.features)}")
            values = np.asarray(episode.frames[key])
            want = (length, feature["shape"][0])
            if values.ndim not in (1, 2) or values.reshape(len(values), -1).shape != want:
                raise fmt.DatasetFormatError(f"feature {key!r} has shape {values.shape}, expected {want} (frames, size)")
        for camera, (height, width) in self.spec.cameras.items():
            if camera not in episode.images:
                raise fmt.DatasetFormatError(f"episode is missing camera {camera!r}; the dataset declares {list(self.spec.cameras)}")
            if episode.images[camera].shape != (length, height, width, 3):
                raise fmt.DatasetFormatError(f"camera {camera!r} frames have shape {episode.images[camera].shape}, "
                                 f"expected {(length, height, width, 3)}")

    def read_episode_meta(self, key: int) -> dict[str, Any]:
        return json.loads((self.episode_dir(key) / EPISODE_FILE).read_text())

    # ---------------------------------------------------------------- finalize
    def finalize(self, keys: list[int] | None = None) -> Path:
        """Lay the staged episodes (all, or `keys` in order) out as a v3.0 dataset at root, atomically per tree."""
        keys = self.keys() if keys is None else list(keys)
        if not keys:
            raise UserError(f"{self.root}: no finished episodes to write (all attempts were filtered out?)")
        build = self.root / ".finalize"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        _Layout(self, build).write(keys)
        for part in ("data", "videos", "meta"):  # meta (holding info.json) last: it marks the dataset complete
            target = self.root / part
            if target.exists():
                shutil.rmtree(target)
            if (build / part).exists():
                os.replace(build / part, target)
        _fsync_dir(self.root)
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(self.path, ignore_errors=True)
        return self.root


class _Layout:
    """Builds data/, videos/ and meta/ from staged episodes inside a build directory."""

    def __init__(self, staging: StagingArea, build: Path) -> None:
        self.staging = staging
        self.spec = staging.spec
        self.build = build
        self.features = self.spec.all_features()
        self.data_features = {**self.spec.features, **fmt.DEFAULT_FEATURES}

    def write(self, keys: list[int]) -> None:
        metas = [self.staging.read_episode_meta(key) for key in keys]
        tasks = list(dict.fromkeys(meta["task"] for meta in metas))
        rows = self._write_data(keys, metas, tasks)
        for camera in self.spec.cameras:
            self._write_videos(camera, keys, metas, rows)
        self._write_meta(metas, tasks, rows)

    def _write_data(self, keys: list[int], metas: list[dict], tasks: list[str]) -> list[dict[str, Any]]:
        rows, pending, pending_mb, file_number, index = [], [], 0.0, 0, 0
        task_index = {task: i for i, task in enumerate(tasks)}
        for episode_index, (key, meta) in enumerate(zip(keys, metas)):
            table = pq.read_table(self.staging.episode_dir(key) / FRAMES_FILE)
            length = table.num_rows
            if length != meta["length"]:
                raise fmt.DatasetFormatError(f"staged episode {key}: {FRAMES_FILE} has {length} rows, "
                                             f"episode.json says {meta['length']}")
            bookkeeping = _bookkeeping(length, episode_index, index, task_index[meta["task"]], self.spec.fps)
            for name, values in bookkeeping.items():
                table = table.append_column(name, pa.array(values))
            table_mb = table.nbytes / 2**20
            if pending and pending_mb + table_mb >= fmt.DATA_FILE_SIZE_MB:
                self._flush_data(pending, file_number)
                pending, pending_mb, file_number = [], 0.0, file_number + 1
            pending.append(table)
            pending_mb += table_mb
            chunk_index, file_index = fmt.chunk_file(file_number)
            stats = fmt.stats_from_json(meta["stats"])
            stats.update({name: fmt.feature_stats(values) for name, values in bookkeeping.items()})
            rows.append({"episode_index": episode_index, "tasks": [meta["task"]], "length": length,
                         "data/chunk_index": chunk_index, "data/file_index": file_index,
                         "dataset_from_index": index, "dataset_to_index": index + length,
                         "_stats": stats, "_info": meta["info"]})
            index += length
        self._flush_data(pending, file_number)
        return rows

    def _flush_data(self, tables: list[pa.Table], file_number: int) -> None:
        chunk_index, file_index = fmt.chunk_file(file_number)
        path = self.build / fmt.DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.concat_tables(tables)
        table = table.replace_schema_metadata({"huggingface": fmt.hf_features_json(self.data_features)})
        pq.write_table(table, path)

    def _write_videos(self, camera: str, keys: list[int], metas: list[dict], rows: list[dict]) -> None:
        video_key = fmt.camera_key(camera)
        groups, current, current_mb = [], [], 0.0
        for key in keys:
            path = self.staging.episode_dir(key) / f"{camera}.mp4"
            size_mb = path.stat().st_size / 2**20
            if current and current_mb + size_mb >= fmt.VIDEO_FILE_SIZE_MB:
                groups.append(current)
                current, current_mb = [], 0.0
            current.append(path)
            current_mb += size_mb
        groups.append(current)
        row = 0
        for file_number, paths in enumerate(groups):
            chunk_index, file_index = fmt.chunk_file(file_number)
            out = self.build / fmt.VIDEO_PATH.format(video_key=video_key, chunk_index=chunk_index, file_index=file_index)
            concatenate(paths, out)
            start_s = 0.0
            for _ in paths:
                duration_s = rows[row]["length"] / self.spec.fps
                rows[row].update({f"videos/{video_key}/chunk_index": chunk_index,
                                  f"videos/{video_key}/file_index": file_index,
                                  f"videos/{video_key}/from_timestamp": start_s,
                                  f"videos/{video_key}/to_timestamp": start_s + duration_s})
                start_s += duration_s
                row += 1

    def _write_meta(self, metas: list[dict], tasks: list[str], rows: list[dict]) -> None:
        meta_dir = self.build / "meta"
        meta_dir.mkdir(parents=True, exist_ok=True)
        tasks_table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                                "__index_level_0__": pa.array(tasks, pa.large_string())})
        tasks_table = tasks_table.replace_schema_metadata({"pandas": json.dumps(_pandas_index_meta())})
        pq.write_table(tasks_table, self.build / fmt.TASKS_PATH)
        self._write_episodes_table(rows)
        all_stats = fmt.aggregate_stats([row["_stats"] for row in rows])
        atomic_write_json(self.build / fmt.STATS_PATH, fmt.stats_to_json(all_stats), indent=4)
        info = fmt.build_info(fps=self.spec.fps, robot_type=self.spec.robot_type, features=self.features,
                              total_episodes=len(rows), total_frames=sum(row["length"] for row in rows),
                              total_tasks=len(tasks), extra=self.spec.extra)
        atomic_write_json(self.build / fmt.INFO_PATH, info, indent=4)

    def _write_episodes_table(self, rows: list[dict]) -> None:
        columns: dict[str, list] = {}
        stat_keys = list(self.features) + list(fmt.DEFAULT_FEATURES)
        info_keys = sorted({k for row in rows for k in row["_info"]})
        for row in rows:
            for name, value in row.items():
                if not name.startswith("_"):
                    columns.setdefault(name, []).append(value)
            for key in stat_keys:
                for stat in fmt.STAT_NAMES:
                    columns.setdefault(f"stats/{key}/{stat}", []).append(np.asarray(row["_stats"][key][stat]).tolist())
            columns.setdefault("meta/episodes/chunk_index", []).append(0)
            columns.setdefault("meta/episodes/file_index", []).append(0)
            for key in info_keys:  # embodia extras: columns lerobot does not read
                columns.setdefault(f"embodia/{key}", []).append(row["_info"].get(key))
        path = self.build / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)


def _bookkeeping(length: int, episode_index: int, start: int, task_index: int, fps: int) -> dict[str, np.ndarray]:
    frame_index = np.arange(length, dtype=np.int64)
    return {
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(length, episode_index, dtype=np.int64),
        "index": start + frame_index,
        "task_index": np.full(length, task_index, dtype=np.int64),
    }


def _pandas_index_meta() -> dict[str, Any]:
    # tasks.parquet is a pandas frame indexed by the task string, exactly as lerobot writes it
    return {"index_columns": ["__index_level_0__"], "column_indexes": [{"name": None, "field_name": None,
            "pandas_type": "unicode", "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
            "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                         "numpy_type": "int64", "metadata": None},
                        {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                         "numpy_type": "object", "metadata": None}],
            "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in episode info")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf value} of nested dicts (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def describe_difference(old: dict[str, Any], new: dict[str, Any], may_change: tuple[str, ...] = ()) -> str | None:
    """'--seed=0, this run asks --seed=1' for the first differing leaf of two settings dicts (dotted keys in
    `may_change` may differ), or None; a generation setting is named as its CLI option."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    for key in sorted(set(flat_old) | set(flat_new)):
        if flat_old.get(key) != flat_new.get(key) and key not in may_change:
            name = key.removeprefix("extra.generate.")
            option = "--" + name.replace("_", "-") if "." not in name else name
            return f"{option}={json.dumps(flat_old.get(key))}, this run asks {option}={json.dumps(flat_new.get(key))}"
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_dataset(root: Path, spec: DatasetSpec, episodes: list[Episode]) -> Path:
    """Write a whole dataset from in-memory episodes (tests, conversions): stage each, then finalize."""
    staging = StagingArea.create(Path(root), spec)
    for key, episode in enumerate(episodes):
        staging.write_episode(key, episode)
    return staging.finalize()
