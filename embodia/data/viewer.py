"""A self-contained HTML page of a dataset (totals, success per episode, camera videos, named state/action plots),
and a local server that shows it with the dataset's own files and nothing else.

The page is written outside the dataset: a finished dataset is never modified after its manifest is written.
"""

from __future__ import annotations

import base64
import http.server
import io
import mimetypes
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from embodia.core.atomic import atomic_write_text
from embodia.core.errors import UserError
from embodia.core.pages import literal_text, number
from embodia.core.pages import render_page as render_template
from embodia.data import format as fmt
from embodia.data.reader import Dataset
from embodia.data.video import VideoConfig, encode_frames

MAX_STATE_LINES = 12  # more lines than this make a plot unreadable
STAT_DIMS = 8
STAT_FEATURES = ("observation.state", "action", "next.reward")
FILES_PREFIX = "/dataset/"  # where `serve_page` serves the dataset's own files


def _png(fig) -> str:
    buffer = io.BytesIO()
    literal_text(fig).savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


PLOTTED = ("observation.state", "action")


def _plotted(episode: dict) -> list[str]:
    return [key for key in PLOTTED if key in episode]


def episode_figure(episode: dict, fps: int, features: dict[str, dict] | None = None):
    """Matplotlib figure of one episode's state and action over time, each line named from info.json."""
    plt = _pyplot()
    features = features or {}
    keys = _plotted(episode)
    length = len(episode[keys[0]])
    t = np.arange(length) / fps
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 2.8), squeeze=False)
    for axis, key in zip(axes[0], keys):
        values = np.asarray(episode[key]).reshape(length, -1)
        names = fmt.feature_names(features.get(key, {}), values.shape[1])
        shown = min(MAX_STATE_LINES, values.shape[1])
        if shown > 10:  # the default cycle repeats after 10 colours
            axis.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        lines = axis.plot(t, values[:, :shown], linewidth=0.8)
        for line, name in zip(lines, names):
            line.set_label(name)
        title = key if shown == values.shape[1] else f"{key} (first {shown} of {values.shape[1]})"
        axis.set(title=title, xlabel="time (s)")
        axis.legend(fontsize=6, loc="upper right", ncol=1 + shown // 7)
    literal_text(fig).tight_layout()
    return fig


def episode_plot(episode: dict, fps: int, features: dict[str, dict] | None = None) -> str | None:
    """Base64 PNG of `episode_figure`, or None for a dataset with neither state nor action."""
    if not _plotted(episode):
        return None
    fig = episode_figure(episode, fps, features)
    data = _png(fig)
    _pyplot().close(fig)
    return data


def plot_description(episode: dict, features: dict[str, dict]) -> str:
    """Alt text of an episode plot: which series it draws, by name."""
    parts = []
    for key in _plotted(episode):
        size = np.asarray(episode[key]).reshape(len(episode[key]), -1).shape[1]
        parts.append(f"{key} over time: {', '.join(fmt.feature_names(features.get(key, {}), size)[:MAX_STATE_LINES])}")
    return "; ".join(parts)


def summary_plot(ds: Dataset) -> str:
    """Base64 PNG: episode lengths and per-episode success."""
    plt = _pyplot()
    lengths = np.asarray(ds.episodes_table["length"])
    success = np.asarray(ds.episodes_table.get("embodia/success", [False] * len(lengths)), dtype=bool)
    fig, ax = plt.subplots(figsize=(9, 2.2))
    ax.bar(np.arange(len(lengths)), lengths, color=np.where(success, "#2a9d8f", "#e76f51"))
    ax.set(title="episode length (green = success)", xlabel="episode", ylabel="frames")
    data = _png(fig)
    plt.close(fig)
    return data


def _video_src(frames: np.ndarray, fps: int) -> str:
    """An H.264 data URI of (T, H, W, 3) frames, playable in any browser."""
    with tempfile.TemporaryDirectory() as tmp:
        path = encode_frames(Path(tmp) / "clip.mp4", frames, fps, VideoConfig(encoder="libx264", crf=23, gop=30))
        return f"data:video/mp4;base64,{base64.b64encode(path.read_bytes()).decode()}"


def _numbers(values: Any) -> list[str]:
    return [number(v) for v in np.asarray(values, dtype=np.float64).ravel()[:STAT_DIMS]]


def _summary_rows(ds: Dataset) -> list[tuple[str, str]]:
    info = ds.info
    success = ds.episodes_table.get("embodia/success")
    rate = f"{np.mean(success):.0%}" if success else "n/a"
    return [("episodes", f"{info['total_episodes']:,}"), ("frames", f"{info['total_frames']:,}"),
            ("fps", str(info["fps"])), ("robot", str(info.get("robot_type"))),
            ("cameras", ", ".join(ds.cameras) or "none"), ("success rate", rate), ("tasks", "; ".join(ds.tasks))]


def _episode_context(ds: Dataset, index: int) -> dict[str, Any]:
    episode = ds.episode(index)
    extras = episode["info"]
    outcome = ("success" if extras.get("success") else "failure") if "success" in extras else ""
    frames = int(ds.episode_info(index)["length"])
    videos = [{"camera": camera, "width": episode[key].shape[2] * 2, "src": _video_src(episode[key], ds.fps)}
              for camera, key in ds.camera_keys.items()]
    return {"index": index, "outcome": outcome, "frames": f"{frames:,}", "seconds": f"{frames / ds.fps:.1f}",
            "task": episode["task"], "extras": [(str(k), str(v)) for k, v in extras.items()], "videos": videos,
            "plot": episode_plot(episode, ds.fps, ds.features), "plot_alt": plot_description(episode, ds.features)}


def _file_links(files_base: str | None) -> list[dict[str, str]]:
    if files_base is None:
        return []
    return [{"name": name, "href": files_base + quote(name)} for name in (fmt.INFO_PATH, fmt.STATS_PATH)]


def render_page(ds: Dataset, max_episodes: int = 12, files_base: str | None = None) -> str:
    """The HTML text of a dataset page (videos re-encoded as H.264 for any browser); every dataset string escaped.

    `files_base` is the URL of the dataset's root as seen from the page (links to its metadata files)."""
    stats = ds.stats
    return render_template(
        "dataset.html", title=f"Dataset {ds.root.name}: {ds.num_episodes:,} episodes, "
                             f"{ds.info['total_frames']:,} frames at {ds.info['fps']} fps",
        name=ds.root.name, root=str(ds.root), version=ds.info.get("codebase_version", ""),
        summary=_summary_rows(ds), files=_file_links(files_base), summary_plot=summary_plot(ds), stat_dims=STAT_DIMS,
        stats=[{"feature": key, "mean": _numbers(stats[key]["mean"]), "std": _numbers(stats[key]["std"])}
               for key in STAT_FEATURES if key in stats],
        total_episodes=ds.num_episodes,
        episodes=[_episode_context(ds, index) for index in range(min(max_episodes, ds.num_episodes))])


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def write_page(root: str | Path, out: str | Path | None = None, max_episodes: int = 12,
               files_base: str | None = None) -> Path:
    """Write the dataset page to `out` (default: DIR.html beside the dataset, never inside it); returns its path."""
    root = Path(root).resolve()
    out = Path(out).resolve() if out else Path(str(root) + ".html")
    if _inside(out, root):
        raise UserError(f"--out {out} is inside the dataset {root}; a finished dataset is never modified: "
                        "write the page elsewhere (the default is DIR.html beside it)")
    if files_base is None:
        files_base = quote(os.path.relpath(root, out.parent).replace(os.sep, "/")) + "/"
    ds = Dataset(root)
    try:
        text = render_page(ds, max_episodes, files_base)
    finally:
        ds.close()
    try:
        return atomic_write_text(out, text)
    except OSError as error:
        raise UserError(f"cannot write {out}: {error.strerror}; pass a writable --out") from None


# ---------------------------------------------------------------------------- serving


def dataset_files(root: Path) -> dict[str, Path]:
    """URL path -> file for every regular file of the dataset: no dotfiles, no symlinks, nothing outside it."""
    files = {}
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and not os.path.islink(os.path.join(directory, d)))
        for name in names:
            path = Path(directory) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            files[FILES_PREFIX + quote(path.relative_to(root).as_posix())] = path
    return files


