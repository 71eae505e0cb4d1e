"""Physics backends: selection and errors, the CPU contract, host hand-off, and CPU-vs-MJX/Warp parity.

The accelerator tests (marked `backends`) keep batches and horizons tiny and reuse one env per backend and
task, so each JIT compilation (MJX program, Warp kernels) happens once per run.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from embodia.core.errors import UserError
from embodia.sim import backend as backend_module
from embodia.sim.backend import BACKENDS, CpuRolloutBackend, backend_status, make_backend, to_host
from embodia.sim.batch import MAX_QVEL, BatchSim
from embodia.tasks.env import BatchEnv
from embodia.tasks.registry import make_task

ACCELERATED = ["mjx", "warp"]
# cartpole (no contacts) over 20 control steps in float32; cheetah (floor contacts) over 5
TOLERANCE = {"cartpole-balance": 1e-4, "cheetah-run": 1e-3}
RANDOMIZATION = {"body_mass_scale": (0.5, 1.5), "joint_damping_scale": (0.5, 2.0), "actuator_gain_scale": (0.8, 1.2),
                 "gravity_z": (-11.0, -8.0)}


# ---------------------------------------------------------------- selection and errors (no accelerator needed)
def test_unknown_backend_is_a_user_error_listing_the_names():
    model = make_task("cartpole-balance").build_model()
    with pytest.raises(UserError, match="unknown physics backend 'tpu'") as error:
        BatchSim(model, 2, backend="tpu")
    for name in BACKENDS:
        assert repr(name) in str(error.value)


def test_unavailable_backend_says_why_and_what_to_install(monkeypatch):
    real_find_spec = backend_module.importlib.util.find_spec
    monkeypatch.setattr(backend_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax" else real_find_spec(name, *a))
    assert backend_status()["mjx"] == (False, "jax is not installed")
    model = make_task("cartpole-balance").build_model()
    with pytest.raises(UserError, match=r"'mjx' is not available: jax is not installed.*pip install 'embodia\[mjx\]'"):
        BatchEnv("cartpole-balance", 2, backend="mjx")
    with pytest.raises(UserError, match="not available"):
        make_backend("mjx", model, 2, 1)


def test_cpu_backend_rejects_options_and_is_always_available():
    assert backend_status()["cpu"][0]
    with pytest.raises(UserError, match="takes no options"):
        BatchSim(make_task("cartpole-balance").build_model(), 2, backend_options={"device": "gpu"})


def test_sim_backends_command_lists_every_backend():
    result = subprocess.run([sys.executable, "-m", "embodia", "sim", "backends"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    for name in BACKENDS:
        assert name in result.stdout
    assert "yes" in result.stdout


def test_cpu_backend_returns_the_final_substep_or_all_of_them():
    env = BatchEnv("cheetah-run", 3, seed=0)
    env.reset(seed=0)
    sim = env.sim
    control = np.random.default_rng(0).uniform(-1, 1, (3, 1, sim.model.nu))
    backend = CpuRolloutBackend(sim.model, 3, 1)
    final, sensors = backend.step(sim.state.copy(), control, sim.control_spec, 4)
    assert final.shape == (3, sim.nstate) and sensors.shape == (3, sim.model.nsensordata)
    final = final.copy()
    every, _ = backend.step(sim.state.copy(), control, sim.control_spec, 4, substeps=True)
    assert every.shape == (3, 4, sim.nstate)
    np.testing.assert_array_equal(every[:, -1], final)
    assert not np.array_equal(every[:, 0], every[:, -1])
    backend.close()


def test_runaway_velocity_counts_as_divergence_even_when_finite():
    env = BatchEnv("cartpole-balance", 3, seed=0)
    env.reset(seed=0)
    env.sim.set_qvel(np.array([1]), np.full((1, env.sim.model.nv), 10 * MAX_QVEL))
    info = env.step(np.zeros((3, env.action_dim)))[4]
    assert info["diverged"].tolist() == [False, True, False]


def test_to_host_hands_cpu_buffers_over_without_a_copy():
    tensor = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    host = to_host(tensor)
    assert isinstance(host, np.ndarray) and host.dtype == np.float64
    assert np.shares_memory(host, tensor.numpy())  # DLPack: the same buffer
    single = to_host(torch.ones(4, dtype=torch.float32))
    assert single.dtype == np.float64 and single.tolist() == [1.0] * 4
    array = np.zeros(3)
    assert to_host(array) is array


# ---------------------------------------------------------------- accelerator backends
def _rollout(backend: str, task: str, num_envs: int, steps: int, randomization=None):
    """Env-state trajectory (steps, num_envs, nstate) under fixed random actions from one reset."""
    env = BatchEnv(task, num_envs, seed=0, backend=backend, randomization=randomization, autoreset_mode="disabled")
    env.reset(seed=7)
    rng = np.random.default_rng(1)
    states = []
    for _ in range(steps):
        info = env.step(rng.uniform(-1, 1, (num_envs, env.action_dim)))[4]
        assert not info["diverged"].any()
        states.append(env.sim.state.copy())
    return env, np.stack(states)


CASES = {"cartpole-balance": dict(num_envs=3, steps=20, randomization=RANDOMIZATION),
         "cheetah-run": dict(num_envs=2, steps=5, randomization=None)}


@pytest.fixture(scope="module")
def rollouts():
    """(backend, task) -> (env, states), built on first use and shared by the tests of this module."""
    cache = {}

    def get(backend: str, task: str):
        if (backend, task) not in cache:
            cache[(backend, task)] = _rollout(backend, task, **CASES[task])
        return cache[(backend, task)]

    yield get
    for env, _ in cache.values():
        env.close()


@pytest.mark.backends
@pytest.mark.slow
@pytest.mark.parametrize("backend", ACCELERATED)
@pytest.mark.parametrize("task", list(CASES))
def test_accelerated_backend_matches_cpu_mujoco(rollouts, backend, task):
    _, reference = rollouts("cpu", task)
    env, states = rollouts(backend, task)
    assert states.shape == reference.shape and states.dtype == np.float64
    assert env.sim.sensordata.shape == (CASES[task]["num_envs"], env.model.nsensordata)
    layout = env.sim.layout
    for part in ("time", "qpos", "qvel"):
        error = np.abs(states[..., layout[part]] - reference[..., layout[part]]).max()
        assert error < TOLERANCE[task], f"{backend} {task} {part} differs from C MuJoCo by {error:.2e}"
    assert np.abs(np.diff(states[..., layout["qpos"]], axis=0)).max() > 1e-3  # it moved


@pytest.mark.backends
@pytest.mark.slow
@pytest.mark.parametrize("backend", ACCELERATED)
def test_accelerated_backend_flags_divergence_without_resetting(rollouts, backend):
    env, _ = rollouts(backend, "cartpole-balance")
    sim = env.sim
    sim.set_qpos(np.array([0]), np.full((1, sim.model.nq), np.nan))
    sim.set_qvel(np.array([2]), np.full((1, sim.model.nv), 10 * MAX_QVEL))
    info = env.step(np.zeros((3, env.action_dim)))[4]
    assert info["diverged"].tolist() == [True, False, True]
    assert np.isfinite(sim.qpos[1]).all()


@pytest.mark.backends
@pytest.mark.slow
@pytest.mark.parametrize("backend", ACCELERATED)
def test_accelerated_backend_returns_every_substep_on_request(rollouts, backend):
    env, _ = rollouts(backend, "cartpole-balance")
    env.reset(seed=3)  # healthy states, whatever other tests left in this shared env
    sim = env.sim
    control = np.full((3, 1, sim.model.nu), 0.3)
    final, _ = sim.backend.step(sim.state, control, sim.control_spec, 3)
    every, sensors = sim.backend.step(sim.state, control, sim.control_spec, 3, substeps=True)
    assert every.shape == (3, 3, sim.nstate) and sensors.shape == (3, 3, sim.model.nsensordata)
    np.testing.assert_allclose(every[:, -1], final, atol=1e-4)  # float32; solver warm starts differ
    assert np.abs(every[:, 0] - every[:, -1]).max() > 1e-3


@pytest.mark.backends
def test_to_host_takes_jax_and_warp_arrays():
    import jax.numpy as jnp
    import warp as wp

    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    for device_array in (jnp.asarray(values), wp.array(values, dtype=float, device="cpu")):
        host = to_host(device_array)
        assert host.dtype == np.float64 and host.shape == (2, 3)
        np.testing.assert_array_equal(host, values)


@pytest.mark.backends
@pytest.mark.slow
@pytest.mark.parametrize("backend", ACCELERATED)
def test_train_ppo_end_to_end_on_accelerated_backend(tmp_path, backend):
    result = subprocess.run([sys.executable, "-m", "embodia", "train", "--task", "cartpole-balance", "--algo", "ppo",
                             "--backend", backend, "--total-steps", "2048", "--out", str(tmp_path),
                             "--set", "progress=false", "--set", "tensorboard=false"],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "final").is_dir()
    assert '"backend": "' + backend + '"' in (runs[0] / "checkpoints" / "final" / "config.json").read_text()


def test_configs_naming_a_backend_refuse_unknown_names_up_front():
    from pydantic import ValidationError

    from embodia.data.generate import GenerateConfig
    from embodia.evaluate.suite import Suite

    assert GenerateConfig(task="arm-reach", backend="warp").backend == "warp"
    with pytest.raises(ValidationError, match="unknown physics backend 'tpu'.*'mjx'"):
        GenerateConfig(task="arm-reach", backend="tpu")
    with pytest.raises(ValidationError, match="unknown physics backend 'gpu'"):
        Suite(name="s", task="cartpole-balance", backend="gpu", scenarios=[{"name": "nominal"}])


def test_cli_backend_option_reaches_the_simulator(tmp_path):
    for args in (["sim", "video", "--task", "cartpole-balance", "--out", str(tmp_path / "x.mp4"), "--steps", "2"],
                 ["sim", "bench", "--task", "cartpole-balance", "--num-envs", "2", "--steps", "2"],
                 ["train", "--task", "cartpole-balance", "--total-steps", "64", "--out", str(tmp_path)]):
        result = subprocess.run([sys.executable, "-m", "embodia", *args, "--backend", "tpu"], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 2, (args, result.stderr)
        assert "unknown physics backend 'tpu'" in result.stderr and "Traceback" not in result.stderr
