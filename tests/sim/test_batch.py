"""BatchSim and BatchEnv: determinism, partial resets, divergence recovery, bad actions."""

import mujoco
import numpy as np
import pytest

from embodia.core.errors import UserError
from embodia.sim import BatchSim, load_model
from embodia.tasks import BatchEnv


def rollout(env: BatchEnv, seed: int, steps: int) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    trace = [obs]
    for _ in range(steps):
        obs, *_ = env.step(rng.uniform(-1, 1, (env.num_envs, env.action_dim)))
        trace.append(obs)
    return np.stack(trace)


def test_same_seed_gives_identical_episodes_bit_for_bit():
    dr = {"body_mass_scale": (0.8, 1.2), "friction_scale": (0.5, 1.5), "action_latency_steps": (0, 2),
          "obs_noise_std": 0.01, "action_noise_std": 0.05, "init_qpos_noise": 0.02}
    a = rollout(BatchEnv("cheetah-run", num_envs=4, randomization=dr), seed=7, steps=20)
    b = rollout(BatchEnv("cheetah-run", num_envs=4, randomization=dr), seed=7, steps=20)
    c = rollout(BatchEnv("cheetah-run", num_envs=4, randomization=dr), seed=8, steps=20)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert a[:, 0].std(axis=0).max() > 0  # observations are not constant


def test_partial_reset_leaves_other_envs_untouched():
    env = BatchEnv("cheetah-run", num_envs=6, seed=0)
    env.reset(seed=0)
    for _ in range(5):
        env.step(np.full((6, 6), 0.3))
    before = env.sim.state.copy()
    obs, _ = env.reset(options={"reset_mask": np.array([False, True, False, False, True, False])})
    keep = [0, 2, 3, 5]
    assert np.array_equal(env.sim.state[keep], before[keep])
    assert not np.allclose(env.sim.state[[1, 4]], before[[1, 4]])
    assert np.all(env.episode_step[[1, 4]] == 0) and np.all(env.episode_step[keep] == 5)


def test_episode_seed_replays_the_initial_state():
    env = BatchEnv("cheetah-run", num_envs=3, seed=0)
    _, info = env.reset(seed=11)
    first = env.sim.state.copy()
    env.reset(options={"episode_seeds": info["episode_seed"][::-1].copy()})
    assert np.array_equal(env.sim.state, first[::-1])


def test_time_limit_truncates_and_autoresets_same_step():
    env = BatchEnv("cartpole-swingup", num_envs=2, max_episode_steps=5)
    env.reset(seed=0)
    for step in range(5):
        obs, reward, terminated, truncated, info = env.step(np.zeros((2, 1)))
    assert truncated.all() and not terminated.any()
    assert info["_final_obs"].all() and info["final_obs"].shape == obs.shape
    assert np.all(env.episode_step == 0)  # already reset for the next episode


def test_next_step_autoreset_ignores_the_action_after_done():
    env = BatchEnv("cartpole-swingup", num_envs=2, max_episode_steps=3, autoreset_mode="next_step")
    env.reset(seed=0)
    for _ in range(3):
        *_, truncated, _ = env.step(np.zeros((2, 1)))
    assert truncated.all()
    obs, reward, terminated, truncated, _ = env.step(np.ones((2, 1)))
    assert np.all(reward == 0) and not truncated.any() and np.all(env.episode_step == 0)


