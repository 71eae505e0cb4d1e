"""Console pages for what the project made: training runs (learning curves, mean and band over seeds), datasets
(episodes with on-demand videos and named state/action plots, stats), evaluation reports and A/B comparisons
(videos, gate verdict), any artifact's files. Files are served through the API's download route."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from embodia.platform.api import routes
from embodia.platform.api.auth import Caller
from embodia.platform.api.console.pages import render
from embodia.platform.api.console.session import console_caller

router = APIRouter(prefix="/console", include_in_schema=False)
SHA = PathParam(pattern=r"^[0-9a-f]{64}$")
METRICS_FILE = "metrics.jsonl"
MAX_CURVE_POINTS = 1500
MAX_STATE_LINES = 16
EPISODES_PER_PAGE = 20
BOOKKEEPING = {"timestamp", "frame_index", "episode_index", "index", "task_index"}  # no statistics worth showing
KIND_PAGES = {"dataset": "datasets", "checkpoint": "runs", "report": "reports", "comparison": "reports",
              "gate": "reports"}
# Artifact files render in a sandbox (no scripts, an opaque origin): an uploaded HTML file cannot act as the console.
FILE_HEADERS = {"Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self' data:; "
                                           "style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}


def _artifact(request: Request, caller: Caller, sha256: str) -> dict[str, Any]:
    """The API's artifact detail (404 outside the project) with `file_index`: {name: index}."""
    detail = routes.get_artifact(request, sha256=sha256, caller=caller)
    detail["file_index"] = {f.name: f.index for f in detail["files"]}
    return detail


def _root(request: Request, sha256: str) -> Path:
    return request.app.state.store.artifacts.path(sha256)


def _file_url(sha256: str, index: int) -> str:
    return f"/console/artifacts/{sha256}/files/{index}"


# -------------------------------------------------------------------------------------------- any artifact


@router.get("/artifacts/{sha256}", response_class=HTMLResponse)
def artifact_page(request: Request, sha256: str = SHA) -> Response:
    """An artifact: its kind's own page when there is one, else its manifest, inputs and files."""
    caller = console_caller(request)
    detail = _artifact(request, caller, sha256)
    page = KIND_PAGES.get(detail["kind"])
    if page:
        return RedirectResponse(f"/console/{page}/{sha256}", status_code=303)
    return render(request, "artifact.html", caller, section="Lineage", title=f"{detail['kind']} {sha256[:12]}",
                  artifact=detail, summary=detail["manifest"].get("summary", {}))


@router.get("/artifacts/{sha256}/files/{index}")
def artifact_file(request: Request, sha256: str = SHA, index: int = PathParam(ge=0, le=10**6)) -> FileResponse:
    """One file of an artifact (HTTP Range requests answer 206): videos, reports, metadata."""
    caller = console_caller(request)
    response = routes.download_file(request, sha256=sha256, index=index, caller=caller)
    if response.media_type in ("text/html", "image/svg+xml", "application/xhtml+xml"):
        response.headers["Content-Disposition"] = response.headers.get("content-disposition", "").replace(
            "attachment", "inline")
    response.headers.update(FILE_HEADERS)
    return response


# ------------------------------------------------------------------------------------------ training runs


def _training_runs(request: Request, caller: Caller) -> list[dict[str, Any]]:
    """The project's checkpoints with their config; `group` is the config without its seed."""
    runs = []
    for item in routes.list_artifacts(request, kind="checkpoint", limit=200, caller=caller):
        detail = routes.get_artifact(request, sha256=item["sha256"], caller=caller)
        config = dict(detail["manifest"].get("config") or {})
        seed = config.pop("seed", None)
        runs.append({**item, "config": config, "seed": seed, "summary": detail["manifest"].get("summary") or {},
                     "group": json.dumps(config, sort_keys=True, default=str),
                     "has_metrics": any(f.name == METRICS_FILE for f in detail["files"])})
    return runs


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request) -> Response:
    """Training runs (checkpoints) of the project; runs that differ only in seed form one group."""
    caller = console_caller(request)
    runs = _training_runs(request, caller)
    return render(request, "runs.html", caller, section="Runs", title="Training runs", runs=runs)


@router.get("/runs/{sha256}", response_class=HTMLResponse)
def run_page(request: Request, sha256: str = SHA) -> Response:
    """Learning curves of a run and of its seed group: mean line, min–max band, values on hover."""
    caller = console_caller(request)
    _artifact(request, caller, sha256)
    runs = _training_runs(request, caller)
    this = next((run for run in runs if run["sha256"] == sha256), None)
    if this is None:
        raise routes.NotFound(f"no training run {sha256} in this project")
    group = [run for run in runs if run["group"] == this["group"] and run["has_metrics"]]
    curves = {run["sha256"]: _read_metrics(_root(request, run["sha256"]) / METRICS_FILE) for run in group}
    charts = [_curve_chart(key, curves) for key in _metric_keys(curves)]
    return render(request, "run.html", caller, section="Runs", title=f"Training run {sha256[:12]}", run=this,
                  group=group, charts=charts, uplot=True)