class DatasetServer(http.server.ThreadingHTTPServer):
    """Serves exactly an allow-list of files (the page and the dataset's own) to requests addressed to it by name."""

    daemon_threads = True

    def __init__(self, page: Path, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.check_port(port)
        try:
            super().__init__((host, port), _AllowListHandler)
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port}: {error.strerror}; pick another --port") from None
        self.files = {"/": page, "/" + quote(page.name): page, **dataset_files(Path(root))}
        bound = self.server_address[1]
        self.allowed_hosts = {f"{name}:{bound}".lower() for name in ("127.0.0.1", "localhost", host)}

    @staticmethod
    def check_port(port: int) -> None:
        """Refuse a port number TCP cannot have, before any work is done."""
        if not 0 <= port <= 65535:
            raise UserError(f"--port {port} is not a TCP port; pick one in 1..65535 (0 picks a free one)")

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://{self.server_address[0]}:{self.server_address[1]}/"


class _AllowListHandler(http.server.BaseHTTPRequestHandler):
    server: DatasetServer
    server_version = "embodia"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._respond(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        if (self.headers.get("Host") or "").lower() not in self.server.allowed_hosts:
            self.send_error(403, "unknown Host")  # DNS rebinding: a foreign name pointing at 127.0.0.1
            return
        path = self.server.files.get(urlsplit(self.path).path)  # exact match: no decoding, no traversal
        if path is None:
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self' data: 'unsafe-inline'; frame-ancestors 'none'")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def serve_page(page: Path, root: str | Path, port: int, host: str = "127.0.0.1") -> None:
    """Serve the page and the dataset's own files on host:port until interrupted."""
    with DatasetServer(Path(page), Path(root), host, port) as server:
        print(f"serving {server.url} (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
