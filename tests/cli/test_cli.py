"""The `embodia` command: help, task listing, videos, and one-line errors."""

import subprocess
import sys

import numpy as np

from embodia.sim.video import read_video


def embodia(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embodia", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_the_command_groups():
    result = embodia("--help")
    assert result.returncode == 0
    for group in ("tasks", "sim", "quickstart"):
        assert group in result.stdout


def test_tasks_list_shows_the_tasks():
    result = embodia("tasks", "list")
    assert result.returncode == 0 and "cheetah-run" in result.stdout and "cartpole-swingup" in result.stdout


def test_sim_video_writes_a_playable_mp4(tmp_path):
    path = tmp_path / "cartpole.mp4"
    result = embodia("sim", "video", "--task", "cartpole-swingup", "--out", str(path), "--steps", "12",
                     "--width", "64", "--height", "48")
    assert result.returncode == 0, result.stderr
    frames = read_video(path)
    assert frames.shape == (12, 48, 64, 3) and np.ptp(frames) > 0


def test_unknown_task_is_one_clear_line_not_a_traceback(tmp_path):
    result = embodia("sim", "video", "--task", "cheetah-fly", "--out", str(tmp_path / "x.mp4"))
    assert result.returncode == 2
    assert "unknown task 'cheetah-fly'" in result.stderr and "Traceback" not in result.stderr


def test_sim_bench_reports_a_rate():
    result = embodia("sim", "bench", "--task", "cartpole-swingup", "--num-envs", "8", "--steps", "20")
    assert result.returncode == 0 and "env-steps/s" in result.stdout
