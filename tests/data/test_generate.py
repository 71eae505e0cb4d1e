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

from embodia.data.check import check_dataset
from embodia.data.generate import GenerateConfig, episode_seed, generate, replay_episode
from embodia.data.reader import Dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pick_place_dataset(tmp_path_factory) -> tuple[Path, GenerateConfig]:
    config = GenerateConfig(task="arm-pick-place", episodes=3, cameras=["front", "wrist"], image_size=32,
                            envs_per_worker=3, keep="all", seed=5)
    root = tmp_path_factory.mktemp("gen") / "ds"
    result = generate(config, root, progress=False)
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
        generate(config, tmp_path / "ds", progress=False)
    staged = list((tmp_path / "ds" / ".staging" / "failed").iterdir())
    assert len(staged) >= 1  # filtered attempts are remembered so --resume does not redo them


def test_parallel_workers_write_one_dataset(tmp_path):
    config = GenerateConfig(task="cartpole-swingup", episodes=6, workers=2, envs_per_worker=2, policy="random")
    result = generate(config, tmp_path / "ds", progress=False)
    ds = Dataset(tmp_path / "ds")
    assert result["episodes"] == 6 and ds.num_episodes == 6
    assert sorted(ds.episodes_table["embodia/attempt"]) == list(range(6))


@pytest.mark.slow
def test_sigkill_mid_generation_then_resume(tmp_path):
    out = tmp_path / "ds"
    command = [str(Path(sys.executable).with_name("embodia")), "data", "generate", "--task", "arm-pick-place", "--episodes", "10",
               "--cameras", "front", "--image-size", "32", "--envs-per-worker", "2", "--out", str(out)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    episodes_dir = out / ".staging" / "episodes"
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
