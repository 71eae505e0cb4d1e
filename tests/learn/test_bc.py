"""Behavior cloning: learns a reach expert from 30 demos, checkpoints round-trip, ONNX export, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from embodia.core.errors import ConfigError, DatasetFormatError
from embodia.learn.bc import BCConfig, export_bc, load_bc, train_bc
from embodia.learn.il_common import (
    Demonstrations,
    collect_demonstrations,
    load_demonstrations,
    rollout_success,
)
from embodia.learn.policy import load_trained_policy

TASK = "arm-reach"


def reach_controller(env):
    """Proportional reach expert read off the observation's goal - grip point (obs[18:21])."""
    scale = env.task.config.action_scale_m
    return lambda obs: np.clip(obs[:, 18:21] / scale, -1.0, 1.0)


@pytest.fixture(scope="module")
def reach_demos() -> Demonstrations:
    return collect_demonstrations(TASK, 30, seed=0, num_envs=30, expert=reach_controller)


@pytest.fixture(scope="module")
def trained_bc(reach_demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("bc") / "reach"
    return train_bc(reach_demos, {"num_steps": 1200, "hidden_sizes": [128, 128]}, out)


def random_policy(obs: np.ndarray) -> np.ndarray:
    return np.random.default_rng(len(obs)).uniform(-1.0, 1.0, (len(obs), 3))


def test_demonstrations_hold_30_reach_episodes(reach_demos):
    assert reach_demos.num_episodes == 30
    assert reach_demos.observations.shape == (30 * 50, 21)  # reach never ends early: 50 steps each
    assert reach_demos.actions.shape == (30 * 50, 3)
    assert np.all(np.abs(reach_demos.actions) <= 1.0)


def test_bc_clones_reach_expert_far_better_than_random(trained_bc):
    bc = rollout_success(load_bc(trained_bc), TASK, 40, seed=123)
    random = rollout_success(random_policy, TASK, 40, seed=123)
    assert bc["success_rate"] >= 0.8
    assert random["success_rate"] <= 0.1
    assert bc["mean_return"] > random["mean_return"] + 20.0


def test_training_writes_checkpoint_files_and_loss_curve(trained_bc):
    for name in ("model.safetensors", "config.json", "normalizer.safetensors", "optimizer.safetensors", "state.json"):
        assert (trained_bc / name).is_file(), name
    state = json.loads((trained_bc / "state.json").read_text())
    assert state["step"] == 1200 and state["num_episodes"] == 30
    assert np.mean(state["losses"][-10:]) < 0.2 * np.mean(state["losses"][:10])


def test_checkpoint_round_trip_gives_identical_actions(trained_bc, reach_demos, tmp_path):
    policy = load_bc(trained_bc)
    obs = reach_demos.observations[:64]
    again = load_bc(trained_bc)
    np.testing.assert_array_equal(policy.act(obs), again.act(obs))
    from embodia.learn.bc import save_bc

    copy = load_bc(save_bc(policy, tmp_path / "copy"))
    np.testing.assert_array_equal(policy.predict_chunk(obs), copy.predict_chunk(obs))
    assert isinstance(load_trained_policy(trained_bc), type(policy))


def test_load_policy_and_onnx_export_agree_with_torch(trained_bc, reach_demos, tmp_path):
    from embodia.learn import OnnxPolicy, load_policy

    obs = reach_demos.observations[:100]
    expected = load_bc(trained_bc).predict_chunk(obs)[:, 0]
    np.testing.assert_allclose(load_policy(trained_bc).act(obs), expected, atol=1e-6)
    onnx_path = export_bc(trained_bc, tmp_path / "bc.onnx")
    onnx_policy = OnnxPolicy(onnx_path)
    np.testing.assert_allclose(onnx_policy.act(obs), expected, atol=1e-5)
    assert onnx_policy.algo == "bc" and onnx_policy.task == TASK
    assert onnx_policy.obs_dim == 21 and onnx_policy.act_dim == 3
    np.testing.assert_array_equal(onnx_policy.action_low, -np.ones(3, dtype=np.float32))


def test_action_chunks_pad_with_the_episodes_last_action():
    actions = np.arange(10, dtype=np.float32)[:, None]
    demos = Demonstrations(np.zeros((10, 2)), actions, np.repeat([0, 1], [4, 6]))
    chunks = demos.action_chunks(3)[:, :, 0]
    np.testing.assert_array_equal(chunks[0], [0, 1, 2])
    np.testing.assert_array_equal(chunks[2], [2, 3, 3])  # episode 0 ends at frame 3: never borrows episode 1
    np.testing.assert_array_equal(chunks[3], [3, 3, 3])
    np.testing.assert_array_equal(chunks[9], [9, 9, 9])


def test_chunked_policy_replans_every_n_action_steps_and_on_reset(tmp_path):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(400, 4)).astype(np.float32)
    demos = Demonstrations(obs, np.tanh(obs[:, :2]), np.repeat(np.arange(20), 20))
    policy = load_bc(train_bc(demos, {"num_steps": 50, "hidden_sizes": [16], "chunk_size": 3, "n_action_steps": 3},
                              tmp_path / "chunk"))
    first, later = obs[:2], obs[2:4]
    planned = policy.predict_chunk(first)  # (2, 3, 2)
    np.testing.assert_allclose(policy.act(first), planned[:, 0], atol=1e-6)
    np.testing.assert_allclose(policy.act(later), planned[:, 1], atol=1e-6)  # queued: new obs ignored
    policy.reset(np.array([1]))
    step = policy.act(later)
    np.testing.assert_allclose(step[0], planned[0, 2], atol=1e-6)
    np.testing.assert_allclose(step[1], policy.predict_chunk(later[1:])[0, 0], atol=1e-6)  # env 1 replanned


