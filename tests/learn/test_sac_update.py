"""The hand-written SAC gradients (`HandSAC`) against autograd on the loss definitions they differentiate."""

import copy

import numpy as np
import pytest
import torch

from embodia.learn.nets import native_bf16_matmul
from embodia.learn.sac import SACConfig, SACTrainer, actor_loss, critic_loss
from embodia.learn.sac_update import (
    activation_backward,
    activation_forward,
    fused_relu_linear_available,
    relu_bf16_,
)
from embodia.learn.vec_env import make_train_env

QUIET = {"progress": False, "tensorboard": False}


def _trainer(precision: str = "fp32", activation: str = "relu", **overrides) -> SACTrainer:
    """A small SAC trainer (uneven widths, so transposes show) with 400 transitions in its buffer."""
    settings = {"hidden_sizes": [32, 24], **overrides}
    config = SACConfig(task="cartpole-balance", seed=0, num_envs=4, batch_size=64, learning_starts=0,
                       precision=precision, activation=activation, **QUIET, **settings)
    trainer = SACTrainer(config, make_train_env(config.task, config.num_envs, config.seed))
    while trainer.global_step < 400:
        trainer.env_step()
    return trainer


def _batch(trainer: SACTrainer) -> dict[str, torch.Tensor]:
    raw = trainer.buffer.sample(np.random.default_rng(7), trainer.config.batch_size)
    return {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in raw.items()}


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want).norm() / want.norm().clamp_min(1e-12))


def _assert_grads_equal(got: list[torch.Tensor], want: list[torch.Tensor], tol: float = 1e-5) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and w.abs().max() > 0
        assert _relative_error(g, w) < tol, (_relative_error(g, w), g.shape)


def _autograd_critic_grads(trainer: SACTrainer, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    q, q_target, actor = (copy.deepcopy(m) for m in (trainer.q, trainer.q_target, trainer.actor))
    q.zero_grad(set_to_none=True)
    loss = critic_loss(q, q_target, actor, batch, trainer.log_alpha.detach().exp(), trainer.config.gamma)
    loss.backward()
    return loss.detach(), [p.grad for p in q.parameters()]


def _autograd_actor_grads(trainer: SACTrainer, obs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    q, actor = copy.deepcopy(trainer.q).requires_grad_(False), copy.deepcopy(trainer.actor)
    actor.zero_grad(set_to_none=True)
    log_alpha = trainer.log_alpha.detach().clone().requires_grad_(True)
    loss, log_prob = actor_loss(q, actor, obs, log_alpha.detach().exp())
    alpha_loss = -(log_alpha.exp() * (log_prob.detach() + trainer.target_entropy)).mean()
    (loss + alpha_loss).backward()
    return loss.detach(), [p.grad for p in actor.parameters()], log_alpha.grad


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "silu"])
def test_hand_critic_gradients_equal_autograd(activation):
    trainer = _trainer(activation=activation)
    batch = _batch(trainer)
    torch.manual_seed(5)
    want_loss, want = _autograd_critic_grads(trainer, batch)
    torch.manual_seed(5)  # the same next-action noise
    next_sample = trainer.hand.sample(batch["next_obs"])[0]
    loss = trainer.hand.critic_step_grads(batch, next_sample, float(trainer.log_alpha.detach().exp()), trainer.config.gamma)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=0)
    _assert_grads_equal(trainer.hand.q_grads, want)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "silu"])
def test_hand_actor_and_temperature_gradients_equal_autograd(activation):
    trainer = _trainer(activation=activation, hidden_sizes=[32, 24, 16])  # a trunk of two layers
    obs = _batch(trainer)["obs"]
    torch.manual_seed(5)
    want_loss, want, want_alpha_grad = _autograd_actor_grads(trainer, obs)
    torch.manual_seed(5)
    alpha = float(trainer.log_alpha.detach().exp())
    loss, mean_log_prob = trainer.hand.actor_step_grads(obs, trainer.hand.sample(obs)[0], alpha)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    _assert_grads_equal(trainer.hand.actor_grads, want)
    alpha_grad = -alpha * (mean_log_prob + trainer.target_entropy)  # what `SACTrainer.update` writes
    torch.testing.assert_close(alpha_grad, want_alpha_grad, rtol=1e-5, atol=0)


def _autograd_update(trainer: SACTrainer) -> None:
    """The update as autograd computes it: the reference `SACTrainer.update` must equal (same draws, same order)."""
    config = trainer.config
    raw = trainer.buffer.sample(trainer.rng, config.batch_size)
    batch = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in raw.items()}
    alpha = trainer.log_alpha.detach().exp()
    for p in [*trainer.q.parameters(), *trainer.actor.parameters(), trainer.log_alpha]:
        p.grad.zero_()  # the persistent buffers: autograd accumulates into them
    critic_loss(trainer.q, trainer.q_target, trainer.actor, batch, alpha, config.gamma).backward()
    trainer.q_opt.step()
    trainer.num_updates += 1
    if trainer.num_updates % config.policy_frequency:
        _average_targets(trainer)
        return
    trainer.q.requires_grad_(False)
    pi_loss, log_prob = actor_loss(trainer.q, trainer.actor, batch["obs"], alpha)
    alpha_loss = -(trainer.log_alpha.exp() * (log_prob.detach() + trainer.target_entropy)).mean()
    (pi_loss + alpha_loss).backward()
    trainer.actor_opt.step()
    trainer.alpha_opt.step()
    trainer.q.requires_grad_(True)
    _average_targets(trainer)


