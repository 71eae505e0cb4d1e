"""`embodia run`: a pipeline file run twice through the CLI (the second time all cached), its dry run, and a
bad field reported as one line with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MINI = """
name: mini
steps:
  demos:
    type: generate
    config: {task: arm-reach, episodes: 2, envs_per_worker: 2}
  eval:
    type: evaluate
    config: {suite: arm-reach, episodes: 2, scenarios: [nominal], videos: false, policy: random}
"""


def embodia(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBODIA_HOME": str(cwd / ".embodia"), "COLUMNS": "200"}
    env.pop("EMBODIA_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "embodia", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_run_twice_then_everything_is_cached(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text(MINI)
    first = embodia(tmp_path, "run", "mini.yaml")
    assert first.returncode == 0, first.stderr[-2000:] + first.stdout[-2000:]
    assert "ran demos (generate)" in first.stdout and "ran eval (evaluate)" in first.stdout
    assert "registry: sqlite:///" in first.stdout and "report (eval):" in first.stdout
    plan = embodia(tmp_path, "run", "mini.yaml", "--dry-run")
    assert plan.returncode == 0 and plan.stdout.count(" hit ") == 2, plan.stdout
    second = embodia(tmp_path, "run", "mini.yaml")
    assert second.returncode == 0
    assert "cached demos (generate)" in second.stdout and "cached eval (evaluate)" in second.stdout
    forced = embodia(tmp_path, "run", "mini.yaml", "--dry-run", "--force", "demos")
    assert " forced " in forced.stdout and " hit " in forced.stdout


def test_bad_field_is_one_line_naming_step_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(MINI.replace("episodes: 2, envs", "episodes: -1, envs"))
    result = embodia(tmp_path, "run", "bad.yaml", "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "step 'demos' (generate)" in line and "'episodes'" in line


def test_unknown_force_step_and_unknown_builtin(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text(MINI)
    result = embodia(tmp_path, "run", "mini.yaml", "--dry-run", "--force", "demo")
    assert result.returncode == 2 and "--force demo: no such step" in result.stderr
    result = embodia(tmp_path, "run", "nope")
    assert result.returncode == 2 and "quickstart" in result.stderr


def test_deployments_list_and_stop_in_an_empty_workspace(tmp_path: Path) -> None:
    listed = embodia(tmp_path, "deployments", "list", "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == "[]"
    stopped = embodia(tmp_path, "deployments", "stop", "nope")
    assert stopped.returncode == 2 and "no deployment named 'nope'" in stopped.stderr


@pytest.mark.slow
def test_ctrl_c_cancels_the_running_job_and_leaves_nothing_running(tmp_path: Path) -> None:
    import signal
    import time

    (tmp_path / "long.yaml").write_text(MINI.replace("episodes: 2, envs_per_worker: 2",
                                                     "episodes: 5000, envs_per_worker: 4, cameras: [front]"))
    env = {**os.environ, "EMBODIA_HOME": str(tmp_path / ".embodia")}
    env.pop("EMBODIA_DB_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "embodia", "run", "long.yaml"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = tmp_path / ".embodia" / "logs" / "job-1" / "attempt-1.log"
    deadline = time.monotonic() + 300
    while "progress" not in (log.read_text() if log.is_file() else ""):
        assert time.monotonic() < deadline and process.poll() is None, "the generate job never started"
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    assert process.wait(120) == 130
    jobs = embodia(tmp_path, "jobs", "list")
    assert "cancelled" in jobs.stdout and "running" not in jobs.stdout


def test_executor_choices_are_checked_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text(MINI)
    result = embodia(tmp_path, "run", "mini.yaml", "--executor", "mars")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--executor 'mars': expected 'local'" in result.stderr.strip()
    result = embodia(tmp_path, "run", "mini.yaml", "--ray-address", "10.0.0.1:6379")
    assert result.returncode == 2 and "--ray-address needs --executor ray" in result.stderr


def test_the_ray_executor_without_ray_says_how_to_install_it(tmp_path: Path) -> None:
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray (hidden by the test)')\n")
    (tmp_path / "mini.yaml").write_text(MINI)
    paths = [str(shadow.parent), os.environ.get("PYTHONPATH", ""), str(Path(__file__).resolve().parents[2])]
    env = {**os.environ, "EMBODIA_HOME": str(tmp_path / ".embodia"), "PYTHONPATH": os.pathsep.join(paths)}
    for command in (["run", "mini.yaml", "--executor", "ray"], ["worker", "--executor", "ray", "--until-idle"]):
        result = subprocess.run([sys.executable, "-m", "embodia", *command], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "install embodia[ray]" in line


@pytest.mark.slow
def test_run_with_the_ray_executor_on_a_local_ray(tmp_path: Path) -> None:
    """Without --ray-address the run starts (and stops) its own local Ray; the steps run as Ray tasks."""
    (tmp_path / "mini.yaml").write_text(MINI)
    result = embodia(tmp_path, "run", "mini.yaml", "--executor", "ray")
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    assert "ran demos (generate)" in result.stdout and "ran eval (evaluate)" in result.stdout
    logs = list((tmp_path / ".embodia" / "logs").glob("job-*/attempt-1.log"))
    assert len(logs) == 2 and all("== ray node " in log.read_text() for log in logs)