def test_gaussian_nll_loss_trains(reach_demos, tmp_path):
    out = train_bc(reach_demos, {"num_steps": 300, "hidden_sizes": [64], "loss": "nll"}, tmp_path / "nll")
    losses = json.loads((out / "state.json").read_text())["losses"]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5
    assert load_bc(out).net.log_std is not None


def test_bad_config_names_the_field():
    with pytest.raises(ValidationError, match="hidden_size"):
        BCConfig.model_validate({"hidden_size": 64})  # the field is hidden_sizes
    with pytest.raises(ValidationError, match="n_action_steps=4 exceeds chunk_size=2"):
        BCConfig(chunk_size=2, n_action_steps=4)
    with pytest.raises(ValidationError, match="loss"):
        BCConfig(loss="l1")


def test_missing_dataset_and_bad_arrays_raise_specific_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="no_such_dataset"):
        train_bc(tmp_path / "no_such_dataset", {"num_steps": 1}, tmp_path / "out")
    with pytest.raises(ValueError, match="one row per frame"):
        Demonstrations(np.zeros((5, 2)), np.zeros((4, 1)), np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        Demonstrations(np.full((5, 2), np.nan), np.zeros((5, 1)), np.zeros(5))


def test_failed_save_keeps_the_previous_checkpoint(trained_bc, tmp_path, monkeypatch):
    import shutil

    import torch

    from embodia.learn.bc import save_bc

    target = tmp_path / "ckpt"
    shutil.copytree(trained_bc, target)
    before = (target / "model.safetensors").read_bytes()
    policy = load_bc(trained_bc)
    torch.nn.init.zeros_(policy.net.body[0].weight)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("embodia.learn.checkpoint.atomic_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        save_bc(policy, target)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dirs left behind


def test_trains_from_a_lerobot_dataset_directory(reach_demos, tmp_path):
    from embodia.data import format as fmt
    from embodia.data.writer import DatasetSpec, Episode, write_dataset

    spec = DatasetSpec(fps=20, robot_type="arm",
                       features={"observation.state": fmt.vector_feature("float32", 21),
                                 "action": fmt.vector_feature("float32", 3)},
                       extra={"generate": {"task": TASK}, "action_low": [-1.0] * 3, "action_high": [1.0] * 3})
    episodes = []
    for index in range(3):
        frames = reach_demos.episode_index == index
        episodes.append(Episode(frames={"observation.state": reach_demos.observations[frames],
                                        "action": reach_demos.actions[frames]}, task="reach the goal"))
    root = write_dataset(tmp_path / "ds", spec, episodes)
    loaded = load_demonstrations(root)
    first3 = reach_demos.episode_index < 3
    np.testing.assert_array_equal(loaded.observations, reach_demos.observations[first3])
    np.testing.assert_array_equal(loaded.actions, reach_demos.actions[first3])
    np.testing.assert_array_equal(loaded.episode_index, reach_demos.episode_index[first3])
    assert loaded.task == TASK
    np.testing.assert_array_equal(loaded.action_high, np.ones(3, dtype=np.float32))
    out = train_bc(root, {"num_steps": 20, "hidden_sizes": [16]}, tmp_path / "bc")
    assert load_bc(out).task == TASK


def test_imitation_stage_config_is_validated_naming_the_field():
    from embodia.learn.train import parse_config

    algorithm, config, task = parse_config({"algo": "bc", "task": TASK, "hidden_sizes": [16], "num_steps": 7})
    assert algorithm.name == "bc" and config.num_steps == 7 and config.hidden_sizes == [16] and task == TASK
    with pytest.raises(ConfigError, match="unknown algo 'ppx'"):
        parse_config({"algo": "ppx"})
    with pytest.raises(ConfigError, match="unknown config field 'hidden_size'"):
        parse_config({"algo": "bc", "hidden_size": 16})
    with pytest.raises(ConfigError, match="'learning_rate'.*finite"):
        parse_config({"algo": "bc", "learning_rate": float("inf")})
