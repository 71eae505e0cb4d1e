"""The arm and its tasks: kinematics against MuJoCo, IK delta control, task contracts, determinism, cameras."""

import mujoco
import numpy as np
import pytest

from embodia.sim.assets import load_model
from embodia.tasks import BatchEnv
from embodia.tasks.arm_common import (
    ARM_JOINTS,
    GRIP_SITE,
    HOME_QPOS,
    TOOL_DOWN,
    ArmKinematics,
    cross3,
    default_randomization,
    orientation_error,
)

ARM_TASKS = ["arm-reach", "arm-push", "arm-pick-place"]
OBS_DIMS = {"arm-reach": 21, "arm-push": 38, "arm-pick-place": 38}
ACT_DIMS = {"arm-reach": 3, "arm-push": 4, "arm-pick-place": 4}


@pytest.fixture(scope="module")
def cube_model():
    return load_model("arm_cube.xml")


@pytest.fixture(scope="module")
def kinematics(cube_model):
    return ArmKinematics(cube_model, ARM_JOINTS, GRIP_SITE)


def _random_joint_pos(kinematics, count, seed=0):
    return np.random.default_rng(seed).uniform(kinematics.lower, kinematics.upper, (count, len(ARM_JOINTS)))


def test_forward_kinematics_and_jacobian_match_mujoco(cube_model, kinematics):
    joint_pos = _random_joint_pos(kinematics, 8)
    site_pos, site_rot, jac = kinematics.jacobian(joint_pos)
    data = mujoco.MjData(cube_model)
    jacp, jacr = np.zeros((3, cube_model.nv)), np.zeros((3, cube_model.nv))
    for k, q in enumerate(joint_pos):
        data.qpos[kinematics.qpos_adr] = q
        mujoco.mj_forward(cube_model, data)
        mujoco.mj_jacSite(cube_model, data, jacp, jacr, kinematics.site_id)
        np.testing.assert_allclose(site_pos[k], data.site_xpos[kinematics.site_id], atol=1e-6)
        np.testing.assert_allclose(site_rot[k].ravel(), data.site_xmat[kinematics.site_id], atol=1e-6)
        np.testing.assert_allclose(jac[k, :3], jacp[:, kinematics.dof_adr], atol=1e-6)
        np.testing.assert_allclose(jac[k, 3:], jacr[:, kinematics.dof_adr], atol=1e-6)


TILTED_CHAIN = """<mujoco><worldbody>
  <body name="base" pos="0.1 0 0.2" quat="0.9 0.1 0.3 0.2">
    <joint name="a" type="hinge" axis="0 0.6 0.8" pos="0.02 0.01 0"/><geom size="0.05"/>
    <body name="hand" pos="0 0.1 0.3" quat="0.7 0 0.7 0.1">
      <body name="finger" pos="0.05 0 0.1" euler="0.3 0.2 0.1">
        <joint name="b" type="hinge" axis="1 0 0" pos="0 0.03 -0.02"/><geom size="0.05"/>
        <site name="tip" pos="0.01 0.02 0.2" quat="0.8 0.2 0 0.1"/>
      </body>
    </body>
  </body>
</worldbody></mujoco>"""


def test_kinematics_of_a_chain_with_offsets_and_tilts_match_mujoco():
    # the arm's own links are untilted with joints at their origins; this chain takes every general branch
    model = mujoco.MjModel.from_xml_string(TILTED_CHAIN)
    chain = ArmKinematics(model, ("a", "b"), "tip")
    joints = [link for link in chain.links if link["joint"] is not None]
    assert all(link["anchor"] is not None for link in joints) and all(link["rot"] is not None for link in chain.links)
    joint_pos = np.random.default_rng(4).uniform(-2.0, 2.0, (5, 2))
    site_pos, site_rot, jac = chain.jacobian(joint_pos)
    data = mujoco.MjData(model)
    jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    for k, q in enumerate(joint_pos):
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        mujoco.mj_jacSite(model, data, jacp, jacr, chain.site_id)
        np.testing.assert_allclose(site_pos[k], data.site_xpos[chain.site_id], atol=1e-12)
        np.testing.assert_allclose(site_rot[k].ravel(), data.site_xmat[chain.site_id], atol=1e-12)
        np.testing.assert_allclose(jac[k], np.concatenate([jacp, jacr]), atol=1e-12)


