"""Scenario conditions: per-episode hashed noise, push windows, joint shifts and render-model changes."""

from __future__ import annotations

import numpy as np
import pytest

from embodia.evaluate.conditions import ScenarioConditions, hashed_normal, hashed_uniform
from embodia.evaluate.suite import Scenario
from embodia.tasks import BatchEnv


def test_hashed_draws_depend_only_on_episode_seed_and_step():
    seeds, steps = np.array([11, 22, 33]), np.array([0, 5, 7])
    batch = hashed_uniform(seeds, steps, stream=1, dims=4)
    alone = hashed_uniform(seeds[1:2], steps[1:2], stream=1, dims=4)
    assert np.array_equal(batch[1], alone[0])
    assert not np.array_equal(batch, hashed_uniform(seeds, steps, stream=2, dims=4))
    assert not np.array_equal(batch, hashed_uniform(seeds, steps + 1, stream=1, dims=4))
    assert batch.min() >= 0.0 and batch.max() < 1.0


def test_hashed_normal_is_standard_normal():
    draws = hashed_normal(np.arange(2000), 3, stream=9, dims=50).ravel()
    assert abs(draws.mean()) < 0.01 and abs(draws.std() - 1.0) < 0.01


def make(scenario: dict, num_envs: int = 4) -> tuple[BatchEnv, ScenarioConditions]:
    parsed = Scenario.model_validate({"name": "s", **scenario})
    env = BatchEnv("cartpole-balance", num_envs, autoreset_mode="disabled", perturbations=bool(parsed.perturbations))
    env.reset(options={"episode_seeds": np.arange(num_envs)})
    return env, ScenarioConditions(parsed, env)


def test_push_is_applied_only_inside_its_window():
    env, conditions = make({"perturbations": [{"body": "pole_1", "force": [2, 0, 0], "start_s": 0.04,
                                               "duration_s": 0.04, "random_sign": True}]})
    body = env.sim.model.body("pole_1").id
    applied = []
    for _ in range(5):
        conditions.before_step()
        applied.append(env.sim.xfrc_applied[:, body, 0].copy())
        env.step(np.zeros((4, 1)))
    applied = np.array(applied)  # (steps, envs); dt = 0.02 s so steps 2 and 3 push
    assert np.all(applied[[0, 1, 4]] == 0.0)
    assert np.all(np.abs(applied[[2, 3]]) == 2.0)
    assert np.array_equal(applied[2], applied[3])
    env.close()


def test_object_shift_adds_offset_to_joint_and_updates_sensors():
    env, conditions = make({"object_shift": [{"joint": "hinge_1", "offset": [0.1]}]})
    before = env.sim.qpos[:, 1].copy()
    conditions.after_reset(np.arange(4))
    assert env.sim.qpos[:, 1] == pytest.approx(before + 0.1)
    env.close()


def test_sensor_faults_noise_and_dropout():
    env, conditions = make({"sensor": {"noise_std": 0.0, "dropout_prob": 1.0, "dims": [1, 2]}})
    obs = env.task.observe(env.sim)
    corrupted = conditions.observe(obs)
    assert np.all(corrupted[:, [1, 2]] == 0.0) and np.array_equal(corrupted[:, [0, 3, 4]], obs[:, [0, 3, 4]])
    env.close()


def test_rendering_changes_lights_and_cameras_and_unknown_names_fail():
    env, _ = make({"rendering": {"lights": [{"name": "light", "diffuse": [0.1, 0.2, 0.3]}],
                                 "cameras": [{"name": "fixed", "pos_offset": [0, -1, 0], "fovy": 60}]}})
    assert env.sim.model.light("light").diffuse == pytest.approx([0.1, 0.2, 0.3])
    assert env.sim.model.camera("fixed").pos[1] == pytest.approx(-5.0)
    env.close()
    with pytest.raises(ValueError, match=r"unknown body 'pole'.*pole_1"):
        make({"perturbations": [{"body": "pole", "force": [1, 0, 0], "start_s": 0, "duration_s": 1}]})
    with pytest.raises(ValueError, match="needs 1 offset"):
        make({"object_shift": [{"joint": "slider", "offset": [0.1, 0, 0]}]})
