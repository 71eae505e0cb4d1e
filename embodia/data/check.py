"""Validate a dataset directory: schema, declared shapes and dtypes against the parquet columns and the video
geometry, totals, index continuity, readable parquet, video frames vs timestamps.

Every problem is reported with the file and the episode or feature it concerns; an unfinished generation is
reported as resumable with the number of intact staged episodes. `require_valid_dataset` is the fast path
that training runs first (no video demuxing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embodia.core.errors import DatasetFormatError
from embodia.core.paths import require_dir
from embodia.core.stage import staging_dir
from embodia.data import format as fmt
from embodia.data.video import count_frames, video_size
from embodia.data.writer import EPISODE_FILE, FRAMES_FILE, STAGING_DIR, StagingArea

REQUIRED_INFO = ("codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks",
                 "chunks_size", "data_path", "splits")
EPISODE_COLUMNS = ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                   "dataset_from_index", "dataset_to_index")


@dataclass
class CheckReport:
    """Outcome of `check_dataset`: problems (corruption) and notes (facts worth printing)."""

    root: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resumable: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.resumable


def require_valid_dataset(root: str | Path) -> CheckReport:
    """Run the fast checks (everything but counting video frames) and raise `DatasetFormatError` naming every
    problem, so that a stage refuses a dataset that lerobot could not load before it spends time on it."""
    report = check_dataset(root, videos=False)
    if report.problems:
        listed = "; ".join(report.problems[:10]) + (f"; and {len(report.problems) - 10} more" if len(report.problems) > 10 else "")
        raise fmt.DatasetFormatError(f"{root} is not a valid dataset: {listed} (run `embodia data check {root}`)")
    if report.resumable:
        raise fmt.DatasetFormatError(f"{root} is an unfinished generation, not a dataset yet; finish it with "
                                     f"`embodia data generate --resume --out {root}`")
    return report


def check_dataset(root: str | Path, videos: bool = True) -> CheckReport:
    """Check the dataset (or unfinished generation) at `root`; never raises on corruption, reports it.

    `videos=False` skips counting each episode's video frames (it reads whole files); the files' presence and
    geometry are checked either way."""
    root = Path(root)
    report = CheckReport(root)
    if not root.exists() and (staging_dir(root) / STAGING_DIR).is_dir():  # a generation that has not finished
        _check_staging(staging_dir(root), report)
        return report
    require_dir(root, "dataset directory", error_cls=DatasetFormatError)
    if not (root / fmt.INFO_PATH).is_file():
        if (root / STAGING_DIR).is_dir():
            _check_staging(root, report)
            return report
        raise fmt.DatasetFormatError(f"{root} is not a LeRobot dataset: no {fmt.INFO_PATH} and no unfinished generation")
    try:
        info = json.loads((root / fmt.INFO_PATH).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        report.problems.append(f"{fmt.INFO_PATH}: invalid JSON ({error})")
        return report
    missing = [key for key in REQUIRED_INFO if key not in info]
    if missing:
        report.problems.append(f"{fmt.INFO_PATH}: missing fields {missing}")
        return report
    if info["codebase_version"] != fmt.CODEBASE_VERSION:
        report.problems.append(f"{fmt.INFO_PATH}: codebase_version {info['codebase_version']!r}, expected {fmt.CODEBASE_VERSION!r}")
    episodes = _read_episodes(root, report)
    frames = _read_frames(root, info, report)
    if episodes is None or frames is None:
        return report
    _check_totals(info, episodes, frames, report)
    _check_episodes(info, episodes, frames, report)
    _check_videos(root, info, episodes, report, count=videos)
    report.notes.append(f"{info['total_episodes']} episodes, {info['total_frames']} frames, "
                        f"{len([f for f in info['features'].values() if f['dtype'] == 'video'])} camera stream(s), "
                        f"{len([f for f in info['features'].values() if f['dtype'] == 'image'])} image feature(s)")
    return report


def _read_parquet(path: Path, report: CheckReport) -> pa.Table | None:
    try:
        return pq.read_table(path)
    except Exception as error:  # any arrow/IO failure is corruption of that file
        report.problems.append(f"{path}: unreadable parquet ({type(error).__name__}: {error})")
        return None


def _read_episodes(root: Path, report: CheckReport) -> dict[str, list] | None:
    paths = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not paths:
        report.problems.append(f"{root}/meta/episodes: no episode table")
        return None
    tables = [_read_parquet(p, report) for p in paths]
    if any(t is None for t in tables):
        return None
    table = pa.concat_tables(tables, promote_options="default")
    missing = [c for c in EPISODE_COLUMNS if c not in table.column_names]
    if missing:
        report.problems.append(f"{paths[0]}: missing columns {missing}")
        return None
    return table.select([c for c in table.column_names if not c.startswith("stats/")]).to_pydict()


def _read_frames(root: Path, info: dict, report: CheckReport) -> dict[str, np.ndarray] | None:
    paths = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not paths:
        report.problems.append(f"{root}/data: no data files")
        return None
    columns: dict[str, list] = {k: [] for k in ("index", "episode_index", "frame_index", "timestamp")}
    features = [k for k, f in info["features"].items() if f["dtype"] != "video"]
    for path in paths:
        table = _read_parquet(path, report)
        if table is None:
            continue
        absent = [k for k in features if k not in table.column_names]
        if absent:
            report.problems.append(f"{path}: columns {absent} declared in info.json are missing")
            continue
        problems = [f"{path}: {problem}" for key, feature in info["features"].items()
                    if feature["dtype"] != "video" and (problem := _column_problem(table.column(key), key, feature))]
        if problems:
            report.problems.extend(problems)
            continue
        for key in columns:
            columns[key].append(table.column(key).to_numpy())
    if report.problems:
        return None
    return {key: np.concatenate(parts) for key, parts in columns.items()}


def _check_totals(info: dict, episodes: dict, frames: dict, report: CheckReport) -> None:
    if info["total_episodes"] != len(episodes["episode_index"]):
        report.problems.append(f"{fmt.INFO_PATH}: total_episodes={info['total_episodes']} but the episode table "
                               f"has {len(episodes['episode_index'])} rows")
    if info["total_frames"] != len(frames["index"]):
        report.problems.append(f"{fmt.INFO_PATH}: total_frames={info['total_frames']} but data/ holds "
                               f"{len(frames['index'])} frames")
    if sum(episodes["length"]) != len(frames["index"]):
        report.problems.append(f"episode lengths sum to {sum(episodes['length'])} but data/ holds {len(frames['index'])} frames")


def _check_episodes(info: dict, episodes: dict, frames: dict, report: CheckReport) -> None:
    order = np.argsort(frames["index"], kind="stable")
    index = frames["index"][order]
    if not np.array_equal(index, np.arange(len(index))):
        gaps = np.flatnonzero(np.diff(index) != 1)
        where = f" (first break after index {index[gaps[0]]})" if gaps.size else ""
        report.problems.append(f"data/: global 'index' is not continuous 0..{len(index) - 1}{where}")
    episode_of = frames["episode_index"][order]
    frame_of = frames["frame_index"][order]
    stamp_of = frames["timestamp"][order]
    fps = info["fps"]
    for row, episode_index in enumerate(episodes["episode_index"]):
        start, stop = episodes["dataset_from_index"][row], episodes["dataset_to_index"][row]
        length = episodes["length"][row]
        name = f"episode {episode_index}"
        if row != episode_index:
            report.problems.append(f"meta/episodes: row {row} has episode_index {episode_index}; expected {row}")
        if stop - start != length:
            report.problems.append(f"{name}: dataset_to_index - dataset_from_index = {stop - start} != length {length}")
            continue
        if stop > len(index):
            report.problems.append(f"{name}: frames {start}..{stop} beyond the {len(index)} frames in data/")
            continue
        span = slice(start, stop)
        if not (episode_of[span] == episode_index).all():
            report.problems.append(f"{name}: data rows {start}..{stop - 1} carry other episode_index values")
        if not np.array_equal(frame_of[span], np.arange(length)):
            report.problems.append(f"{name}: frame_index is not 0..{length - 1}")
        if not np.allclose(stamp_of[span], np.arange(length) / fps, atol=1e-4):
            report.problems.append(f"{name}: timestamps are not frame_index / fps (fps={fps})")


def _column_problem(column: pa.ChunkedArray, key: str, feature: dict) -> str | None:
    """Why a parquet column does not hold what info.json declares for it (dtype, values per row), or None."""
    if feature["dtype"] == "image":
        return _image_column_problem(column, key, feature)
    declared = _arrow_dtype(feature["dtype"])
    if declared is None:
        return f"feature {key!r} declares dtype {feature['dtype']!r}, which is not a known parquet type"
    leaf = column.type
    while _is_list(leaf):
        leaf = leaf.value_type
    if leaf != declared:
        return f"feature {key!r} declares dtype {feature['dtype']} but the column holds {leaf}"
    size = int(np.prod(feature["shape"]))
    counts = np.concatenate([_values_per_row(chunk) for chunk in column.chunks] or [np.zeros(0, np.int64)])
    wrong = np.flatnonzero(counts != size)
    if wrong.size == 0:
        return None
    held = f"{counts.min()}..{counts.max()}" if counts.min() != counts.max() else str(counts[0])
    return (f"feature {key!r} declares shape {list(feature['shape'])} ({size} values per frame) but the column "
            f"holds {held} values per frame (first at row {wrong[0]})")


def _image_column_problem(column: pa.ChunkedArray, key: str, feature: dict) -> str | None:
    """An image feature is a struct {bytes, path} of encoded images whose size matches the declared shape."""
    if not (pa.types.is_struct(column.type) and column.type.get_field_index("bytes") >= 0):
        return f"image feature {key!r} must be a struct with encoded image 'bytes', the column holds {column.type}"
    first = next((cell for cell in column.to_pylist() if cell and cell.get("bytes")), None)
    if first is None:
        return None
    try:
        height, width, channels = fmt.decode_image(first["bytes"]).shape
    except fmt.DatasetFormatError as error:
        return f"image feature {key!r}: {error}"
    declared_h, declared_w = fmt.declared_size(feature)
    if (height, width) != (declared_h, declared_w):
        return (f"image feature {key!r} declares shape {list(feature['shape'])} (height {declared_h}, width "
                f"{declared_w}) but its images are {height}x{width} (height x width)")
    return None


def _arrow_dtype(dtype: str) -> pa.DataType | None:
    if dtype == "string":
        return pa.string()
    try:
        return pa.from_numpy_dtype(np.dtype(dtype))
    except (TypeError, pa.ArrowNotImplementedError):
        return None


def _is_list(dtype: pa.DataType) -> bool:
    return pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype)


def _values_per_row(array: pa.Array) -> np.ndarray:
    """Number of leaf values in each row of a (possibly nested) list array; 1 per row for plain values."""
    if not _is_list(array.type):
        return np.ones(len(array), np.int64)
    inner = np.cumsum(np.concatenate([[0], _values_per_row(array.flatten())]))
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return inner[offsets[1:]] - inner[offsets[:-1]]


def _check_videos(root: Path, info: dict, episodes: dict, report: CheckReport, count: bool) -> None:
    for key, feature in info["features"].items():
        if feature["dtype"] != "video":
            continue
        spans = _video_spans(root, info, key, episodes, report)
        for path, items in spans.items():
            if not path.is_file():
                report.problems.append(f"{path}: missing (episodes {[i[0] for i in items]})")
                continue
            if _geometry_problem(path, key, feature, report) or not count:
                continue
            _count_video_frames(path, items, info["fps"], report)


def _video_spans(root: Path, info: dict, key: str, episodes: dict,
                 report: CheckReport) -> dict[Path, list[tuple[int, float, float, int]]]:
    """Video file -> (episode_index, from_s, to_s, length) of each episode stored in it."""
    columns = [f"videos/{key}/{name}" for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    absent = [c for c in columns if c not in episodes]
    if absent or not info.get("video_path"):
        report.problems.append(f"meta/episodes: video feature {key!r} has no {absent or 'video_path in info.json'}")
        return {}
    spans: dict[Path, list[tuple[int, float, float, int]]] = {}
    for row, episode_index in enumerate(episodes["episode_index"]):
        path = root / info["video_path"].format(video_key=key, chunk_index=episodes[columns[0]][row],
                                                file_index=episodes[columns[1]][row])
        spans.setdefault(path, []).append((episode_index, episodes[columns[2]][row], episodes[columns[3]][row],
                                           episodes["length"][row]))
    return spans


def _geometry_problem(path: Path, key: str, feature: dict, report: CheckReport) -> bool:
    """Report (and return True) when the video stream's size differs from the declared shape or is unreadable."""
    try:
        height, width = video_size(path)
    except Exception as error:  # any container/codec failure is corruption of that file
        report.problems.append(f"{path}: unreadable video ({type(error).__name__}: {error})")
        return True
    declared_h, declared_w = fmt.declared_size(feature)
    if (height, width) == (declared_h, declared_w):
        return False
    report.problems.append(f"{path}: feature {key!r} declares shape {list(feature['shape'])} (height {declared_h}, "
                           f"width {declared_w}) but the video stream is {height}x{width} (height x width)")
    return True