def test_remembered_kinematics_follow_every_pose_change(cube_model):
    remembering = ArmKinematics(cube_model, ARM_JOINTS, GRIP_SITE)
    poses = [_random_joint_pos(remembering, 3, seed) for seed in (0, 0, 1)] + [_random_joint_pos(remembering, 1, 2)]
    for joint_pos in poses:  # the repeated pose is served from memory; every other one recomputed
        fresh = ArmKinematics(cube_model, ARM_JOINTS, GRIP_SITE).forward(joint_pos)
        remembered = remembering.forward(joint_pos)
        assert all(np.array_equal(a, b) for a, b in zip(remembered, fresh))
        assert not remembered[0].flags.writeable  # a caller cannot corrupt the remembered pose
    changed = poses[-1].copy()
    changed[0, 3] = np.nextafter(changed[0, 3], np.inf)  # one ulp in one joint is a new pose
    remembering.forward(poses[-1])
    fresh = ArmKinematics(cube_model, ARM_JOINTS, GRIP_SITE).forward(changed)
    assert all(np.array_equal(a, b) for a, b in zip(remembering.forward(changed), fresh))


def test_cross3_is_bit_identical_to_numpy_cross():
    a, b = np.random.default_rng(3).normal(size=(2, 5, 4, 3))
    components = (a[..., 0], a[..., 1], a[..., 2], b[..., 0], b[..., 1], b[..., 2])
    assert np.array_equal(cross3(*components), np.cross(a, b))


def test_home_pose_points_the_tool_down_above_the_table(kinematics):
    site_pos, site_rot, _, _ = kinematics.forward(HOME_QPOS[None])
    np.testing.assert_allclose(site_pos[0], [0.4, 0.0, 0.2], atol=1e-4)
    np.testing.assert_allclose(site_rot[0], TOOL_DOWN, atol=1e-4)


def test_ik_step_moves_the_grip_point_by_the_requested_delta(kinematics):
    rng = np.random.default_rng(1)
    joint_pos = HOME_QPOS + rng.uniform(-0.2, 0.2, (16, 6))
    start, start_rot, _, _ = kinematics.forward(joint_pos)
    delta = rng.uniform(-0.02, 0.02, (16, 3))
    solved = kinematics.solve_ik(joint_pos, start + delta, start_rot, damping=1e-3, iterations=3)
    reached, reached_rot, _, _ = kinematics.forward(solved)
    np.testing.assert_allclose(reached - start, delta, atol=5e-4)
    assert np.abs(orientation_error(reached_rot, start_rot)).max() < 5e-3


def test_kinematics_rejects_a_chain_with_the_wrong_joints(cube_model):
    with pytest.raises(ValueError, match="joint6"):
        ArmKinematics(cube_model, ARM_JOINTS[:-1], GRIP_SITE)
    with pytest.raises(ValueError, match="no site named 'tcp'"):
        ArmKinematics(cube_model, ARM_JOINTS, "tcp")


def test_delta_action_moves_the_simulated_grip_point():
    env = BatchEnv("arm-reach", 3, seed=0)
    obs, _ = env.reset(seed=0)
    start = obs[:, 12:15].copy()
    action = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    env.step(action)
    for _ in range(5):
        obs, *_ = env.step(np.zeros((3, 3)))
    scale = env.task.config.action_scale_m
    np.testing.assert_allclose(obs[:, 12:15] - start, scale * action, atol=2e-3)
    env.close()


@pytest.mark.parametrize("task", ARM_TASKS)
def test_observation_reward_and_spaces_have_the_documented_shapes(task):
    env = BatchEnv(task, 4, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, OBS_DIMS[task]) and obs.dtype == np.float64
    assert env.action_dim == ACT_DIMS[task]
    np.testing.assert_array_equal(env.single_action_space.low, -1.0)
    action = np.random.default_rng(0).uniform(-1, 1, (4, env.action_dim))
    obs, reward, terminated, truncated, info = env.step(action)
    assert reward.shape == (4,) and np.isfinite(reward).all()
    assert terminated.dtype == bool and info["success"].shape == (4,)
    scales = env.task.config.reward_scales
    for name in scales:
        assert info[f"reward/{name}"].shape == (4,)
    np.testing.assert_allclose(sum(info[f"reward/{n}"] for n in scales), reward)
    assert set(env.task.failure_modes(env.sim)) <= {"cube_fell"}
    env.close()


@pytest.mark.parametrize("task", ARM_TASKS)
def test_reset_is_deterministic_for_a_seed(task):
    def rollout():
        env = BatchEnv(task, 3, seed=0, randomization=default_randomization(task))
        obs, _ = env.reset(seed=7)
        actions = np.random.default_rng(3).uniform(-1, 1, (5, 3, env.action_dim))
        trace = [obs]
        for action in actions:
            trace.append(env.step(action)[0])
        env.close()
        return np.stack(trace)

    first, second = rollout(), rollout()
    np.testing.assert_array_equal(first, second)
    assert np.ptp(first[0], axis=0).max() > 0.01  # episodes differ from env to env


