"""Dataset generation: expert rollouts with cameras, success filtering, replay from seeds, SIGKILL + resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embodia.core.atomic import exclusive_lock
from embodia.core.errors import ConfigError, UserError
from embodia.core.manifest import Manifest
from embodia.core.reporter import RecordingReporter
from embodia.core.stage import staging_dir
from embodia.data.check import check_dataset
from embodia.data.generate import GenerateConfig, episode_seed, generate, replay_episode, run
from embodia.data.reader import Dataset
from embodia.data.writer import StagingArea

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pick_place_dataset(tmp_path_factory) -> tuple[Path, GenerateConfig]:
    config = GenerateConfig(task="arm-pick-place", episodes=3, cameras=["front", "wrist"], image_size=32,
                            envs_per_worker=3, keep="all", seed=5)
    root = tmp_path_factory.mktemp("gen") / "ds"
    result = generate(config, root)
    assert result["episodes"] == 3 and result["attempts"] == 3
    return root, config


def test_generated_dataset_is_valid_and_recorded(pick_place_dataset):
    root, config = pick_place_dataset
    report = check_dataset(root)
    assert report.ok, report.problems
    ds = Dataset(root)
    assert ds.cameras == ["front", "wrist"] and ds.fps == round(1 / ds.info["embodia"]["control_dt_s"])
    for index in range(ds.num_episodes):
        extras = ds.embodia_info(index)
        assert extras["episode_seed"] == episode_seed(config.seed, extras["attempt"])
        episode = ds.episode(index)
        assert episode["observation.images.front"].shape == (len(episode["action"]), 32, 32, 3)
        assert episode["next.done"][-1] and not episode["next.done"][:-1].any()
        assert episode["observation.images.front"].std() > 5  # a real render, not a blank frame
    assert ds.info["embodia"]["generate"]["task"] == "arm-pick-place"


def test_expert_episodes_succeed_and_end_early(pick_place_dataset):
    root, config = pick_place_dataset
    ds = Dataset(root)
    success = [ds.embodia_info(i)["success"] for i in range(ds.num_episodes)]
    assert sum(success) >= 2  # the scripted expert solves most pick-and-place resets
    lengths = ds.episodes_table["length"]
    assert min(lengths) < 100  # stop_on_success ends successful episodes before the 100-step limit


def test_episode_replays_exactly_from_its_seed(pick_place_dataset):
    root, config = pick_place_dataset
    episode = Dataset(root).episode(1, images=False)
    replayed = replay_episode(config, episode["info"]["episode_seed"], episode["action"].astype(np.float64))
    np.testing.assert_allclose(replayed, episode["observation.state"], atol=1e-5)


def test_visual_randomization_changes_colours_per_episode(pick_place_dataset):
    root, _ = pick_place_dataset
    ds = Dataset(root)
    first = [ds.episode(i)["observation.images.front"][0].astype(float) for i in range(2)]
    assert np.abs(first[0] - first[1]).mean() > 3


def test_keep_success_filters_random_policy(tmp_path):
    config = GenerateConfig(task="cartpole-swingup", episodes=2, keep="success", policy="random", envs_per_worker=4,
                            max_attempts_factor=1, stop_on_success=True)
    with pytest.raises(ValueError, match="succeeded"):
        generate(config, tmp_path / "ds")
    staged = list((tmp_path / ".ds.partial" / ".staging" / "failed").iterdir())
    assert len(staged) >= 1  # filtered attempts are remembered so --resume does not redo them


def test_parallel_workers_write_one_dataset(tmp_path):
    config = GenerateConfig(task="cartpole-swingup", episodes=6, workers=2, envs_per_worker=2, policy="random")
    result = generate(config, tmp_path / "ds")
    ds = Dataset(tmp_path / "ds")
    assert result["episodes"] == 6 and ds.num_episodes == 6
    assert sorted(ds.episodes_table["embodia/attempt"]) == list(range(6))


@pytest.mark.slow
def test_sigkill_mid_generation_then_resume(tmp_path):
    out = tmp_path / "ds"
    command = [str(Path(sys.executable).with_name("embodia")), "data", "generate", "--task", "arm-pick-place", "--episodes", "10",
               "--cameras", "front", "--image-size", "32", "--envs-per-worker", "2", "--out", str(out)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    episodes_dir = tmp_path / ".ds.partial" / ".staging" / "episodes"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if episodes_dir.is_dir() and len([p for p in episodes_dir.iterdir() if p.name.isdigit()]) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "generation finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    report = check_dataset(out)
    assert report.resumable and not report.problems, report.problems
    assert "--resume" in report.notes[-1]
    resumed = subprocess.run(command + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    report = check_dataset(out)
    assert report.ok, report.problems
    ds = Dataset(out)
    assert ds.num_episodes == 10
    assert sorted(ds.episodes_table["embodia/attempt"]) == list(range(10))
    for index in range(ds.num_episodes):
        assert ds.episode(index)["observation.images.front"].shape[0] == ds.episodes_table["length"][index]


def _reach(**changes) -> GenerateConfig:
    return GenerateConfig(**{"task": "arm-reach", "episodes": 4, "envs_per_worker": 2, "seed": 3, **changes})


def _cancelled_generation(out: Path) -> None:
    """A generation stopped through its reporter after its first finished episode (staging kept for --resume)."""
    manifest = run(_reach(), out, reporter=RecordingReporter(cancel_after=1))
    assert manifest.status == "cancelled" and not out.exists()
    assert Manifest.read(staging_dir(out)).status == "cancelled"


def test_resume_names_the_differing_field_and_allows_changes_that_keep_the_data(tmp_path):
    """issue 9 item 12: --workers/--envs-per-worker/more --episodes resume; a real change is named, not dumped."""
    out = tmp_path / "ds"
    _cancelled_generation(out)
    staged = len(StagingArea(staging_dir(out)).keys())
    assert 1 <= staged < 4
    with pytest.raises(ConfigError, match=r"--seed=3, this run asks --seed=4") as error:
        run(_reach(seed=4), out, resume=True)
    assert len(str(error.value)) < 300
    with pytest.raises(ConfigError, match=r"--stop-on-success=true, this run asks --stop-on-success=false"):
        run(_reach(stop_on_success=False), out, resume=True)
    manifest = run(_reach(episodes=6, envs_per_worker=3, max_attempts_factor=5), out, resume=True)
    summary = manifest.summary
    assert manifest.status == "complete" and Dataset(out).num_episodes == 6 and check_dataset(out).ok
    assert summary["resumed_from"] == staged and summary["new_episodes"] == 6 - staged
    lengths = Dataset(out).episodes_table["length"]
    assert summary["new_frames"] == sum(lengths[staged:]) < summary["frames"] == sum(lengths)
    assert summary["frames_per_s"] == pytest.approx(summary["new_frames"] / summary["elapsed_s"])
    assert Dataset(out).info["embodia"]["generate"]["episodes"] == 6


def test_resume_of_a_finished_dataset_refuses_real_mismatches(tmp_path):
    out = tmp_path / "ds"
    first = run(_reach(), out)
    with pytest.raises(ConfigError, match=r"finished dataset made with --seed=3, this run asks --seed=9"):
        run(_reach(seed=9), out, resume=True)
    with pytest.raises(ConfigError, match="finished dataset of 4 episodes"):
        run(_reach(episodes=5), out, resume=True)
    again = run(_reach(envs_per_worker=1), out, resume=True)  # how it is made does not matter
    assert again.content_sha256 == first.content_sha256 == Manifest.read(out).content_sha256


def test_a_second_writer_of_the_same_output_is_refused_while_one_holds_it(tmp_path):
    """issue 9 item 13: a resume (or any generation) holds a lock on the output's staging area."""
    out = tmp_path / "ds"
    with exclusive_lock(tmp_path / ".ds.lock", "test"):
        with pytest.raises(UserError, match="locked"):
            run(_reach(), out, resume=True)
    assert not staging_dir(out).exists()