@pytest.mark.parametrize("action, message", [
    (np.zeros((3, 5)), "expected (3, 6)"),
    (np.array([[0, 0, 0, 0, 0, 0], [np.nan, 0, 0, 0, 0, 0], [0, 0, 0, 0, np.inf, 0]], float), "envs [1, 2]"),
])
def test_bad_actions_raise_a_clear_error(action, message):
    env = BatchEnv("cheetah-run", num_envs=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        env.step(action)


def test_bad_controls_name_the_envs_and_leave_the_state_untouched():
    env = BatchEnv("cheetah-run", num_envs=3)
    env.reset(seed=0)
    state = env.sim.state.copy()
    ctrl = np.zeros((3, 6))
    ctrl[2, 1] = -np.inf
    with pytest.raises(ValueError, match=r"control contains NaN or inf for envs \[2\]"):
        env.sim.step(ctrl)
    assert np.array_equal(env.sim.state, state)


def test_actions_are_clipped_to_the_control_range():
    env = BatchEnv("cheetah-run", num_envs=2)
    env.reset(seed=0)
    env.step(np.full((2, 6), 5.0))
    assert np.allclose(env.sim.ctrl, 1.0)


def test_diverged_env_is_reset_flagged_and_counted_while_others_run():
    env = BatchEnv("cheetah-run", num_envs=4)
    env.reset(seed=0)
    env.sim.qvel[2] = 1e30  # blow up env 2 only
    healthy_before = env.sim.state[[0, 1, 3]].copy()
    obs, reward, terminated, truncated, info = env.step(np.zeros((4, 6)))
    assert info["diverged"].tolist() == [False, False, True, False]
    assert truncated[2] and reward[2] == 0.0 and np.isfinite(obs).all()
    assert env.sim.divergence_count == 1
    assert np.all(env.episode_step[[0, 1, 3]] == 1) and env.episode_step[2] == 0
    assert not np.array_equal(env.sim.state[[0, 1, 3]], healthy_before)  # they stepped on
    assert np.isfinite(env.sim.state).all()


def per_env_diverged(sim: BatchSim, expected_time: np.ndarray) -> list[bool]:
    """The divergence rule env by env: a non-finite state, a runaway speed or a wrong clock."""
    return [not (np.isfinite(sim.state[i]).all() and (np.abs(sim.qvel[i]) < 1e5).all()
                 and abs(sim.time[i] - expected_time[i]) < 0.5 * sim.model.opt.timestep) for i in range(sim.num_envs)]


@pytest.mark.parametrize("env_id, part, value", [
    (None, None, None), (1, "qvel", 2e5), (2, "qvel", -np.inf), (0, "qpos", np.nan), (3, "time", 1.0)])
def test_divergence_check_flags_exactly_the_broken_envs(env_id, part, value):
    # the whole-batch fast path (one reduction per check) and the per-env search agree with the rule
    sim = BatchSim(load_model("cheetah.xml"), 4, frame_skip=5, nthread=1)
    sim.step(np.zeros((4, 6)))
    expected_time = sim.time.copy()
    if env_id is not None:
        sim.state[env_id, sim.layout[part]] = value
    want = per_env_diverged(sim, expected_time)
    with np.errstate(invalid="ignore"):
        assert sim._diverged(expected_time).tolist() == want
    assert sim.divergence_count == sum(want)


def test_action_noise_is_clipped_to_the_control_range():
    # BatchEnv hands its clipped action to the physics unchecked; noise added there is clipped again
    env = BatchEnv("cheetah-run", num_envs=2, randomization={"action_noise_std": 0.5})
    env.reset(seed=0)
    for _ in range(5):
        env.step(np.ones((2, 6)))
        assert env.sim.ctrl.max() <= 1.0 and env.sim.ctrl.min() >= -1.0
        assert env.sim.ctrl.min() < 1.0  # the noise moved some controls


def test_batch_matches_plain_mujoco_stepping():
    model = load_model("cheetah.xml")
    sim = BatchSim(model, 3, frame_skip=5, nthread=2)
    rng = np.random.default_rng(0)
    sim.qpos[:] += rng.uniform(-0.1, 0.1, sim.qpos.shape)
    start = sim.state.copy()
    ctrl = rng.uniform(-1, 1, (3, model.nu))
    sim.step(ctrl)
    data = mujoco.MjData(model)
    for i in range(3):
        mujoco.mj_setState(model, data, start[i], mujoco.mjtState.mjSTATE_FULLPHYSICS)
        data.ctrl[:] = ctrl[i]
        for _ in range(5):
            mujoco.mj_step(model, data)
        np.testing.assert_allclose(sim.qpos[i], data.qpos, atol=1e-9)
        np.testing.assert_allclose(sim.qvel[i], data.qvel, atol=1e-7)


def test_external_push_moves_only_the_pushed_env():
    env = BatchEnv("cartpole-swingup", num_envs=2, perturbations=True, task_config={"swing_up": False})
    env.reset(seed=0, options={"episode_seeds": np.array([5, 5])})
    cart = env.model.body("cart").id
    env.sim.xfrc_applied[1, cart, 0] = 50.0  # 50 N along +x on env 1's cart
    env.step(np.zeros((2, 1)))
    assert env.sim.qvel[1, 0] > env.sim.qvel[0, 0] + 0.1


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown physics backend 'tpu'"):
        BatchSim(load_model("cheetah.xml"), 2, backend="tpu")


MOCAP_SCENE = """<mujoco><worldbody>
  <body name="target" mocap="true" pos="0 0 1"><geom type="sphere" size=".05" contype="0" conaffinity="0"/></body>
  <body name="ball" pos="0 0 0.5"><freejoint/><geom type="sphere" size=".1"/></body>
</worldbody></mujoco>"""


def test_mocap_bodies_step_per_env_and_render():
    from embodia.sim.render import BatchRenderer

    sim = BatchSim(load_model(MOCAP_SCENE), 3, frame_skip=2)
    sim.set_mocap_pos(np.array([1]), 0, np.array([0.3, 0.0, 1.0]))
    sim.step(np.zeros((3, 0)))
    assert np.allclose(sim.mocap_pos[1, 0], [0.3, 0.0, 1.0]) and np.allclose(sim.mocap_pos[0, 0], [0, 0, 1])
    images = BatchRenderer(sim, width=32, height=32).render(np.array([0, 1]))
    assert images.shape == (2, 32, 32, 3)


def test_mass_randomization_keeps_derived_constants_consistent():
    env = BatchEnv("cheetah-run", num_envs=2, randomization={"body_mass_scale": (2.0, 2.0)})
    env.reset(seed=0)
    model = env.sim.models[0]
    assert model.body_subtreemass[0] == pytest.approx(2.0 * env.model.body_subtreemass[0])


def test_physics_threads_follow_the_cpu_allocation(monkeypatch):
    """Workers set EMBODIA_NUM_THREADS to a job's CPUs; a batch without nthread uses that many, capped by its size."""
    model = load_model("cheetah.xml")
    monkeypatch.setenv("EMBODIA_NUM_THREADS", "1")
    assert BatchSim(model, 8).nthread == 1
    monkeypatch.setenv("EMBODIA_NUM_THREADS", "3")
    assert BatchSim(model, 8).nthread == 3 and BatchSim(model, 2).nthread == 2
    assert BatchSim(model, 8, nthread=2).nthread == 2  # an explicit count wins
    monkeypatch.setenv("EMBODIA_NUM_THREADS", "many")
    with pytest.raises(UserError, match="EMBODIA_NUM_THREADS='many'"):
        BatchSim(model, 8)
