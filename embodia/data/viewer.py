"""A self-contained HTML page of a dataset: totals, success per episode, camera videos and state/action plots."""

from __future__ import annotations

import base64
import html
import io
import tempfile
from pathlib import Path

import numpy as np

from embodia.data.reader import Dataset
from embodia.data.video import VideoConfig, encode_frames


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def episode_plot(episode: dict, fps: int) -> str:
    """Base64 PNG of one episode's state and action over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(episode["action"])) / fps
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
    state = np.asarray(episode["observation.state"]).reshape(len(t), -1)
    axes[0].plot(t, state[:, : min(12, state.shape[1])], linewidth=0.8)
    axes[0].set(title=f"observation.state (first {min(12, state.shape[1])} of {state.shape[1]})", xlabel="time (s)")
    action = np.asarray(episode["action"]).reshape(len(t), -1)
    axes[1].plot(t, action, linewidth=0.9)
    axes[1].set(title="action", xlabel="time (s)")
    axes[1].legend([f"a{i}" for i in range(action.shape[1])], fontsize=6, loc="upper right")
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def summary_plot(ds: Dataset) -> str:
    """Base64 PNG: episode lengths and per-episode success."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = np.asarray(ds.episodes_table["length"])
    success = np.asarray(ds.episodes_table.get("embodia/success", [False] * len(lengths)), dtype=bool)
    fig, ax = plt.subplots(figsize=(9, 2.2))
    ax.bar(np.arange(len(lengths)), lengths, color=np.where(success, "#2a9d8f", "#e76f51"))
    ax.set(title="episode length (green = success)", xlabel="episode", ylabel="frames")
    data = _png(fig)
    plt.close(fig)
    return data


def _video_tag(frames: np.ndarray, fps: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = encode_frames(Path(tmp) / "clip.mp4", frames, fps, VideoConfig(encoder="libx264", crf=23, gop=30))
        data = base64.b64encode(path.read_bytes()).decode()
    return f'<video controls loop muted autoplay playsinline width="{frames.shape[2] * 2}" src="data:video/mp4;base64,{data}"></video>'


def render_page(ds: Dataset, max_episodes: int = 12) -> str:
    """The HTML text of a dataset page (videos re-encoded as H.264 for any browser)."""
    info = ds.info
    table = ds.episodes_table
    success = table.get("embodia/success")
    rate = f"{np.mean(success):.0%}" if success else "n/a"
    rows = [("episodes", info["total_episodes"]), ("frames", info["total_frames"]), ("fps", info["fps"]),
            ("robot", info.get("robot_type")), ("cameras", ", ".join(ds.cameras) or "none"), ("success rate", rate),
            ("tasks", "; ".join(ds.tasks))]
    stats = ds.stats
    stat_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{np.round(np.asarray(v['mean']).ravel()[:8], 3).tolist()}</td>"
                        f"<td>{np.round(np.asarray(v['std']).ravel()[:8], 3).tolist()}</td></tr>"
                        for k, v in stats.items() if k in ("observation.state", "action", "next.reward"))
    parts = [f"<h1>{html.escape(str(ds.root))}</h1>", "<table>",
             *[f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows], "</table>",
             f'<img src="data:image/png;base64,{summary_plot(ds)}">',
             "<h2>statistics (first 8 dims)</h2><table><tr><th>feature</th><th>mean</th><th>std</th></tr>",
             stat_rows, "</table>", "<h2>episodes</h2>"]
    for index in range(min(max_episodes, ds.num_episodes)):
        episode = ds.episode(index)
        extras = episode["info"]
        badge = ("success" if extras.get("success") else "failure") if "success" in extras else ""
        parts.append(f'<div class="ep"><h3>episode {index} <span class="{badge}">{badge}</span></h3>'
                     f"<p>{len(episode['action'])} frames, task: {html.escape(episode['task'])}, "
                     f"{html.escape(', '.join(f'{k}={v}' for k, v in extras.items()))}</p>")
        for camera in ds.cameras:
            parts.append(f"<figure>{_video_tag(episode[f'observation.images.{camera}'], ds.fps)}"
                         f"<figcaption>{camera}</figcaption></figure>")
        parts.append(f'<img src="data:image/png;base64,{episode_plot(episode, ds.fps)}"></div>')
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}figure{display:inline-block;margin:4px}"
             ".success{color:#2a9d8f}.failure{color:#e76f51}.ep{border-top:1px solid #ddd;margin-top:1em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>embodia dataset</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def write_page(root: str | Path, out: str | Path | None = None, max_episodes: int = 12) -> Path:
    """Write the dataset page to `out` (default: DIR.html beside the dataset); returns its path."""
    ds = Dataset(root)
    out = Path(out) if out else Path(str(Path(root).resolve()) + ".html")
    text = render_page(ds, max_episodes)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text)
    except OSError as error:
        raise PermissionError(f"cannot write {out}: {error.strerror}; pass a writable --out") from None
    tmp.replace(out)
    ds.close()
    return out


def serve_page(page: Path, port: int) -> None:
    """Serve the page's directory over HTTP until interrupted."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving http://127.0.0.1:{port}/{page.name} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
