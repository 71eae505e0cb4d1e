"""The LeRobot v3.0 dataset layout: paths, feature specs, info.json and statistics, shared by writer, reader and checker.

Everything here mirrors `lerobot/datasets/utils.py` and `compute_stats.py` of lerobot 0.4.4 (codebase v3.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from embodia.core.errors import DatasetFormatError
from embodia.core.paths import require_dir

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk directory
DATA_FILE_SIZE_MB = 100
VIDEO_FILE_SIZE_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
IMAGE_KEY_PREFIX = "observation.images."
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
STAT_NAMES = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")

# the per-frame bookkeeping columns every LeRobot dataset has
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def chunk_file(file_number: int) -> tuple[int, int]:
    """(chunk_index, file_index) of the n-th file of a kind, `CHUNKS_SIZE` files per chunk."""
    return divmod(file_number, CHUNKS_SIZE)


def camera_key(camera: str) -> str:
    """Feature key of a camera stream, e.g. 'front' -> 'observation.images.front'."""
    return f"{IMAGE_KEY_PREFIX}{camera}"


def vector_feature(dtype: str, size: int, names: list[str] | None = None) -> dict[str, Any]:
    """Feature spec of a per-frame vector (size > 1) or scalar (size == 1)."""
    return {"dtype": dtype, "shape": [size], "names": names}


def video_feature(height: int, width: int, fps: int, codec: str, extra: dict | None = None) -> dict[str, Any]:
    """Feature spec of an MP4 camera stream, with the `info` block lerobot writes."""
    info = {"video.height": height, "video.width": width, "video.codec": codec, "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False}
    info.update(extra or {})
    return {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"], "info": info}


def declared_size(feature: dict[str, Any]) -> tuple[int, int]:
    """(height, width) of an image or video feature, read through its `names` when they say which axis is which."""
    shape, names = list(feature["shape"]), list(feature.get("names") or [])
    if len(shape) != 3:
        raise DatasetFormatError(f"image feature shape {shape} must have 3 axes (height, width, channels)")
    if "height" in names and "width" in names and len(names) == 3:
        return int(shape[names.index("height")]), int(shape[names.index("width")])
    return int(shape[0]), int(shape[1])


def feature_names(feature: dict[str, Any], size: int) -> list[str]:
    """Names of a vector feature's `size` dimensions from info.json (a list, or lerobot's {"motors": [...]}),
    or `d0..d{size-1}` when they are absent or do not match the size."""
    names = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == size:
        return [str(name) for name in names]
    return [f"d{i}" for i in range(size)]


def decode_image(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 pixels of one PNG/JPEG image stored in a parquet `image` column (lerobot's {bytes, path})."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"))  # a writable copy: torch refuses read-only arrays
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DatasetFormatError(f"undecodable image ({len(data)} bytes: {error})") from None


def is_scalar(feature: dict[str, Any]) -> bool:
    """Shape [1] features are stored as plain parquet values, not lists (as lerobot/datasets does)."""
    return list(feature["shape"]) == [1]


def arrow_type(feature: dict[str, Any]) -> pa.DataType:
    """Parquet column type of a non-video feature, matching Hugging Face datasets' encoding."""
    value = pa.from_numpy_dtype(np.dtype(feature["dtype"]))
    if is_scalar(feature):
        return value
    if len(feature["shape"]) != 1:
        raise DatasetFormatError(f"feature shape {feature['shape']} not supported: only vectors and scalars")
    return pa.list_(value, feature["shape"][0])


def hf_features_json(features: dict[str, dict[str, Any]]) -> str:
    """The `huggingface` schema metadata lerobot's parquet files carry (datasets.Features as JSON)."""
    out = {}
    for key, feature in features.items():
        if feature["dtype"] in ("video", "image"):
            continue
        value = {"dtype": feature["dtype"], "_type": "Value"}
        out[key] = value if is_scalar(feature) else {"feature": value, "length": feature["shape"][0], "_type": "List"}
    return json.dumps({"info": {"features": out}})


def frames_to_table(columns: dict[str, np.ndarray], features: dict[str, dict[str, Any]]) -> pa.Table:
    """Per-frame arrays (T, ...) -> a parquet-ready table with lerobot's column types, in feature order."""
    arrays, names = [], []
    for key, feature in features.items():
        if feature["dtype"] in ("video", "image"):
            continue
        if key not in columns:
            raise DatasetFormatError(f"missing column {key!r}; features declare {list(features)}")
        values = np.asarray(columns[key], dtype=feature["dtype"])
        if is_scalar(feature):
            arrays.append(pa.array(values.reshape(-1)))
        else:
            size = feature["shape"][0]
            flat = pa.array(values.reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, size))
        names.append(key)
    table = pa.Table.from_arrays(arrays, names=names)
    return table.replace_schema_metadata({"huggingface": hf_features_json(features)})