@torch.no_grad()
def _average_targets(trainer: SACTrainer) -> None:
    torch._foreach_lerp_(list(trainer.q_target.parameters()), list(trainer.q.parameters()), trainer.config.tau)


@pytest.mark.parametrize("policy_frequency", [1, 2])
def test_full_updates_equal_the_autograd_updates(policy_frequency):
    hand, reference = _trainer(policy_frequency=policy_frequency), _trainer(policy_frequency=policy_frequency)
    for step in range(4):
        torch.manual_seed(step)
        hand.update()
        torch.manual_seed(step)
        _autograd_update(reference)
    for name in ("actor", "q", "q_target"):
        for (key, got), want in zip(getattr(hand, name).named_parameters(), getattr(reference, name).parameters()):
            # Adam's first steps move each weight by ~lr * sign(gradient): rounding-level gradient differences
            # (different summation order) can only show on weights whose gradient is itself at rounding level
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"{name}.{key}")
    torch.testing.assert_close(hand.log_alpha, reference.log_alpha, rtol=1e-6, atol=0)
    assert not torch.equal(hand.q.net[0].weight, _trainer().q.net[0].weight)  # the updates did move the weights


def test_bf16_hand_gradients_are_finite_and_track_fp32():
    fp32, bf16 = _trainer("fp32"), _trainer("bf16")
    batch = _batch(fp32)
    for trainer in (fp32, bf16):
        torch.manual_seed(5)
        next_sample, sample = trainer.hand.sample(batch["next_obs"], batch["obs"])
        trainer.hand.critic_step_grads(batch, next_sample, 0.2, 0.99)
        trainer.hand.actor_step_grads(batch["obs"], sample, 0.2)
    for got, want in zip([*bf16.hand.q_grads, *bf16.hand.actor_grads], [*fp32.hand.q_grads, *fp32.hand.actor_grads]):
        assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
        assert _relative_error(got, want) < 0.05, _relative_error(got, want)


def test_activation_backward_rejects_an_unknown_activation():
    x = torch.ones(2)
    with pytest.raises(ValueError, match="activation='gelu'"):
        activation_backward("gelu", x, x, x)


def test_relu_bf16_in_place_equals_torch_relu():
    x = torch.tensor([-2.5, -1e-30, -0.0, 0.0, 1e-30, 3.0, float("inf"), float("-inf")]).to(torch.bfloat16)
    want = torch.relu(x)
    got = relu_bf16_(x)
    assert got.data_ptr() == x.data_ptr() and got.dtype == torch.bfloat16
    assert torch.equal(got, want)  # values (torch.relu keeps -0.0, ours gives +0.0: the same for relu's backward)
    assert not torch.signbit(got).any()


def test_activation_forward_picks_relu_in_place_and_rejects_an_unknown_activation():
    x = torch.tensor([-1.0, 2.0])
    assert activation_forward("relu", torch.float32)(x) is x and x.tolist() == [0.0, 2.0]
    assert activation_forward("tanh", torch.bfloat16) is torch.tanh
    with pytest.raises(ValueError, match="activation='gelu'"):
        activation_forward("gelu", torch.float32)


def test_fused_bf16_linear_equals_addmm_then_relu():
    trainer = _trainer("bf16", hidden_sizes=[32, 24, 16])
    hand = trainer.hand
    assert hand.fused_relu_linear == fused_relu_linear_available(torch.bfloat16, "relu")
    assert hand.fused_relu_linear or not native_bf16_matmul()  # an AMX CPU has oneDNN: the fused path is the one run
    obs = _batch(trainer)["obs"]
    got_cache, got_weight, got_heads = hand._actor_forward(obs)
    hand.fused_relu_linear = False  # the addmm + in-place relu path
    want_cache, want_weight, want_heads = hand._actor_forward(obs)
    assert not fused_relu_linear_available(torch.float32, "relu") and not fused_relu_linear_available(torch.bfloat16, "tanh")
    assert torch.equal(got_weight, want_weight) and got_heads.dtype == torch.float32
    for got, want in zip(got_cache, want_cache):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got, want)  # bfloat16's tolerance: the same sums, rounded once either way
    torch.testing.assert_close(got_heads, want_heads, rtol=1.6e-2, atol=1e-5)



def test_bf16_relu_backward_on_int16_views_equals_threshold_backward():
    torch.manual_seed(0)
    post = relu_bf16_(torch.randn(64, 32).to(torch.bfloat16))  # about half zeros
    grad = torch.randn(64, 32).to(torch.bfloat16)
    got = activation_backward("relu", grad, post, post)
    assert got.dtype == torch.bfloat16 and torch.equal(got, torch.ops.aten.threshold_backward(grad, post, 0))
    assert (got[post == 0] == 0).all() and torch.equal(got[post > 0], grad[post > 0]) and (post == 0).any()