def _read_metrics(path: Path) -> list[dict[str, float]]:
    """The finite numbers of each line of a metrics.jsonl (bad lines skipped: a run may still be writing)."""
    rows = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and _finite(row.get("step")):
            rows.append({k: float(v) for k, v in row.items() if _finite(v)})
    return rows


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metric_keys(curves: dict[str, list[dict[str, float]]]) -> list[str]:
    keys = {key for rows in curves.values() for row in rows for key in row if key != "step"}
    return sorted(keys)


def _curve_chart(key: str, curves: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """uPlot data for one metric: x = step; the mean over seeds and, with several seeds, its min–max band."""
    per_seed = [{row["step"]: row[key] for row in rows if key in row} for rows in curves.values()]
    per_seed = [values for values in per_seed if values]
    steps = sorted({step for values in per_seed for step in values})
    if len(steps) > MAX_CURVE_POINTS:
        stride = math.ceil(len(steps) / MAX_CURVE_POINTS)
        steps = steps[::stride] + ([steps[-1]] if (len(steps) - 1) % stride else [])
    columns: list[list[float | None]] = [[float(s) for s in steps]]
    series = [{"label": f"{key} (mean of {len(per_seed)} seeds)" if len(per_seed) > 1 else key,
               "band": len(per_seed) > 1}]
    at = [[values[s] for values in per_seed if s in values] for s in steps]
    columns.append([sum(v) / len(v) if v else None for v in at])
    if len(per_seed) > 1:
        columns.append([min(v) if v else None for v in at])
        columns.append([max(v) if v else None for v in at])
    return {"title": key, "x_label": "step", "y_label": key, "series": series, "data": columns}


# ----------------------------------------------------------------------------------------------- datasets


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request) -> Response:
    """The project's datasets with their size in episodes and frames."""
    caller = console_caller(request)
    datasets = []
    for item in routes.list_artifacts(request, kind="dataset", limit=200, caller=caller):
        summary = routes.get_artifact(request, sha256=item["sha256"], caller=caller)["manifest"].get("summary") or {}
        datasets.append({**item, "summary": summary})
    return render(request, "datasets.html", caller, section="Datasets", title="Datasets", datasets=datasets)


def _open_dataset(request: Request, sha256: str):
    from embodia.data.reader import Dataset

    return Dataset(_root(request, sha256))


@router.get("/datasets/{sha256}", response_class=HTMLResponse)
def dataset_page(request: Request, sha256: str = SHA, page: int = Query(0, ge=0, le=10**6)) -> Response:
    """A dataset: summary, per-feature statistics, and its episodes (a page at a time; each opens on demand)."""
    caller = console_caller(request)
    detail = _artifact(request, caller, sha256)
    ds = _open_dataset(request, sha256)
    try:
        first = page * EPISODES_PER_PAGE
        episodes = [_episode_row(ds, i) for i in range(first, min(ds.num_episodes, first + EPISODES_PER_PAGE))]
        return render(request, "dataset.html", caller, section="Datasets", title=f"Dataset {sha256[:12]}",
                      artifact=detail, info=ds.info, cameras=ds.cameras, tasks=ds.tasks, stats=_stats_rows(ds),
                      episodes=episodes, page=page, pages=math.ceil(ds.num_episodes / EPISODES_PER_PAGE),
                      uplot=True)
    finally:
        ds.close()


def _episode_row(ds, index: int) -> dict[str, Any]:
    info = ds.episode_info(index)
    return {"index": index, "length": int(info["length"]), "seconds": int(info["length"]) / ds.fps,
            "success": info.get("embodia/success"), "return": info.get("embodia/return"),
            "task": "; ".join(info.get("tasks") or [])}


def _stats_rows(ds) -> list[dict[str, Any]]:
    """Mean and std of each numeric feature, dimension by dimension with its name (first 16 shown)."""
    from embodia.data import format as data_format

    rows = []
    for key in ds.data_keys:
        if key in BOOKKEEPING:
            continue
        stats = ds.stats.get(key)
        if not stats or "mean" not in stats:
            continue
        mean = [float(v) for v in list(stats["mean"].ravel())[:MAX_STATE_LINES]]
        std = [float(v) for v in list(stats.get("std", stats["mean"]).ravel())[:MAX_STATE_LINES]]
        names = data_format.feature_names(ds.features.get(key, {}), int(stats["mean"].size))[:MAX_STATE_LINES]
        rows.append({"feature": key, "dims": list(zip(names, mean, std)), "total": int(stats["mean"].size)})
    return rows


