"""The one-env fast paths (mj_step on a private MjData, scalar bookkeeping) give the batched path's values."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import embodia  # noqa: F401  (registers the Gymnasium IDs)
from embodia.core.errors import UserError
from embodia.tasks import BatchEnv

TOL = 1e-12


def batched_reference(task: str, seed: int, **kwargs) -> BatchEnv:
    """A one-env batch forced through the mujoco.rollout path (the batched path the fast path must equal)."""
    env = BatchEnv(task, 1, seed=seed, **kwargs)
    env.sim._single_data = None
    return env


@pytest.mark.parametrize("task,steps", [("cheetah-run", 400), ("ant-walk", 150), ("arm-reach", 120),
                                        ("arm-pick-place", 60), ("cartpole-swingup", 200)])
def test_one_env_physics_equals_the_rollout_path(task, steps):
    fast, reference = BatchEnv(task, 1, seed=3), batched_reference(task, seed=3)
    assert fast.sim._single_data is not None
    obs_fast, _ = fast.reset(seed=5)
    obs_ref, _ = reference.reset(seed=5)
    np.testing.assert_allclose(obs_fast, obs_ref, rtol=0, atol=TOL)
    rng = np.random.default_rng(0)
    for _ in range(steps):  # long enough to cross episode ends (arm-reach: 50 steps) and autoresets
        action = rng.uniform(-1, 1, (1, fast.action_dim))
        for got, want in zip(fast.step(action)[:4], reference.step(action)[:4]):
            np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=0, atol=TOL)
    np.testing.assert_allclose(fast.sim.state, reference.sim.state, rtol=0, atol=TOL)
    np.testing.assert_allclose(fast.sim.sensordata, reference.sim.sensordata, rtol=0, atol=TOL)


def test_one_env_path_with_randomization_and_perturbations_equals_the_rollout_path():
    settings = {"action_noise_std": 0.05, "action_latency_steps": (0, 2), "obs_noise_std": 0.01, "body_mass_scale": (0.9, 1.1)}
    fast = BatchEnv("cheetah-run", 1, seed=1, randomization=settings, perturbations=True)
    reference = batched_reference("cheetah-run", seed=1, randomization=settings, perturbations=True)
    fast.reset(seed=2)
    reference.reset(seed=2)
    rng = np.random.default_rng(1)
    for _ in range(60):
        push = rng.normal(0, 5, 6)
        fast.sim.xfrc_applied[0, 1] = push
        reference.sim.xfrc_applied[0, 1] = push
        action = rng.uniform(-1, 1, (1, 6))
        for got, want in zip(fast.step(action)[:4], reference.step(action)[:4]):
            np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=0, atol=TOL)


@pytest.mark.parametrize("task", ["cheetah-run", "arm-reach"])
def test_step_one_equals_step_of_a_one_env_batch(task):
    one = BatchEnv(task, 1, seed=0, autoreset_mode="disabled", max_episode_steps=60)
    batch = batched_reference(task, seed=0, autoreset_mode="disabled", max_episode_steps=60)
    one.reset(seed=9)
    batch.reset(seed=9)
    rng = np.random.default_rng(2)
    for _ in range(60):
        action = rng.uniform(-1, 1, one.action_dim).astype(np.float32)
        obs, reward, terminated, truncated, info = one.step_one(action)
        obs_b, reward_b, terminated_b, truncated_b, info_b = batch.step(action[None])
        np.testing.assert_allclose(obs, obs_b[0], rtol=0, atol=TOL)
        assert abs(reward - reward_b[0]) <= TOL
        assert (terminated, truncated) == (bool(terminated_b[0]), bool(truncated_b[0]))
        for key, value in info.items():
            np.testing.assert_allclose(value, info_b[key][0], rtol=0, atol=TOL, err_msg=key)
    assert truncated  # the last step of the episode truncates on both paths


def assert_same_step(got: tuple, want: tuple) -> None:
    """step_one's (obs, reward, terminated, truncated, info) equal a one-env batch step's env 0 (1e-12)."""
    obs, reward, terminated, truncated, info = got
    obs_b, reward_b, terminated_b, truncated_b, info_b = want
    np.testing.assert_allclose(obs, obs_b[0], rtol=0, atol=TOL)
    assert abs(reward - reward_b[0]) <= TOL, (reward, reward_b[0])
    assert (terminated, truncated) == (bool(terminated_b[0]), bool(truncated_b[0]))
    assert set(info) <= set(info_b)
    for key, value in info.items():
        np.testing.assert_allclose(value, info_b[key][0], rtol=0, atol=TOL, err_msg=key)


# (task, task_config, steps): long enough for several episode ends; the ant's narrow healthy range makes it terminate
ROLLOUTS = [("cheetah-run", None, 1100), ("ant-walk", {"healthy_z_range": (0.3, 1.0)}, 300),
            ("cartpole-swingup", None, 250), ("arm-reach", None, 160), ("arm-push", None, 120),
            ("arm-pick-place", None, 220)]


@pytest.mark.parametrize("task,task_config,steps", ROLLOUTS)
def test_step_one_equals_the_batched_step_on_random_rollouts_with_resets(task, task_config, steps):
    # the one-env formulas (Task.*_one: 1-D views, Python floats, mj_kinematics IK with a Cholesky solve) against
    # the batch formulas on the mujoco.rollout path, episode after episode from the same seeds
    one = BatchEnv(task, 1, seed=0, autoreset_mode="disabled", task_config=task_config)
    batch = batched_reference(task, seed=0, autoreset_mode="disabled", task_config=task_config)
    rng = np.random.default_rng(4)
    ends, seed = [], 100
    for env in (one, batch):
        env.reset(options={"episode_seeds": np.array([seed])})
    for _ in range(steps):
        action = rng.uniform(-1, 1, one.action_dim).astype(np.float32)
        got = one.step_one(action)
        assert_same_step(got, batch.step(action[None]))
        if got[2] or got[3]:
            ends.append("terminated" if got[2] else "truncated")
            seed += 1
            obs, _ = one.reset(options={"episode_seeds": np.array([seed])})
            obs_b, _ = batch.reset(options={"episode_seeds": np.array([seed])})
            np.testing.assert_allclose(obs[0], obs_b[0], rtol=0, atol=TOL)
    assert len(ends) >= 1
    if task == "ant-walk":
        assert "terminated" in ends  # the termination path ran, not only truncations


def test_step_one_with_randomization_noise_and_latency_equals_the_batched_step():
    settings = {"action_noise_std": 0.05, "action_latency_steps": (0, 2), "obs_noise_std": 0.01,
                "body_mass_scale": (0.9, 1.1)}
    for task in ("cheetah-run", "arm-pick-place"):
        one = BatchEnv(task, 1, seed=1, randomization=settings, autoreset_mode="disabled")
        batch = batched_reference(task, seed=1, randomization=settings, autoreset_mode="disabled")
        one.reset(seed=2)
        batch.reset(seed=2)
        rng = np.random.default_rng(1)
        for _ in range(40):
            action = rng.uniform(-1, 1, one.action_dim)
            assert_same_step(one.step_one(action), batch.step(action[None]))


def test_a_state_written_between_one_env_steps_is_stepped_from():
    # the one-env physics skips reloading the MjData when the state is unchanged: a write must still be seen
    one = BatchEnv("cheetah-run", 1, seed=0, autoreset_mode="disabled")
    batch = batched_reference("cheetah-run", seed=0, autoreset_mode="disabled")
    one.reset(seed=3)
    batch.reset(seed=3)
    rng = np.random.default_rng(6)
    for step in range(30):
        if step % 10 == 5:
            kick = rng.normal(0, 2, one.model.nv)[None]
            for env in (one, batch):
                env.sim.set_qvel(np.array([0]), env.sim.qvel + kick)
        action = rng.uniform(-1, 1, 6)
        assert_same_step(one.step_one(action), batch.step(action[None]))


def test_arm_ik_of_one_pose_equals_the_batched_ik():
    from embodia.tasks.arm_common import (
        ARM_JOINTS,
        GRIP_SITE,
        TOOL_DOWN,
        TOOL_DOWN_ROWS,
        ArmKinematics,
    )
    from embodia.tasks.registry import make_task

    kinematics = ArmKinematics(make_task("arm-reach").build_model(), ARM_JOINTS, GRIP_SITE)
    rng = np.random.default_rng(5)
    for _ in range(50):
        pose = rng.uniform(kinematics.lower, kinematics.upper)
        target = kinematics.site_pos_one(pose) + rng.uniform(-0.05, 0.05, 3)
        got = kinematics.solve_ik_one(pose, target.tolist(), TOOL_DOWN_ROWS, iterations=3)
        want = kinematics.solve_ik(np.stack([pose, pose]), np.stack([target, target]), TOOL_DOWN, iterations=3)
        np.testing.assert_allclose(got, want[0], rtol=0, atol=TOL)


def test_arm_ik_of_one_pose_equals_the_batched_ik_at_singular_poses_and_limits():
    # the straight arm (two zero singular values: only the damping keeps the system solvable), poses at the joint
    # limits with targets beyond reach (the step clip and the joint-limit clip both engage), into `out` or not
    from embodia.tasks.arm_common import (
        ARM_JOINTS,
        GRIP_SITE,
        TOOL_DOWN,
        TOOL_DOWN_ROWS,
        ArmKinematics,
    )
    from embodia.tasks.registry import make_task

    kinematics = ArmKinematics(make_task("arm-pick-place").build_model(), ARM_JOINTS, GRIP_SITE)
    lower, upper = kinematics.lower, kinematics.upper
    poses = [np.zeros(6), np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.5]), upper.copy(), lower.copy(), 0.999 * upper]
    out = np.full(6, np.nan)
    at_limit = step_clipped = 0
    for pose in poses:
        for offset in ([0.3, 0.0, 0.0], [0.0, -0.4, 0.2], [0.0, 0.0, -0.5], [0.01, 0.01, 0.01]):
            target = kinematics.site_pos_one(pose) + np.array(offset)
            kept = pose.copy()
            for iterations in (1, 3):
                got = kinematics.solve_ik_one(pose, target.tolist(), TOOL_DOWN_ROWS, iterations=iterations, out=out)
                want = kinematics.solve_ik(np.stack([pose, pose]), np.stack([target, target]), TOOL_DOWN,
                                           iterations=iterations)
                assert got is out
                np.testing.assert_allclose(got, want[0], rtol=0, atol=TOL)
                fresh = kinematics.solve_ik_one(pose, target.tolist(), TOOL_DOWN_ROWS, iterations=iterations)
                np.testing.assert_array_equal(fresh, got)
            np.testing.assert_array_equal(pose, kept)  # the start pose is not written
            at_limit += np.count_nonzero((got == lower) | (got == upper))
            one_step = kinematics.solve_ik_one(pose, target.tolist(), TOOL_DOWN_ROWS, iterations=1)
            step_clipped += np.count_nonzero(np.isclose(np.abs(one_step - pose), 0.4, rtol=0, atol=1e-15))
    assert at_limit > 0 and step_clipped > 0  # both clips ran


@pytest.mark.parametrize("task", ["arm-reach", "arm-pick-place"])
def test_arm_one_env_control_equals_the_batch_at_the_workspace_box_and_gripper_extremes(task):
    # held targets at the workspace box's corners and beyond the lead, full and half gripper commands:
    # action_to_ctrl_one against action_to_ctrl of a one-env batch from the same state
    from embodia.tasks.arm_common import EE_HIGH, EE_LOW

    one = BatchEnv(task, 1, seed=0, autoreset_mode="disabled")
    batch = batched_reference(task, seed=0, autoreset_mode="disabled")
    for env in (one, batch):
        env.reset(seed=1)
    rng = np.random.default_rng(3)
    kinematics, outside = one.task.kinematics, []
    while len(outside) < 3:  # arm poses whose grip point lies outside the workspace box: the box clip engages
        pose = rng.uniform(0.5 * kinematics.lower, 0.5 * kinematics.upper)
        grip_point = kinematics.site_pos_one(pose)
        if ((grip_point < EE_LOW) | (grip_point > EE_HIGH)).any():
            outside.append(pose)
    for pose, corner in zip(outside, (EE_LOW, EE_HIGH, np.array([EE_LOW[0], EE_HIGH[1], EE_LOW[2]]))):
        for grip in (-1.0, 1.0, 0.25):
            action = np.append(np.sign(rng.uniform(-1, 1, 3)), grip)[: one.action_dim]
            for env in (one, batch):
                env.sim.qpos[0, env.task.arm_qpos] = pose
                env.task.ee_target[0] = corner + np.sign(corner - 0.3) * 0.05  # outside the box, beyond the lead
                env.task._target_stale[0] = False
            got = one.task.action_to_ctrl_one(one.sim, action).copy()
            want = batch.task.action_to_ctrl(batch.sim, action[None])[0]
            np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
            np.testing.assert_allclose(one.task.ee_target, batch.task.ee_target, rtol=0, atol=0)
            if task == "arm-pick-place":
                assert got[6] == got[7] == 0.5 * (grip + 1.0) * 0.04


def test_gym_make_cheetah_matches_gymnasium_halfcheetah_v5_observations():
    # cheetah-run mirrors HalfCheetah-v5: the same start state and actions give the same observations
    ours, theirs = gym.make("embodia/CheetahRun-v0"), gym.make("HalfCheetah-v5")
    ours.reset(seed=0)
    theirs.reset(seed=0)
    data = theirs.unwrapped.data
    start = np.concatenate([data.qpos, data.qvel])
    env = ours.unwrapped._env
    env.sim.set_qpos(np.array([0]), data.qpos[None])
    env.sim.set_qvel(np.array([0]), data.qvel[None])
    np.testing.assert_allclose(env.observe()[0], start[1:], atol=TOL)
    rng = np.random.default_rng(3)
    for _ in range(20):
        action = rng.uniform(-1, 1, 6)
        obs, reward, *_ = ours.step(action)
        obs_g, reward_g, *_ = theirs.step(action)
        np.testing.assert_allclose(obs, obs_g, atol=1e-6)
        assert reward == pytest.approx(reward_g, abs=1e-6)


def test_step_one_refuses_a_batch_or_autoreset():
    with pytest.raises(UserError, match="step_one needs num_envs=1"):
        BatchEnv("cartpole-swingup", 2).step_one(np.zeros(1))


def test_one_env_bad_action_names_the_env():
    env = BatchEnv("cartpole-swingup", 1, autoreset_mode="disabled")
    env.reset(seed=0)
    with pytest.raises(UserError, match=r"NaN or inf for envs \[0\]"):
        env.step_one(np.array([np.nan]))
    with pytest.raises(UserError, match="action has shape"):
        env.step_one(np.zeros(3))


def test_arm_kinematics_of_one_pose_by_mujoco_equal_the_batched_numpy_chain():
    from embodia.tasks.arm_common import ARM_JOINTS, GRIP_SITE, ArmKinematics
    from embodia.tasks.registry import make_task

    kinematics = ArmKinematics(make_task("arm-pick-place").build_model(), ARM_JOINTS, GRIP_SITE)
    rng = np.random.default_rng(0)
    for _ in range(50):
        pose = rng.uniform(kinematics.lower, kinematics.upper, (1, len(ARM_JOINTS)))
        one = kinematics.jacobian(pose)  # N=1: mj_kinematics + mj_jacSite
        batched = kinematics.jacobian(np.concatenate([pose, pose]))  # N=2: the NumPy chain
        for got, want in zip(one, batched):
            np.testing.assert_allclose(got[0], want[0], rtol=0, atol=TOL)
        for got, want in zip(kinematics.forward(pose), kinematics.forward(np.concatenate([pose, pose]))):
            np.testing.assert_allclose(got[0], want[0], rtol=0, atol=TOL)


@pytest.mark.parametrize("task", ["arm-reach", "arm-pick-place"])
def test_one_env_arm_episodes_equal_the_same_episodes_in_a_batch(task):
    # the batch of two replays each episode seed in both envs: its FK/IK is the NumPy chain. Whole episodes agree
    # to ~1e-13; contacts can amplify the ~1e-16 FK differences past 1e-12 only over longer horizons
    one = BatchEnv(task, 1, seed=0, autoreset_mode="disabled")
    batch = BatchEnv(task, 2, seed=0, autoreset_mode="disabled")
    for seed in (11, 12, 13):
        got_obs, _ = one.reset(options={"episode_seeds": np.array([seed])})
        want_obs, _ = batch.reset(options={"episode_seeds": np.array([seed, seed])})
        np.testing.assert_allclose(got_obs[0], want_obs[0], rtol=0, atol=TOL)
        rng = np.random.default_rng(seed)
        for _ in range(one.max_episode_steps):
            action = rng.uniform(-1, 1, (1, one.action_dim))
            got = one.step(action)
            want = batch.step(np.concatenate([action, action]))
            for a, b in zip(got[:4], want[:4]):
                np.testing.assert_allclose(np.asarray(a, float)[0], np.asarray(b, float)[0], rtol=0, atol=TOL)
        assert got[3][0]  # the episode ran to its end


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_one_clips_actions_outside_the_box_as_the_batched_step(dtype):
    # most actions here leave the box [-1, 1]: the clip path, not the inside-the-box copy
    one = BatchEnv("cheetah-run", 1, seed=0, autoreset_mode="disabled")
    batch = batched_reference("cheetah-run", seed=0, autoreset_mode="disabled")
    one.reset(seed=4)
    batch.reset(seed=4)
    rng = np.random.default_rng(8)
    for _ in range(40):
        action = rng.uniform(-3, 3, 6).astype(dtype)
        assert_same_step(one.step_one(action), batch.step(action[None]))
        np.testing.assert_array_equal(one.sim.ctrl[0], np.clip(action.astype(np.float64), -1, 1))


def test_step_one_takes_a_list_or_a_batch_of_one():
    envs = [BatchEnv("cheetah-run", 1, seed=0, autoreset_mode="disabled") for _ in range(3)]
    for env in envs:
        env.reset(seed=1)
    action = [0.5, -0.25, 1.0, -1.0, 0.0, 0.75]
    results = [envs[0].step_one(action), envs[1].step_one(np.array([action])), envs[2].step_one(np.array(action))]
    for got in results[:2]:
        np.testing.assert_array_equal(got[0], results[2][0])
        assert got[1] == results[2][1]


@pytest.mark.parametrize("dof,speed,warns", [(0, 2e5, False), (3, 1e30, True)])
def test_a_diverged_one_env_step_and_the_steps_after_it_equal_the_rollout_path(dof, speed, warns):
    # the root sliding at 2e5: beyond MAX_QVEL, MuJoCo does not warn (embodia's bound); a hinge at 1e30: MuJoCo warns
    # and resets the data, the rollout stops at that substep. Afterwards both step on from a reset alike
    one = BatchEnv("cheetah-run", 1, seed=0, autoreset_mode="disabled")
    batch = batched_reference("cheetah-run", seed=0, autoreset_mode="disabled")
    for env in (one, batch):
        env.reset(seed=2)
        env.sim.qvel[0, dof] = speed
    rng = np.random.default_rng(9)
    action = rng.uniform(-1, 1, 6)
    got = one.step_one(action)
    assert_same_step(got, batch.step(action[None]))
    assert got[4]["diverged"] and got[3] and got[1] == 0.0
    np.testing.assert_array_equal(one.sim.state, batch.sim.state)
    assert one.sim.divergence_count == batch.sim.divergence_count == 1
    # MuJoCo warned, reset the data and the rollout stopped after that substep (less than a control step passed)
    assert (one.sim.time[0] < one.sim.dt - 1e-9) == warns
    assert not one.sim._single_warnings.any()  # cleared after the warned step, as each rollout call starts
    for env in (one, batch):
        env.reset(seed=3)
    for _ in range(30):
        action = rng.uniform(-1, 1, 6)
        assert_same_step(one.step_one(action), batch.step(action[None]))
