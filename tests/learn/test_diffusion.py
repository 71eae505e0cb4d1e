"""Diffusion policy: sampler math, loss decreases and it beats random on reach, round trip, ONNX, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from embodia.learn.diffusion import (
    DiffusionConfig,
    cosine_alphas_cumprod,
    ddim_sample,
    ddim_timesteps,
    export_diffusion,
    load_diffusion,
    train_diffusion,
)
from embodia.learn.il_common import collect_demonstrations, rollout_success
from embodia.learn.policy import load_trained_policy

TASK = "arm-reach"


def reach_controller(env):
    """Proportional reach expert read off the observation's goal - grip point (obs[18:21])."""
    scale = env.task.config.action_scale_m
    return lambda obs: np.clip(obs[:, 18:21] / scale, -1.0, 1.0)


@pytest.fixture(scope="module")
def reach_demos():
    return collect_demonstrations(TASK, 30, seed=0, num_envs=30, expert=reach_controller)


@pytest.fixture(scope="module")
def trained_diffusion(reach_demos, tmp_path_factory):
    config = {"num_steps": 800, "hidden_size": 96, "num_blocks": 2, "horizon": 4, "n_action_steps": 2,
              "num_inference_steps": 8}
    return train_diffusion(reach_demos, config, tmp_path_factory.mktemp("diffusion") / "reach")


def test_cosine_schedule_decreases_from_nearly_clean_to_nearly_noise():
    alphas_cumprod = cosine_alphas_cumprod(100)
    assert alphas_cumprod.shape == (100,)
    assert torch.all(alphas_cumprod[1:] < alphas_cumprod[:-1])
    assert alphas_cumprod[0] > 0.99 and alphas_cumprod[-1] < 1e-3
    assert ddim_timesteps(100, 10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]


def test_ddim_with_the_exact_denoiser_recovers_the_data_point():
    target = torch.tensor([[0.3, -0.5], [0.1, 0.9]])  # a one-point action distribution, (horizon, act_dim)
    alphas_cumprod = cosine_alphas_cumprod(100)

    def exact_denoiser(noisy, t, obs_norm):  # the true noise for data concentrated at `target`
        ac = alphas_cumprod[t][:, None, None]
        return (noisy - ac.sqrt() * target) / (1 - ac).sqrt()

    noise = torch.randn((5, 2, 2), generator=torch.Generator().manual_seed(0))
    sample = ddim_sample(exact_denoiser, torch.zeros(5, 1), noise, alphas_cumprod, ddim_timesteps(100, 5))
    torch.testing.assert_close(sample, target.expand(5, -1, -1), atol=1e-4, rtol=0)


def test_loss_decreases_and_policy_beats_random_on_reach(trained_diffusion):
    losses = json.loads((trained_diffusion / "state.json").read_text())["losses"]
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:20])
    diffusion = rollout_success(load_diffusion(trained_diffusion), TASK, 40, seed=321)
    random = rollout_success(lambda obs: np.random.default_rng(0).uniform(-1, 1, (len(obs), 3)), TASK, 40, seed=321)
    assert diffusion["success_rate"] >= 0.6
    assert random["success_rate"] <= 0.1
    assert diffusion["mean_return"] > random["mean_return"] + 15.0


def test_checkpoint_round_trip_gives_identical_actions(trained_diffusion, reach_demos):
    obs = reach_demos.observations[:32]
    first, second = load_diffusion(trained_diffusion), load_diffusion(trained_diffusion)
    np.testing.assert_array_equal(first.act(obs), second.act(obs))  # same sample_seed: same noise stream
    np.testing.assert_array_equal(first.act(obs), second.act(obs))
    assert isinstance(load_trained_policy(trained_diffusion), type(first))


def test_queue_executes_n_action_steps_then_resamples(trained_diffusion, reach_demos):
    policy = load_diffusion(trained_diffusion)
    obs = reach_demos.observations[:3]
    policy.reseed()
    chunk = policy.sample_chunk(obs)  # (3, horizon, act_dim)
    policy.reseed()
    np.testing.assert_array_equal(policy.act(obs), chunk[:, 0])
    np.testing.assert_array_equal(policy.act(obs * 0), chunk[:, 1])  # still the queued chunk
    policy.reset(np.array([0]))
    policy.reseed(7)
    resampled = policy.act(obs)  # env 0 resamples, envs 1-2 also ran out (n_action_steps=2)
    assert resampled.shape == (3, 3) and not np.allclose(resampled[0], chunk[0, 0])


def test_onnx_export_is_the_fixed_noise_ddim_graph(trained_diffusion, reach_demos, tmp_path):
    from embodia.learn import OnnxPolicy, load_policy

    obs = reach_demos.observations[:50]
    deployed = load_policy(trained_diffusion)  # the stateless fixed-noise actor
    onnx_policy = OnnxPolicy(export_diffusion(trained_diffusion, tmp_path / "dp.onnx"))
    np.testing.assert_allclose(onnx_policy.act(obs), deployed.act(obs), atol=1e-4)
    np.testing.assert_array_equal(deployed.act(obs), deployed.act(obs))  # deterministic
    assert onnx_policy.algo == "diffusion" and onnx_policy.act_dim == 3
    assert np.all(np.abs(onnx_policy.act(obs)) <= 1.0)


def test_bad_config_names_the_field():
    with pytest.raises(ValidationError, match="n_action_steps=9 exceeds horizon=8"):
        DiffusionConfig(n_action_steps=9)
    with pytest.raises(ValidationError, match="num_inference_steps=50 exceeds num_train_timesteps=20"):
        DiffusionConfig(num_train_timesteps=20, num_inference_steps=50)
    with pytest.raises(ValidationError, match="horizn"):
        DiffusionConfig.model_validate({"horizn": 4})
    with pytest.raises(ValidationError, match="ema_decay"):
        DiffusionConfig(ema_decay=1.0)


def test_wrong_checkpoint_kind_is_refused(trained_diffusion):
    from embodia.learn.bc import load_bc

    with pytest.raises(ValueError, match="expected 'bc'"):
        load_bc(trained_diffusion)