def _count_video_frames(path: Path, items: list[tuple[int, float, float, int]], fps: int, report: CheckReport) -> None:
    for episode_index, from_s, to_s, length in items:
        if abs((to_s - from_s) * fps - length) > 0.5:
            report.problems.append(f"{path}: episode {episode_index} spans {to_s - from_s:.3f} s "
                                   f"but has {length} frames at {fps} fps")
            continue
        try:
            count = count_frames(path, from_s, to_s, fps)
        except Exception as error:
            report.problems.append(f"{path}: unreadable video ({type(error).__name__}: {error})")
            return
        if count != length:
            report.problems.append(f"{path}: episode {episode_index} has {count} video frames in "
                                   f"[{from_s:.3f}, {to_s:.3f}) s, expected {length}")


def _check_staging(root: Path, report: CheckReport) -> None:
    report.resumable = True
    try:
        staging = StagingArea(root)
    except Exception as error:
        report.problems.append(f"{root / STAGING_DIR}: unreadable staging spec ({error})")
        return
    keys = staging.keys()
    for key in keys:
        directory = staging.episode_dir(key)
        try:
            meta = json.loads((directory / EPISODE_FILE).read_text())
            rows = pq.read_metadata(directory / FRAMES_FILE).num_rows
        except Exception as error:
            report.problems.append(f"{directory}: staged episode unreadable ({error})")
            continue
        if rows != meta["length"]:
            report.problems.append(f"{directory / FRAMES_FILE}: {rows} rows, episode.json says {meta['length']}")
        for camera in staging.spec.cameras:
            if not (directory / f"{camera}.mp4").is_file():
                report.problems.append(f"{directory}: camera video {camera}.mp4 missing")
    report.notes.append(f"unfinished generation: {len(keys)} intact staged episodes; "
                        f"continue with `embodia data generate --resume --out {report.root}`")
