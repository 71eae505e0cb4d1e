"""`embodia data` through the real CLI entry point: exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EMBODIA = str(Path(sys.executable).with_name("embodia"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EMBODIA, "data", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["generate", "--task", "no-such-task", "--out", "{tmp}/a"], "unknown task 'no-such-task'"),
    (["generate", "--task", "arm-reach", "--cameras", "top", "--out", "{tmp}/b"], "unknown camera(s) ['top']"),
    (["generate", "--task", "arm-reach", "--image-size", "33", "--out", "{tmp}/c"], "must be even"),
    (["generate", "--task", "cartpole-swingup", "--out", "/proc/embodia-ds"], "cannot create"),
    (["check", "{tmp}"], "is not a LeRobot dataset"),
    (["show", "{tmp}"], "is not a LeRobot dataset"),
])
def test_bad_arguments_give_one_error_line(tmp_path, args, message):
    result = run(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


def test_generate_check_show_round_trip(tmp_path):
    out = tmp_path / "ds"
    result = run("generate", "--task", "cartpole-swingup", "--episodes", "2", "--cameras", "fixed",
                 "--image-size", "32", "--policy", "random", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "2 episodes" in result.stdout
    check = run("check", str(out))
    assert check.returncode == 0 and "ok" in check.stdout
    again = run("generate", "--task", "cartpole-swingup", "--out", str(out))
    assert again.returncode == 2 and "already holds a finished dataset" in again.stderr
    page = tmp_path / "page.html"
    shown = run("show", str(out), "--out", str(page))
    assert shown.returncode == 0 and page.stat().st_size > 1000


def test_check_exits_1_on_corruption(synthetic_dataset, tmp_path):
    import shutil

    target = tmp_path / "ds"
    shutil.copytree(synthetic_dataset[0], target)
    (target / "meta/episodes/chunk-000/file-000.parquet").write_bytes(b"garbage")
    result = run("check", str(target))
    assert result.returncode == 1
    assert "meta/episodes/chunk-000/file-000.parquet" in result.stdout
