"""Reports: HTML with every scenario, embedded chart and videos, results.json, learning curve when present."""

from __future__ import annotations

import json

from embodia.evaluate.report import write_report
from embodia.sim.video import read_video


def test_report_files_exist_and_name_every_scenario(lqr_run):
    out = lqr_run.out_dir
    html = (out / "report.html").read_text()
    for scenario in lqr_run.scenarios:
        assert f"<td>{scenario.name}</td>" in html and f"<h3>{scenario.name}</h3>" in html
    assert html.count("data:image/png;base64,") >= 1 and "data:video/mp4;base64," in html
    assert "95 % Wilson" in html and "pole_fell" in html
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_videos_show_the_replayed_episodes(lqr_run):
    nominal = lqr_run.scenario("nominal")
    frames = read_video(lqr_run.out_dir / nominal.videos["best"])
    assert frames.shape[1:] == (72, 96, 3) and frames.shape[0] > 30 and frames.std() > 1.0
    fallen = read_video(lqr_run.out_dir / lqr_run.scenario("big-push").videos["worst"])
    assert fallen.shape[0] < frames.shape[0]  # the episode ended when the pole fell


def test_learning_curve_appears_when_metrics_jsonl_exists(lqr_run, tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps({"step": i * 100, "charts/episode_return": float(i)}) for i in range(5)))
    lqr_run.metrics_jsonl = str(metrics)
    try:
        write_report(lqr_run, tmp_path / "report")
    finally:
        lqr_run.metrics_jsonl = None
    assert "Learning curve" in (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "report" / "learning_curve.png").is_file()