def test_reach_goals_are_inside_the_configured_box():
    env = BatchEnv("arm-reach", 64, seed=0)
    obs, _ = env.reset(seed=1)
    goal = obs[:, 15:18]
    cfg = env.task.config
    assert (goal >= np.array(cfg.goal_low) - 1e-9).all() and (goal <= np.array(cfg.goal_high) + 1e-9).all()
    np.testing.assert_allclose(obs[:, 18:21], goal - obs[:, 12:15])
    env.close()


def test_reach_success_and_reward_follow_the_distance():
    env = BatchEnv("arm-reach", 8, seed=0)
    obs, _ = env.reset(seed=2)
    for _ in range(30):
        obs, reward, _, _, info = env.step(np.clip(obs[:, 18:21] / 0.03, -1, 1))
    distance = np.linalg.norm(obs[:, 18:21], axis=1)
    assert info["success"].all() and (distance < 0.02).all()
    np.testing.assert_allclose(info["reward/distance"], -distance)
    env.close()


def test_default_randomization_is_mild_and_rejects_other_tasks():
    dr = default_randomization("arm-push")
    assert dr.changes_model() and dr.body_mass_scale[0] >= 0.5
    with pytest.raises(ValueError, match="cheetah-run"):
        default_randomization("cheetah-run")


@pytest.mark.parametrize("camera", ["front", "wrist"])
def test_cameras_render_the_requested_shape(camera):
    env = BatchEnv("arm-push", 2, seed=0)
    env.reset(seed=0)
    frames = env.render([0, 1], camera=camera, width=64, height=48)
    assert frames.shape == (2, 48, 64, 3) and frames.dtype == np.uint8
    assert frames.std() > 5.0  # a real scene, not a blank image
    env.close()


def test_push_goals_are_on_the_table_at_the_configured_distance():
    env = BatchEnv("arm-push", 128, seed=0)
    env.reset(seed=4)
    cfg, task = env.task.config, env.task
    goal, cube = task.goal_pos(env.sim), task.cube_pos(env.sim)
    distance = np.linalg.norm(goal[:, :2] - cube[:, :2], axis=1)
    assert (distance >= cfg.goal_distance_m[0] - 1e-9).all() and (distance <= cfg.goal_distance_m[1] + 1e-9).all()
    assert (goal[:, :2] >= np.array(cfg.goal_low) - 1e-9).all() and (goal[:, :2] <= np.array(cfg.goal_high) + 1e-9).all()
    np.testing.assert_allclose(goal[:, 2], 0.02)
    assert not task.success(env.sim).any()
    env.close()


def test_pick_place_goals_span_table_to_air():
    env = BatchEnv("arm-pick-place", 128, seed=0)
    env.reset(seed=5)
    goal = env.task.goal_pos(env.sim)
    assert goal[:, 2].min() < 0.06 and goal[:, 2].max() > 0.2
    env.close()


def test_cube_off_the_table_terminates_with_a_named_failure():
    env = BatchEnv("arm-pick-place", 2, seed=0, autoreset_mode="disabled")
    env.reset(seed=0)
    task = env.task
    qpos = env.sim.qpos.copy()
    qpos[1, task.cube_qpos : task.cube_qpos + 3] = [0.95, 0.0, -0.2]  # beside the table, below its top
    env.sim.set_qpos(np.arange(2), qpos)
    _, _, terminated, _, _ = env.step(np.zeros((2, 4)))
    assert terminated.tolist() == [False, True]
    assert task.failure_modes(env.sim)["cube_fell"].tolist() == [False, True]
    env.close()


def test_holding_needs_the_cube_between_closed_fingers():
    env = BatchEnv("arm-pick-place", 1, seed=0)
    env.reset(seed=0)
    task = env.task
    assert not task.holding(env.sim).any()  # fingers open, cube on the table
    env.close()


def test_mass_randomized_models_get_consistent_constants():
    env = BatchEnv("arm-push", 3, seed=0, randomization=default_randomization("arm-push"))
    env.reset(seed=0)
    masses = [m.body_mass.sum() for m in env.sim.models]
    assert np.ptp(masses) > 0  # each env has its own masses
    for model in env.sim.models:
        fresh = model.__copy__()
        mujoco.mj_setConst(fresh, mujoco.MjData(fresh))
        np.testing.assert_allclose(model.dof_M0, fresh.dof_M0)
        np.testing.assert_allclose(model.dof_invweight0, fresh.dof_invweight0)
    env.close()