def table_column(table: pa.Table, key: str, feature: dict[str, Any]) -> np.ndarray:
    """One column of a data table as a numpy array (T,) or (T, size)."""
    column = table.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(column), -1).astype(feature["dtype"], copy=False)
    return column.to_numpy(zero_copy_only=False).astype(feature["dtype"], copy=False)


# ---------------------------------------------------------------------- statistics
def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """lerobot's per-feature statistics over frames: min/max/mean/std/count and quantiles, per dimension."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    stats = {
        "min": values.min(axis=0), "max": values.max(axis=0),
        "mean": values.mean(axis=0), "std": values.std(axis=0),
        "count": np.array([len(values)]),
    }
    quantiles = np.quantile(values, QUANTILES, axis=0)
    for q, row in zip(QUANTILES, quantiles):
        stats[f"q{round(q * 100):02d}"] = row
    return stats


def image_stats(frames: np.ndarray, max_samples: int = 100) -> dict[str, np.ndarray]:
    """Per-channel statistics of (T, H, W, 3) uint8 frames scaled to [0, 1], shaped (3, 1, 1) as lerobot's."""
    step = max(1, len(frames) // max_samples)
    sample = frames[::step, ::4, ::4].reshape(-1, 3).astype(np.float64) / 255.0  # subsampled like lerobot
    stats = feature_stats(sample)
    out = {name: value.reshape(3, 1, 1) for name, value in stats.items() if name != "count"}
    out["count"] = np.array([len(frames)])
    return out


def aggregate_stats(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Combine per-episode stats as lerobot's `aggregate_stats`: weighted means, pooled variance, count-weighted quantiles."""
    keys = {key for stats in per_episode for key in stats}
    out = {}
    for key in sorted(keys):
        items = [stats[key] for stats in per_episode if key in stats]
        counts = np.array([float(item["count"][0]) for item in items])
        weights = counts / counts.sum()
        means = np.stack([item["mean"] for item in items])
        shape = (-1,) + (1,) * (means.ndim - 1)
        mean = (means * weights.reshape(shape)).sum(axis=0)
        variances = np.stack([item["std"] ** 2 for item in items])
        variance = ((variances + (means - mean) ** 2) * weights.reshape(shape)).sum(axis=0)
        combined = {
            "min": np.min(np.stack([item["min"] for item in items]), axis=0),
            "max": np.max(np.stack([item["max"] for item in items]), axis=0),
            "mean": mean, "std": np.sqrt(variance), "count": np.array([int(counts.sum())]),
        }
        for name in STAT_NAMES[5:]:
            combined[name] = (np.stack([item[name] for item in items]) * weights.reshape(shape)).sum(axis=0)
        out[key] = combined
    return out


def stats_to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    """Nested lists for meta/stats.json."""
    return {key: {name: np.asarray(value).tolist() for name, value in group.items()} for key, group in stats.items()}


def stats_from_json(raw: dict[str, dict[str, list]]) -> dict[str, dict[str, np.ndarray]]:
    """meta/stats.json back to arrays."""
    return {key: {name: np.asarray(value) for name, value in group.items()} for key, group in raw.items()}


# ---------------------------------------------------------------------- info.json
def build_info(*, fps: int, robot_type: str, features: dict[str, dict[str, Any]], total_episodes: int,
               total_frames: int, total_tasks: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """meta/info.json of a v3.0 dataset; embodia's own fields go under the `embodia` key lerobot ignores."""
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_SIZE_MB,
        "video_files_size_in_mb": VIDEO_FILE_SIZE_MB,
        "fps": fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if any(f["dtype"] == "video" for f in features.values()) else None,
        "features": {**features, **DEFAULT_FEATURES},
    }
    if extra:
        info["embodia"] = extra
    return info


def read_info(root: Path) -> dict[str, Any]:
    """meta/info.json of the dataset at `root`, checked to be a v3.0 dataset."""
    path = Path(root) / INFO_PATH
    require_dir(root, "dataset directory", error_cls=DatasetFormatError)
    if not path.is_file():
        raise DatasetFormatError(f"{root} is not a LeRobot dataset: {INFO_PATH} is missing "
                                 "(an unfinished generation? run `embodia data generate --resume --out DIR`)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:  # both are ValueErrors that name no file
        raise DatasetFormatError(f"{path} is not valid UTF-8 JSON: {error}") from None
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise DatasetFormatError(f"{path}: codebase_version {version!r}; embodia reads LeRobot {CODEBASE_VERSION} "
                                 "datasets (convert older ones with lerobot's convert_dataset_v21_to_v30)")
    return info
