"""Validate a dataset directory: schema, totals, index continuity, readable parquet, video frames vs timestamps.

Every problem is reported with the file and the episode it concerns; an unfinished generation is reported
as resumable with the number of intact staged episodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embodia.data import format as fmt
from embodia.data.video import count_frames
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


def check_dataset(root: str | Path, videos: bool = True) -> CheckReport:
    """Check the dataset (or unfinished generation) at `root`; never raises on corruption, reports it."""
    root = Path(root)
    report = CheckReport(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    if not (root / fmt.INFO_PATH).is_file():
        if (root / STAGING_DIR).is_dir():
            _check_staging(root, report)
            return report
        raise fmt.DatasetFormatError(f"{root} is not a LeRobot dataset: no {fmt.INFO_PATH} and no unfinished generation")
    try:
        info = json.loads((root / fmt.INFO_PATH).read_text())
    except json.JSONDecodeError as error:
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
    if videos:
        _check_videos(root, info, episodes, report)
    report.notes.append(f"{info['total_episodes']} episodes, {info['total_frames']} frames, "
                        f"{len([f for f in info['features'].values() if f['dtype'] == 'video'])} camera stream(s)")
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
    features = [k for k, f in info["features"].items() if f["dtype"] not in ("video", "image")]
    for path in paths:
        table = _read_parquet(path, report)
        if table is None:
            continue
        absent = [k for k in features if k not in table.column_names]
        if absent:
            report.problems.append(f"{path}: columns {absent} declared in info.json are missing")
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


def _check_videos(root: Path, info: dict, episodes: dict, report: CheckReport) -> None:
    fps = info["fps"]
    for key, feature in info["features"].items():
        if feature["dtype"] != "video":
            continue
        spans: dict[Path, list[tuple[int, float, float, int]]] = {}
        for row, episode_index in enumerate(episodes["episode_index"]):
            path = root / info["video_path"].format(video_key=key, chunk_index=episodes[f"videos/{key}/chunk_index"][row],
                                                    file_index=episodes[f"videos/{key}/file_index"][row])
            spans.setdefault(path, []).append((episode_index, episodes[f"videos/{key}/from_timestamp"][row],
                                               episodes[f"videos/{key}/to_timestamp"][row], episodes["length"][row]))
        for path, items in spans.items():
            if not path.is_file():
                report.problems.append(f"{path}: missing (episodes {[i[0] for i in items]})")
                continue
            for episode_index, from_s, to_s, length in items:
                if abs((to_s - from_s) * fps - length) > 0.5:
                    report.problems.append(f"{path}: episode {episode_index} spans {to_s - from_s:.3f} s "
                                           f"but has {length} frames at {fps} fps")
                    continue
                try:
                    count = count_frames(path, from_s, to_s, fps)
                except Exception as error:
                    report.problems.append(f"{path}: unreadable video ({type(error).__name__}: {error})")
                    break
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
                        f"continue with `embodia data generate --resume --out {root}`")
