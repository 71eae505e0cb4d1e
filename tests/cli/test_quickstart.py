"""The quickstart end to end: every step writes what it promises, and the trained policy beats random."""

import json
import subprocess
import sys

import pytest

from embodia.sim.video import read_video


@pytest.mark.slow
def test_quickstart_runs_the_whole_loop(tmp_path):
    result = subprocess.run([sys.executable, "-m", "embodia", "quickstart", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == ["simulate", "data", "train", "evaluate"]
    assert summary["simulate"]["expert_success"] and not summary["simulate"]["random_success"]
    assert summary["data"]["episodes"] == 10 and (tmp_path / "dataset" / "meta" / "info.json").exists()
    assert (tmp_path / "dataset.html").stat().st_size > 10_000
    assert summary["train"]["trained_return"] > summary["train"]["random_return"] + 20
    assert summary["evaluate"]["verdict"] == "better"
    assert "nominal" in (tmp_path / "eval" / "report.html").read_text()
    frames = read_video(tmp_path / "train_random_vs_ppo.mp4")
    assert frames.shape[1:] == (256, 512, 3)


def test_unknown_quickstart_step_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "embodia", "quickstart", "--out", str(tmp_path), "--only", "fly"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown quickstart step" in result.stderr and "Traceback" not in result.stderr
