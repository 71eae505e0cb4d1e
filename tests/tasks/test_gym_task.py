"""`gym:<id>` as an embodia task: Gymnasium's own reward and termination, and evaluation suites on it."""

import gymnasium as gym
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from embodia.tasks import BatchEnv, make_task
from embodia.tasks.registry import task_has_success


def test_gym_task_matches_gymnasium_reward_and_termination():
    env = BatchEnv("gym:Hopper-v5", num_envs=2, autoreset_mode="disabled")
    env.reset(seed=0)
    reference = gym.make("Hopper-v5")
    reference.reset(seed=0)
    reference.unwrapped.set_state(env.sim.qpos[0], env.sim.qvel[0])
    rng = np.random.default_rng(0)
    for _ in range(40):
        action = rng.uniform(-1, 1, (2, env.action_dim))
        obs, reward, terminated, _, info = env.step(action)
        ref_obs, ref_reward, ref_terminated, _, _ = reference.step(action[0].astype(np.float32))
        assert obs[0] == pytest.approx(ref_obs, abs=1e-5)
        assert reward[0] == pytest.approx(ref_reward, abs=1e-6) and terminated[0] == ref_terminated
        if terminated[0]:
            break
    assert env.max_episode_steps == 1000 and not info["success"].any()
    assert not task_has_success("gym:Hopper-v5") and not task_has_success("cheetah-run")
    assert task_has_success("arm-reach")


def test_non_mujoco_gym_env_and_physics_randomization_are_refused():
    with pytest.raises(ValueError, match="not a Gymnasium MuJoCo env"):
        make_task("gym:CartPole-v1")
    with pytest.raises(ValueError, match="knows nothing of physics randomization"):
        BatchEnv("gym:Hopper-v5", num_envs=1, randomization={"body_mass_scale": (0.9, 1.1)})


def _suite(tmp_path, **extra):
    suite = {"name": "hopper-check", "task": "gym:Hopper-v5", "episodes": 3, "max_episode_steps": 30,
             "scenarios": [{"name": "nominal"}, {"name": "noisy", "sensor": {"noise_std": 0.05}}], **extra}
    path = tmp_path / "hopper.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


@pytest.mark.slow
def test_eval_run_and_compare_on_a_gym_task(tmp_path):
    from embodia.cli import app
    from embodia.evaluate import load_suite

    path = _suite(tmp_path)
    assert load_suite(str(path)).metric == "return"  # no success notion: compared on return by default
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "run", str(path), "--policy", "random", "--out", str(tmp_path / "run"),
                                 "--no-videos"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["eval", "compare", str(path), "--baseline", "random", "--candidate", "random",
                                 "--out", str(tmp_path / "cmp"), "--no-videos"])
    assert result.exit_code == 0, result.output
    assert "return" in result.output


@pytest.mark.parametrize("source", ["gym:Hopper-v5", "cheetah-run"])
def test_no_success_rate_is_logged_for_tasks_without_success(tmp_path, source):
    import json

    from embodia.learn.logger import RunLogger
    from embodia.learn.vec_env import make_train_env

    env = make_train_env(source, num_envs=2, seed=0, env_kwargs={} if source.startswith("gym:") else
                         {"task_config": {"max_episode_steps": 5}})
    env.reset(seed=0)
    for _ in range(1000):
        env.step(np.zeros((2, env.act_dim)))
        if env.stats._finished:
            break
    returns, lengths, successes = env.stats.pop()
    assert len(returns) > 0 and successes is None
    logger = RunLogger(tmp_path, 100, tensorboard=False)
    logger.log_episodes(10, returns, lengths, successes)
    logger.close()
    logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert "charts/episode_return" in logged and "charts/success_rate" not in logged
    env.close()