@router.get("/datasets/{sha256}/episodes/{index}", response_class=HTMLResponse)
def episode_fragment(request: Request, sha256: str = SHA, index: int = PathParam(ge=0, le=10**9)) -> Response:
    """One episode (htmx fragment): its camera videos (loaded only when played) and state/action plots."""
    caller = console_caller(request)
    detail = _artifact(request, caller, sha256)
    ds = _open_dataset(request, sha256)
    try:
        if index >= ds.num_episodes:
            raise routes.NotFound(f"dataset {sha256[:12]} has no episode {index}")
        episode = ds.episode(index, images=False)
        videos = _episode_videos(ds, detail, index)
        charts = [_series_chart(ds, episode, key) for key in ("observation.state", "action") if key in episode]
        return render(request, "_episode.html", caller, sha256=sha256, episode=_episode_row(ds, index),
                      videos=videos, charts=charts)
    finally:
        ds.close()


def _episode_videos(ds, detail: dict[str, Any], index: int) -> list[dict[str, Any]]:
    """Each camera's MP4 file with a media fragment for this episode's time span."""
    from embodia.data import format as data_format

    info, videos = ds.episode_info(index), []
    for camera, key in ds.camera_keys.items():
        chunk, file = info.get(f"videos/{key}/chunk_index"), info.get(f"videos/{key}/file_index")
        if chunk is None or file is None:
            continue
        name = data_format.VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
        if name not in detail["file_index"]:
            continue
        start, stop = info.get(f"videos/{key}/from_timestamp", 0.0), info.get(f"videos/{key}/to_timestamp", "")
        videos.append({"camera": camera, "src": f"{_file_url(detail['sha256'], detail['file_index'][name])}"
                                                 f"#t={start},{stop}"})
    return videos


def _series_chart(ds, episode: dict[str, Any], key: str) -> dict[str, Any]:
    """uPlot data of one vector feature over time, each line named from info.json (first 16 dimensions)."""
    from embodia.data import format as data_format

    values = episode[key].reshape(len(episode[key]), -1)
    names = data_format.feature_names(ds.features.get(key, {}), values.shape[1])
    shown = min(values.shape[1], MAX_STATE_LINES)
    time_s = [round(i / ds.fps, 4) for i in range(values.shape[0])]
    data = [time_s] + [[float(v) if math.isfinite(v) else None for v in values[:, d]] for d in range(shown)]
    title = key if shown == values.shape[1] else f"{key} (first {shown} of {values.shape[1]})"
    return {"title": title, "x_label": "time (s)", "y_label": key,
            "series": [{"label": name, "band": False} for name in names[:shown]], "data": data}


# ------------------------------------------------------------------------------------------------ reports


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request) -> Response:
    """Evaluation reports and A/B comparisons (with their gate verdicts) of the project."""
    caller = console_caller(request)
    items = []
    for kind in ("report", "comparison", "gate"):
        for item in routes.list_artifacts(request, kind=kind, limit=200, caller=caller):
            manifest = routes.get_artifact(request, sha256=item["sha256"], caller=caller)["manifest"]
            items.append({**item, "summary": manifest.get("summary") or {}})
    items.sort(key=lambda item: item["created_at"], reverse=True)
    return render(request, "reports.html", caller, section="Reports", title="Evaluation reports", items=items)


@router.get("/reports/{sha256}", response_class=HTMLResponse)
def report_page(request: Request, sha256: str = SHA) -> Response:
    """A report (per-scenario success and return with 95 % intervals, best/worst videos) or a comparison/gate."""
    caller = console_caller(request)
    detail = _artifact(request, caller, sha256)
    root = _root(request, sha256)
    results = _json_file(root / "results.json")
    gate = _json_file(root / "gate.json")
    comparison = _json_file(root / "comparison.json")
    videos = [{"name": _video_caption(name), "src": _file_url(sha256, index)}
              for name, index in detail["file_index"].items() if _is_report_video(name)]
    html_report = detail["file_index"].get("report.html")
    models = [v for v in routes.list_models(request, name=None, caller=caller)
              if sha256 in (v["report_sha256"], v["artifact_sha256"])]
    return render(request, "report.html", caller, section="Reports", title=f"{detail['kind']} {sha256[:12]}",
                  artifact=detail, summary=detail["manifest"].get("summary") or {},
                  scenarios=(results or {}).get("scenarios", []), gate=gate, models=models, comparison=comparison, videos=videos,
                  html_report=_file_url(sha256, html_report) if html_report is not None else None)


def _is_report_video(name: str) -> bool:
    """A report's `videos/<scenario>_<best|worst>.mp4`, or either side's in an A/B comparison."""
    return name.endswith(".mp4") and (name.startswith("videos/") or name.split("/")[1:2] == ["videos"])


def _video_caption(name: str) -> str:
    """`candidate/videos/nominal_best.mp4` -> `candidate · nominal · best`."""
    return name.replace("/videos/", "/").removeprefix("videos/").removesuffix(".mp4").replace("/", " · ").replace(
        "_", " · ")


def _json_file(path: Path) -> Any:
    """A JSON file of an artifact, or None when absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
