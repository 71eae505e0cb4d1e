import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embodia.learn import load_policy
from embodia.learn.ppo import gae
from embodia.learn.rollout import episode_returns, random_returns
from embodia.learn.train import train

QUIET = {"progress": False, "tensorboard": False}


def test_gae_matches_a_hand_computation():
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[0.5], [0.5], [0.5]])
    dones = torch.tensor([[0.0], [0.0], [1.0]])  # obs 2 starts a new episode: no bootstrap across t=1 -> t=2
    adv, ret = gae(rewards, values, dones, next_value=torch.tensor([2.0]), next_done=torch.tensor([0.0]),
                   gamma=0.9, gae_lambda=0.5)
    d2 = 1.0 + 0.9 * 2.0 - 0.5
    d1 = 1.0 - 0.5
    d0 = 1.0 + 0.9 * 0.5 - 0.5
    expected = torch.tensor([[d0 + 0.45 * d1], [d1], [d2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_gae_np_equals_the_torch_recursion_bit_for_bit():
    from embodia.learn.ppo import gae_np

    rng = np.random.default_rng(4)
    t, n = 7, 5
    rewards, values = (torch.from_numpy(rng.normal(size=(t, n)).astype(np.float32)) for _ in range(2))
    dones = torch.from_numpy((rng.random((t, n)) < 0.3).astype(np.float32))
    next_value, next_done = torch.from_numpy(rng.normal(size=n).astype(np.float32)), torch.tensor([0.0, 1, 0, 1, 0])
    expected, last = torch.zeros_like(rewards), torch.zeros(n)
    for step in reversed(range(t)):  # the torch loop gae_np replaced
        nonterminal = 1.0 - (next_done if step == t - 1 else dones[step + 1])
        following = next_value if step == t - 1 else values[step + 1]
        last = rewards[step] + 0.97 * following * nonterminal - values[step] + 0.97 * 0.9 * nonterminal * last
        expected[step] = last
    adv, ret = gae_np(rewards.numpy(), values.numpy(), dones.numpy(), next_value.numpy(), next_done.numpy(), 0.97, 0.9)
    np.testing.assert_array_equal(adv, expected.numpy())
    np.testing.assert_array_equal(ret, (expected + values).numpy())


@pytest.mark.slow
def test_ppo_learns_cartpole_balance(tmp_path):
    run = train("cartpole-balance", "ppo", total_steps=12288, seed=0, out=tmp_path, overrides=QUIET)
    returns, _ = episode_returns(load_policy(run), "cartpole-balance", num_envs=16)
    baseline = random_returns("cartpole-balance", num_envs=16).mean()
    assert returns.mean() > 3 * baseline, (returns.mean(), baseline)


def _final_weights(run):
    return load_file(run / "checkpoints" / "final" / "model.safetensors")


def _resume_copy(run, tmp_path, step_name):
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(run / "checkpoints" / step_name, resumed / "checkpoints" / step_name)
    (resumed / "checkpoints" / "latest").write_text(step_name)
    return resumed


@pytest.mark.parametrize("desired_kl", [None, 0.02])
def test_resume_from_half_way_checkpoint_matches_uninterrupted_run(tmp_path, desired_kl):
    """Also with the adaptive learning rate, whose current rate the checkpoint must carry."""
    overrides = {**QUIET, "num_envs": 8, "num_steps": 16, "num_minibatches": 2, "update_epochs": 2,
                 "checkpoint_every": 256, "desired_kl": desired_kl,
                 "env_kwargs": {"randomization": {"body_mass_scale": [0.8, 1.2]}, "task_config": {"max_episode_steps": 10}}}
    run = train("cartpole-swingup", "ppo", total_steps=512, seed=3, out=tmp_path, overrides=overrides, name="full")
    resumed = train("", "", resume=_resume_copy(run, tmp_path, "step_000000000256"))
    full, again = _final_weights(run), _final_weights(resumed)
    assert full.keys() == again.keys()
    for key in full:
        torch.testing.assert_close(again[key], full[key], atol=1e-5, rtol=0)
    start = load_file(resumed / "checkpoints" / "step_000000000256" / "model.safetensors")
    assert any(not torch.equal(start[k], full[k]) for k in full)  # training moved the weights after the checkpoint
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert lines and '"step": 512' in lines[-1]


def test_resume_with_missing_checkpoint_file_names_it(tmp_path):
    run = train("cartpole-balance", "ppo", total_steps=256, seed=0, out=tmp_path,
                overrides={**QUIET, "num_envs": 8, "num_steps": 16, "num_minibatches": 2}, name="r")
    (run / "checkpoints" / "final" / "normalizer.safetensors").unlink()
    with pytest.raises(ValueError, match=r"normalizer\.safetensors is missing"):
        train("", "", resume=run)


def test_policy_actions_are_deterministic_and_within_bounds(tmp_path):
    run = train("cartpole-balance", "ppo", total_steps=256, seed=0, out=tmp_path,
                overrides={**QUIET, "num_envs": 8, "num_steps": 16, "num_minibatches": 2}, name="p")
    policy = load_policy(run)
    obs = np.random.default_rng(0).normal(0, 5, (64, policy.obs_dim))
    actions = policy.act(obs)
    assert actions.shape == (64, 1) and actions.dtype == np.float32
    np.testing.assert_array_equal(actions, policy.act(obs))
    assert np.all(actions >= policy.action_low) and np.all(actions <= policy.action_high)
    with pytest.raises(ValueError, match=r"expected \(batch, 5\)"):
        policy.act(np.zeros((2, 4)))


@pytest.mark.slow
def test_ppo_reaches_arm_reach_goals_and_callback_stops_early(tmp_path):
    from embodia.learn.trainer import live_policy

    seen = []

    def stop_when_reaching(trainer) -> bool:
        if trainer.iteration % 10:
            return False
        _, success = episode_returns(live_policy(trainer), "arm-reach", num_envs=32, success_at_end=True)
        seen.append((trainer.global_step, success.mean()))
        return success.mean() >= 0.9

    train("arm-reach", "ppo", total_steps=200_000, seed=0, out=tmp_path, overrides=QUIET, callback=stop_when_reaching)
    assert seen[-1][1] >= 0.9 and seen[-1][0] < 200_000, seen
    _, random_success = episode_returns(lambda obs: np.zeros((len(obs), 3)), "arm-reach", num_envs=32, success_at_end=True)
    assert random_success.mean() < 0.2


@pytest.mark.parametrize("activation,clip_vloss", [("tanh", False), ("elu", True), ("silu", False), ("relu", True)])
def test_hand_written_gradients_match_autograd_of_ppo_losses(activation, clip_vloss):
    from embodia.learn.ppo import ActorCritic, PPOConfig, ppo_loss_grads, ppo_losses

    config = PPOConfig(hidden_sizes=[32, 16], activation=activation, clip_vloss=clip_vloss, ent_coef=0.01,
                       init_log_std=-0.3)
    torch.manual_seed(0)
    agent = ActorCritic(7, 3, config)
    rng = np.random.default_rng(1)
    batch = 64
    obs = rng.normal(size=(batch, 7)).astype(np.float32)
    actions = rng.normal(size=(batch, 3)).astype(np.float32)
    with torch.no_grad():
        old_logprob, _ = agent.actor.log_prob_and_entropy(torch.from_numpy(obs), torch.from_numpy(actions))
    # a spread of ratios on both sides of the clip range, and advantages of both signs
    old_logprob = (old_logprob + torch.from_numpy(rng.normal(0, 0.3, batch).astype(np.float32))).numpy()
    advantages = rng.normal(size=batch).astype(np.float32)
    old_value = rng.normal(size=batch).astype(np.float32)
    returns = rng.normal(size=batch).astype(np.float32)

    stats = ppo_loss_grads(agent, obs, actions, old_logprob, advantages, old_value, returns, config)
    manual = torch.from_numpy(agent.parameter_grads())

    new_logprob, entropy = agent.actor.log_prob_and_entropy(torch.from_numpy(obs), torch.from_numpy(actions))
    new_value = agent.value(torch.from_numpy(obs))
    losses = ppo_losses(new_logprob, torch.from_numpy(old_logprob), torch.from_numpy(advantages), new_value,
                        torch.from_numpy(old_value), torch.from_numpy(returns), config)
    loss = losses["pg_loss"] - config.ent_coef * entropy + config.vf_coef * losses["v_loss"]
    agent.zero_grad()
    loss.backward()
    reference = torch.cat([p.grad.reshape(-1) for p in agent.parameters()])
    assert 0.05 < stats["clipfrac"] < 0.95  # both gradient branches of the clipped objective are exercised
    torch.testing.assert_close(manual, reference, atol=2e-6, rtol=1e-4)
    assert stats["pg_loss"] == pytest.approx(float(losses["pg_loss"].detach()), rel=1e-5, abs=1e-6)
    assert stats["v_loss"] == pytest.approx(float(losses["v_loss"].detach()), rel=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_flat_adam_matches_torch_adam(fused):
    from embodia.learn.ppo import FlatAdam

    rng = np.random.default_rng(0)
    params = rng.normal(size=50).astype(np.float32)
    grads = np.zeros_like(params)
    reference = torch.nn.Parameter(torch.from_numpy(params.copy()))
    torch_adam = torch.optim.Adam([reference], lr=1e-2, eps=1e-5)
    ours = FlatAdam(params, grads, lr=1e-2, fused=fused)
    for _ in range(5):
        grads[:] = rng.normal(size=50)
        reference.grad = torch.from_numpy(grads.copy())
        torch_adam.step()
        ours.step()
    np.testing.assert_allclose(params, reference.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_actor_critic_parameters_view_the_fused_flat_buffer_and_checkpoints_keep_parameter_order():
    from embodia.learn.ppo import ActorCritic, FlatAdam, PPOConfig

    torch.manual_seed(0)
    agent = ActorCritic(5, 2, PPOConfig(hidden_sizes=[8, 4]))
    canonical = torch.cat([p.detach().reshape(-1) for p in agent.parameters()]).numpy()
    np.testing.assert_array_equal(agent.flat.numpy()[agent.parameter_order], canonical)
    assert sorted(agent.parameter_order.tolist()) == list(range(len(canonical)))
    first_actor_weight = agent.actor.mean[0].weight
    with torch.no_grad():
        first_actor_weight[1, 2] = 7.0  # torch writes land in the buffer the NumPy network reads
    assert agent.net.weights[0][0, 1, 2] == 7.0 and agent.net.weights[0][1, 1, 2] != 7.0
    grads = agent.flat_grad.numpy()
    grads[:] = np.arange(len(grads))
    adam = FlatAdam(agent.flat.numpy(), grads, lr=1e-3, order=agent.parameter_order)
    adam.step()
    state = adam.state_dict()
    np.testing.assert_allclose(state["exp_avg"].numpy(), 0.1 * grads[agent.parameter_order], rtol=1e-6)
    again = FlatAdam(agent.flat.numpy(), grads, lr=1e-3, order=agent.parameter_order)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.exp_avg, adam.exp_avg)
    np.testing.assert_array_equal(again.exp_avg_sq, adam.exp_avg_sq)


def test_evaluating_the_live_policy_mid_run_does_not_change_training(tmp_path):
    from embodia.learn.trainer import live_policy

    overrides = {**QUIET, "num_envs": 8, "num_steps": 16, "num_minibatches": 2, "update_epochs": 2}

    def evaluate_live(trainer) -> bool:
        live_policy(trainer).act(np.zeros((1, 5)))
        return False

    plain = train("cartpole-balance", "ppo", total_steps=512, seed=1, out=tmp_path, overrides=overrides, name="a")
    watched = train("cartpole-balance", "ppo", total_steps=512, seed=1, out=tmp_path, overrides=overrides, name="b",
                    callback=evaluate_live)
    for key, value in _final_weights(plain).items():
        torch.testing.assert_close(_final_weights(watched)[key], value, atol=0, rtol=0)


def test_normalized_advantages_equal_numpy_mean_and_std_row_by_row():
    from embodia.learn.ppo import normalized_advantages

    rows = np.random.default_rng(2).normal(3.0, 7.0, size=(5, 96)).astype(np.float32)
    expected = np.stack([(row - row.mean()) / (row.std(ddof=1) + 1e-8) for row in rows])
    np.testing.assert_array_equal(normalized_advantages(rows), expected)  # bit for bit: training stays seed-identical


@pytest.mark.parametrize("clip_vloss", [False, True])
def test_update_equals_plain_minibatch_loop_bit_for_bit(clip_vloss):
    """The gathered, vectorized epoch gives exactly the weights and losses of a plain per-minibatch loop."""
    from embodia.learn.ppo import (
        PPOConfig,
        PPOTrainer,
        clip_grad_norm,
        gae,
        ppo_loss_grads,
    )
    from embodia.learn.vec_env import make_train_env

    config = PPOConfig(task="cartpole-swingup", num_envs=8, num_steps=16, num_minibatches=4, update_epochs=3,
                       clip_vloss=clip_vloss, ent_coef=0.01, total_steps=1024, tensorboard=False, progress=False)

    def collected() -> PPOTrainer:  # two identical trainers (same seed) after one rollout
        trainer = PPOTrainer(config, make_train_env("cartpole-swingup", 8, 0))
        trainer.collect_rollout()
        return trainer

    trainer = collected()
    summary = trainer.update()
    plain = collected()
    next_value = torch.from_numpy(plain.agent.value_np(plain._normalized(plain.next_obs)))
    adv, ret = gae(torch.from_numpy(plain.rewards), torch.from_numpy(plain.values), torch.from_numpy(plain.dones),
                   next_value, torch.from_numpy(plain.next_done.astype(np.float32)), config.gamma, config.gae_lambda)
    data = [plain.obs.reshape(128, -1), plain.actions.reshape(128, -1), plain.logprobs.reshape(-1),
            adv.numpy().reshape(-1), plain.values.reshape(-1), ret.numpy().reshape(-1)]
    stats = []
    for _ in range(config.update_epochs):
        order = torch.randperm(128).numpy()
        for start in range(0, 128, 32):
            idx = order[start : start + 32]
            stats.append(ppo_loss_grads(plain.agent, *(d[idx] for d in data), config))
            clip_grad_norm(plain.agent.flat_grad.numpy(), config.max_grad_norm)
            plain.optimizer.step()
    assert not np.array_equal(trainer.agent.flat.numpy(), collected().agent.flat.numpy())  # the update moved them
    np.testing.assert_array_equal(trainer.agent.flat.numpy(), plain.agent.flat.numpy())
    for key in stats[0]:
        assert summary[f"losses/{key}"] == float(np.mean([s[key] for s in stats])), key


@pytest.mark.parametrize("target_kl,expected_epochs", [(None, 3), (1e-12, 1)])
def test_target_kl_stops_the_epoch_loop_after_the_first_epoch_above_it(target_kl, expected_epochs):
    from embodia.learn.ppo import PPOConfig, PPOTrainer
    from embodia.learn.vec_env import make_train_env

    config = PPOConfig(task="cartpole-swingup", num_envs=8, num_steps=16, num_minibatches=4, update_epochs=3,
                       target_kl=target_kl, total_steps=1024, tensorboard=False, progress=False)
    trainer = PPOTrainer(config, make_train_env("cartpole-swingup", 8, 0))
    trainer.collect_rollout()
    summary = trainer.update()
    assert trainer.optimizer.step_count == expected_epochs * 4
    assert summary["losses/approx_kl"] > 0 and np.isfinite(summary["losses/clipfrac"])


@pytest.mark.parametrize("num_envs, one_draw", [(16, True), (3, False)])
def test_rollout_noise_drawn_once_per_rollout_equals_one_draw_per_step(num_envs, one_draw):
    """16 envs x 1 action: the whole rollout's noise in one torch draw (what torch's blocks of 16 make equal to a
    draw per step); 3 envs: a draw per step. Either way the rollout is that of torch.randn(N, act_dim) per step."""
    from embodia.learn.ppo import PPOConfig, PPOTrainer
    from embodia.learn.vec_env import make_train_env

    config = PPOConfig(task="cartpole-swingup", num_envs=num_envs, num_steps=8, num_minibatches=4, total_steps=1024,
                       tensorboard=False, progress=False)

    def rollouts(per_step: bool) -> list[np.ndarray]:
        trainer = PPOTrainer(config, make_train_env("cartpole-swingup", num_envs, 0))
        assert trainer._noise_in_one_draw is one_draw
        if per_step:
            trainer._noise_in_one_draw = False
        actions = []
        for _ in range(2):
            trainer.collect_rollout()
            actions.append(trainer.actions.copy())
            trainer.update()
        return actions + [torch.get_rng_state().numpy()]

    for ours, reference in zip(rollouts(per_step=False), rollouts(per_step=True), strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_a_rollout_after_an_update_acts_with_the_updated_weights():
    """The rollout reuses the forward's weight layouts step to step; they are refreshed when the rollout starts,
    so its values and actions are the torch module's for the weights the update left."""
    from embodia.learn.ppo import PPOConfig, PPOTrainer
    from embodia.learn.vec_env import make_train_env

    config = PPOConfig(task="cartpole-swingup", num_envs=8, num_steps=16, num_minibatches=4, update_epochs=2,
                       total_steps=1024, tensorboard=False, progress=False)
    trainer = PPOTrainer(config, make_train_env("cartpole-swingup", 8, 0))
    trainer.collect_rollout()
    before = trainer.agent.flat.numpy().copy()
    trainer.update()
    assert not np.array_equal(before, trainer.agent.flat.numpy())
    trainer.collect_rollout()
    obs = torch.from_numpy(trainer.obs.reshape(128, -1))
    with torch.no_grad():
        values, means = trainer.agent.value(obs), trainer.agent.actor.mean(obs)
    np.testing.assert_allclose(trainer.values.reshape(-1), values.numpy(), atol=1e-5)
    std = np.exp(trainer.agent.log_std)
    noise = (trainer.actions.reshape(128, -1) - means.numpy()) / std
    want_logprob = -0.5 * (noise**2).sum(-1) - trainer.agent.log_std.sum() - 0.5 * np.log(2 * np.pi) * noise.shape[-1]
    np.testing.assert_allclose(trainer.logprobs.reshape(-1), want_logprob, atol=1e-4)


def test_adaptive_learning_rate_follows_rsl_rls_rule_within_its_bounds():
    from embodia.learn.ppo import LR_RANGE, adapted_lr

    assert adapted_lr(1e-3, 0.05, 0.02) == pytest.approx(1e-3 / 1.5)  # above twice the desired KL
    assert adapted_lr(1e-3, 0.005, 0.02) == pytest.approx(1.5e-3)  # below half of it
    assert adapted_lr(1e-3, 0.02, 0.02) == 1e-3 and adapted_lr(1e-3, 0.0, 0.02) == 1e-3  # in the band; no KL yet
    assert adapted_lr(LR_RANGE[0], 1.0, 0.02) == LR_RANGE[0] and adapted_lr(LR_RANGE[1], 0.0001, 0.02) == LR_RANGE[1]


def test_adaptive_learning_rate_moves_the_rate_during_a_run():
    """A tiny desired KL shrinks the rate minibatch by minibatch (not annealed), and the run's numbers stay finite."""
    from embodia.learn.ppo import PPOConfig, PPOTrainer
    from embodia.learn.vec_env import make_train_env

    config = PPOConfig(task="cartpole-swingup", num_envs=8, num_steps=16, num_minibatches=4, update_epochs=2,
                       learning_rate=1e-3, desired_kl=1e-6, total_steps=1024, tensorboard=False, progress=False)
    trainer = PPOTrainer(config, make_train_env("cartpole-swingup", 8, 0))
    assert trainer._anneal() == 1e-3
    trainer.collect_rollout()
    trainer.update()
    trainer.iteration += 1
    assert trainer._anneal() == trainer.optimizer.lr < 1e-3 / 1.5**4  # every step after the first was above 2e-6
    assert trainer.parameters_finite()