def test_building_the_expert_is_not_silently_replaced_by_random_actions(tmp_path, monkeypatch):
    """issue 8: a bug in the expert used to fall back to random actions; it must surface."""
    from embodia.data import experts

    def broken(env):
        raise ValueError("bug in the expert")

    monkeypatch.setitem(experts.EXPERTS, "arm-reach", broken)
    with pytest.raises(ValueError, match="bug in the expert"):
        run(_reach(episodes=1), tmp_path / "ds")
    with pytest.raises(ConfigError, match="no scripted expert for task 'cartpole-swingup'"):
        run(GenerateConfig(task="cartpole-swingup", episodes=1, policy="expert"), tmp_path / "cp")


_KILL_SCRIPT = """
import sys
from embodia.data.generate import GenerateConfig, run
run(GenerateConfig(task="arm-pick-place", episodes=200, workers=2, envs_per_worker=2), sys.argv[1])
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left


@pytest.mark.slow
def test_workers_die_when_the_parent_is_killed(tmp_path):
    """issue 9 item 13: after kill -9 of the parent, its workers stop (they used to keep staging episodes)."""
    out = tmp_path / "ds"
    parent = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    episodes = staging_dir(out) / ".staging" / "episodes"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and parent.poll() is None:
        if episodes.is_dir() and any(p.name.isdigit() for p in episodes.iterdir()):
            break
        time.sleep(0.1)
    assert parent.poll() is None, "generation ended before it could be killed"
    workers = [pid for pid in _children(parent.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
    count = len(list(episodes.iterdir()))
    time.sleep(1.0)
    assert len(list(episodes.iterdir())) == count  # nobody writes into the staging area any more
