"""Self-contained HTML reports of suite runs and A/B comparisons: tables, CI bar charts, learning curve, videos.

Pages are rendered from embodia/templates with autoescaping, so suite, scenario and policy names stay text."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from urllib.parse import quote

import numpy as np

from embodia.core.pages import literal_text, render_page
from embodia.core.atomic import atomic_write_text as write_atomic
from embodia.evaluate.results import Comparison, Results

_MAX_EMBED_BYTES = 3_000_000  # videos larger than this are linked, not embedded
_REPORT_NOTE = "95 % Wilson intervals for success, Student-t intervals for return"


def write_report(results: Results, out_dir: str | Path) -> Path:
    """Write report.html (and chart.png) for one suite run into `out_dir`; returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = _bar_chart([results], [results.policy])
    (out_dir / "chart.png").write_bytes(chart)
    text = render_page(
        "report.html", title=f"Evaluation of {results.policy} on suite {results.suite.name}: success and return of "
              f"{len(results.scenarios)} scenarios", suite=results.suite.name,
        task=results.suite.task, policy=results.policy, seed=results.suite.seed, criterion=results.suite.success_criterion,
        summary=_summary_table(results), chart=_b64(chart), learning=_learning_section(results, out_dir),
        scenarios=_scenario_sections(results, out_dir, prefix=""))
    return write_atomic(out_dir / "report.html", text)


