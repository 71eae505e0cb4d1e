"""MimicGen-style augmentation: segmentation at the grasp, re-targeting, and replay with success filtering."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.data.augment import AugmentConfig, augment, plan_demo, segment_demo
from embodia.data.check import check_dataset
from embodia.data.generate import GenerateConfig, generate
from embodia.data.reader import Dataset


def _toy_demo(length: int = 12, grasp_at: int = 5):
    state = np.zeros((length, 38))
    state[:, 12:15] = np.linspace([0.3, 0.0, 0.2], [0.5, 0.1, 0.1], length)  # grip point
    state[:, 16:19] = [0.4, 0.0, 0.02]  # cube
    state[:, 29:32] = [0.5, 0.1, 0.1]  # goal
    action = np.ones((length, 4))
    action[grasp_at:, 3] = -1.0
    return state, action


def test_segments_split_at_grasp_relative_to_cube_and_goal():
    state, action = _toy_demo()
    demo = segment_demo(state, action, close_steps=2)
    assert len(demo.cube_segment) == 7 and len(demo.goal_segment) == 5
    np.testing.assert_allclose(demo.cube_segment[0], state[1, 12:15] - [0.4, 0.0, 0.02])
    np.testing.assert_allclose(demo.goal_segment[-1], state[-1, 12:15] - [0.5, 0.1, 0.1])
    assert (demo.cube_grip[:5] == 1).all() and (demo.goal_grip == -1).all()


def test_demo_without_grasp_is_rejected():
    state, action = _toy_demo()
    action[:, 3] = 1.0
    with pytest.raises(ValueError, match="never closes the gripper"):
        segment_demo(state, action)


def test_plan_moves_segments_with_cube_and_goal():
    state, action = _toy_demo()
    demo = segment_demo(state, action, close_steps=2)
    config = AugmentConfig(transition_steps=4, settle_steps=3)
    cube, goal = np.array([0.45, -0.1, 0.02]), np.array([0.35, 0.15, 0.2])
    targets, grip = plan_demo(demo, np.array([0.3, 0.0, 0.3]), cube, goal, config)
    assert len(targets) == len(grip) == 4 + 7 + 4 + 5 + 3
    np.testing.assert_allclose(targets[4:11], cube + demo.cube_segment)
    np.testing.assert_allclose(targets[15:20], goal + demo.goal_segment)
    np.testing.assert_allclose(targets[3], cube + demo.cube_segment[0])  # the approach ends where the segment starts
    assert (grip[11:15] == -1).all()


@pytest.mark.slow
def test_augment_from_expert_demos_keeps_only_successes(tmp_path):
    source = tmp_path / "src"
    generate(GenerateConfig(task="arm-pick-place", episodes=3, keep="success", envs_per_worker=4, seed=2), source)
    result = augment(source, tmp_path / "aug", AugmentConfig(num=6, sources=3, envs=6, seed=3))
    assert result["kept"] == 6 and result["attempts"] >= 6 and 0 < result["yield"] <= 1
    assert check_dataset(tmp_path / "aug").ok
    ds = Dataset(tmp_path / "aug")
    assert all(ds.embodia_info(i)["success"] for i in range(ds.num_episodes))
    assert {ds.embodia_info(i)["source_demo"] for i in range(ds.num_episodes)} <= {0, 1, 2}
    assert ds.info["embodia"]["augment"]["num"] == 6


def test_augment_rejects_a_non_pick_place_source(tmp_path):
    generate(GenerateConfig(task="cartpole-swingup", episodes=1, policy="random"), tmp_path / "src")
    with pytest.raises(ValueError, match="needs an embodia arm-pick-place dataset"):
        augment(tmp_path / "src", tmp_path / "aug", AugmentConfig(num=1))