def write_comparison_report(comparison: Comparison, out_dir: str | Path) -> Path:
    """Write report.html for an A/B comparison: the gate, per-scenario decisions, both runs side by side."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    a, b = comparison.baseline, comparison.candidate
    chart = _bar_chart([a, b], [f"A: {a.policy}", f"B: {b.policy}"])
    (out_dir / "chart.png").write_bytes(chart)
    text = render_page(
        "comparison.html", title=f"A/B comparison on suite {a.suite.name}: {b.policy} (B) against {a.policy} (A), "
              f"gate {comparison.verdict}",
        suite=a.suite.name, task=a.suite.task, baseline=a.policy, candidate=b.policy, metric=comparison.metric,
        margin=comparison.margin, alpha=comparison.alpha, verdict=comparison.verdict,
        exit_code=1 if comparison.worse else 0, rule=comparison.to_dict()["rule"],
        decisions=_decision_table(comparison), chart=_b64(chart), scenarios=_side_by_side(comparison, out_dir))
    return write_atomic(out_dir / "report.html", text)


# ---------------------------------------------------------------------------- tables (plain text; the template escapes)


def _table(head: tuple[str, ...], rows: list[list], numeric: tuple[int, ...]) -> dict:
    return {"head": head, "rows": rows, "numeric": numeric}


def _summary_table(results: Results) -> dict:
    head = ("scenario", "episodes", "success rate [95 % CI]", "mean return [95 % CI]", "mean length (steps)",
            "time to success (s)", "failure modes")
    rows = []
    for scenario in results.scenarios:
        s = scenario.summary()
        rows.append([scenario.name, f"{s['episodes']:,}", _rate(s), _ret(s), f"{s['length_mean']:.1f}",
                     _seconds(s["time_to_success_s_mean"]), _modes(s["failure_modes"])])
    return _table(head, rows, numeric=(1, 2, 3, 4, 5))


def _decision_table(comparison: Comparison) -> dict:
    head = ("scenario", "A success", "B success", "Δ success [95 % CI]", "McNemar p (Holm)", "A return", "B return",
            "Δ return [95 % CI]", "Wilcoxon p (Holm)", "verdict")
    rows = []
    for item in [*comparison.scenarios, comparison.overall]:
        s, r = item.success, item.returns
        name = {"text": "overall (pooled)", "cls": "", "strong": True} if item is comparison.overall else item.name
        rows.append([name, f"{s.baseline:.1%}", f"{s.candidate:.1%}",
                     f"{s.difference:+.1%} [{s.difference_low:+.1%}, {s.difference_high:+.1%}]",
                     f"{s.p_value:.3g} ({s.p_adjusted:.3g})", f"{r.baseline:.1f}", f"{r.candidate:.1f}",
                     f"{r.difference:+.1f} [{r.difference_low:+.1f}, {r.difference_high:+.1f}]",
                     f"{r.p_value:.3g} ({r.p_adjusted:.3g})", {"text": item.verdict, "cls": item.verdict}])
    return _table(head, rows, numeric=tuple(range(1, 9)))


def _side_by_side(comparison: Comparison, out_dir: Path) -> list[dict]:
    sections = []
    for a, b in zip(comparison.baseline.scenarios, comparison.candidate.scenarios):
        sa, sb = a.summary(), b.summary()
        rows = [["success rate [95 % CI]", _rate(sa), _rate(sb)], ["mean return [95 % CI]", _ret(sa), _ret(sb)],
                ["mean length (steps)", f"{sa['length_mean']:.1f}", f"{sb['length_mean']:.1f}"],
                ["time to success (s)", _seconds(sa["time_to_success_s_mean"]), _seconds(sb["time_to_success_s_mean"])],
                ["failure modes", _modes(sa["failure_modes"]), _modes(sb["failure_modes"])]]
        sections.append({"name": a.name, "table": _table(("", "A (baseline)", "B (candidate)"), rows, numeric=(1, 2)),
                         "videos": _videos(a, out_dir, "baseline/", "A") + _videos(b, out_dir, "candidate/", "B")})
    return sections


def _scenario_sections(results: Results, out_dir: Path, prefix: str) -> list[dict]:
    sections = []
    for scenario in results.scenarios:
        conditions = results.suite.scenarios[[s.name for s in results.suite.scenarios].index(scenario.name)]
        changed = conditions.model_dump(exclude_defaults=True, exclude={"name", "description"})
        sections.append({"name": scenario.name, "description": scenario.description,
                         "conditions": json.dumps(changed) if changed else "nominal conditions",
                         "videos": _videos(scenario, out_dir, prefix, "")})
    return sections


def _videos(scenario, out_dir: Path, prefix: str, label: str) -> list[dict]:
    clips = []
    for kind, relative in scenario.videos.items():
        path = out_dir / prefix / relative
        if not path.is_file():
            continue
        replay = scenario.replay.get(kind, {})
        caption = (f"{label} {kind} episode #{replay.get('episode')} (seed {replay.get('seed')}), "
                   f"return {replay.get('return', float('nan')):.1f}"
                   f"{'' if replay.get('reproduced', True) else ' — replay differed'}")
        data = path.read_bytes()
        link = quote(prefix + relative)  # a relative URL: a name can never become a scheme such as javascript:
        source = f"data:video/mp4;base64,{_b64(data)}" if len(data) <= _MAX_EMBED_BYTES else link
        clips.append({"src": source, "caption": caption.strip(), "link": link})
    return clips


def _learning_section(results: Results, out_dir: Path) -> dict | None:
    if not results.metrics_jsonl or not Path(results.metrics_jsonl).is_file():
        return None
    png = _learning_curve(Path(results.metrics_jsonl))
    if png is None:
        return None
    (out_dir / "learning_curve.png").write_bytes(png)
    path = Path(results.metrics_jsonl).resolve()
    return {"path": str(results.metrics_jsonl), "href": path.as_uri(), "png": _b64(png)}


# ---------------------------------------------------------------------------- charts


def _bar_chart(runs: list[Results], labels: list[str]) -> bytes:
    """PNG: success rate with Wilson CIs and mean return with t CIs, grouped by scenario, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.name for s in runs[0].scenarios]
    x = np.arange(len(names))
    width = 0.8 / len(runs)
    figure, (ax_success, ax_return) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(names) + 4), 3.8))
    for k, (run, label) in enumerate(zip(runs, labels)):
        summaries = [s.summary() for s in run.scenarios]
        rate = np.array([s["success_rate"] for s in summaries])
        ci = np.array([s["success_ci95"] for s in summaries])
        ret = np.array([s["return_mean"] for s in summaries])
        ret_ci = np.array([s["return_ci95"] for s in summaries])
        offset = x - 0.4 + width * (k + 0.5)
        ax_success.bar(offset, rate, width, yerr=_error_bars(rate, ci), capsize=3, label=label)
        ax_return.bar(offset, ret, width, yerr=_error_bars(ret, ret_ci), capsize=3, label=label)
    ax_success.set(ylim=(0, 1.05), ylabel="success rate (95 % Wilson CI)", title="success")
    ax_return.set(ylabel="mean episode return (95 % CI)", title="return")
    for axis in (ax_success, ax_return):
        axis.set_xticks(x, names, rotation=20, ha="right")
        axis.grid(axis="y", alpha=0.3)
    handles, legend_labels = ax_success.get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="upper center", ncol=len(runs), fontsize=8, frameon=False)
    literal_text(figure).tight_layout(rect=(0, 0, 1, 0.92))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _error_bars(value: np.ndarray, interval: np.ndarray) -> np.ndarray:
    """(2, k) non-negative distances from each value to its interval's ends (rounding can cross zero)."""
    return np.nan_to_num(np.clip(np.stack([value - interval[:, 0], interval[:, 1] - value]), 0.0, None))


def _learning_curve(path: Path) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        step = record.get("step")
        for key in ("charts/episode_return", "charts/success_rate"):
            if step is not None and key in record:
                series.setdefault(key, []).append((step, record[key]))
    if not series:
        return None
    figure, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.2), squeeze=False)
    for axis, (key, points) in zip(axes[0], sorted(series.items())):
        steps, values = zip(*points)
        axis.plot(steps, values)
        axis.set(xlabel="env steps", title=key)
        axis.grid(alpha=0.3)
    literal_text(figure).tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- small helpers


def _rate(summary: dict) -> str:
    low, high = summary["success_ci95"]
    return f"{summary['success_rate']:.1%} [{low:.1%}, {high:.1%}]"


def _ret(summary: dict) -> str:
    low, high = summary["return_ci95"]
    return f"{summary['return_mean']:.1f} [{low:.1f}, {high:.1f}]"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _modes(modes: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count}" for name, count in modes.items()) or "—"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

