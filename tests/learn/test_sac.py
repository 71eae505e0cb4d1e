import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embodia.learn import load_policy, nets, sac
from embodia.learn.nets import TrainingCopy, TwinQ, resolve_precision
from embodia.learn.rollout import episode_returns, random_returns
from embodia.learn.sac import ReplayBuffer, SACConfig, SACTrainer, adam_step
from embodia.learn.train import train
from embodia.learn.vec_env import make_train_env

QUIET = {"progress": False, "tensorboard": False}
TINY = {**QUIET, "num_envs": 2, "hidden_sizes": [16, 16], "batch_size": 32, "learning_starts": 40}


def test_replay_buffer_wraps_and_round_trips():
    buffer = ReplayBuffer(5, obs_dim=2, act_dim=1)
    for step in range(4):
        obs = np.full((2, 2), step, dtype=np.float32)
        buffer.add(obs, np.zeros((2, 1)), np.full(2, step), obs + 1, np.zeros(2))
    assert buffer.size == 5 and buffer.pos == 3
    assert sorted(buffer.rewards.tolist()) == [1.0, 2.0, 2.0, 3.0, 3.0]  # the oldest three were overwritten
    other = ReplayBuffer(5, 2, 1)
    other.load_state_dict(buffer.state_dict())
    np.testing.assert_array_equal(other.next_obs, buffer.next_obs)
    assert (other.pos, other.size) == (3, 5)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sac_learns_cartpole_balance(tmp_path, precision):
    run = train("cartpole-balance", "sac", total_steps=5000, seed=0, out=tmp_path,
                overrides={**QUIET, "precision": precision})
    returns, _ = episode_returns(load_policy(run), "cartpole-balance", num_envs=16)
    baseline = random_returns("cartpole-balance", num_envs=16).mean()
    assert returns.mean() > 2 * baseline, (returns.mean(), baseline)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sac_resume_matches_uninterrupted_run(tmp_path, precision):
    overrides = {**TINY, "checkpoint_every": 100, "env_kwargs": {"task_config": {"max_episode_steps": 15}},
                 "precision": precision}
    run = train("cartpole-swingup", "sac", total_steps=200, seed=1, out=tmp_path, overrides=overrides, name="full")
    step = "step_000000000100"
    resumed = tmp_path / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copytree(run / "checkpoints" / step, resumed / step)
    (resumed / "latest").write_text(step)
    train("", "", resume=resumed.parent)
    full = load_file(run / "checkpoints" / "final" / "model.safetensors")
    again = load_file(resumed / "final" / "model.safetensors")
    for key in full:
        torch.testing.assert_close(again[key], full[key], atol=1e-5, rtol=0)
    assert (resumed / step / "replay.safetensors").is_file()


def test_sac_policy_is_tanh_squashed_into_bounds(tmp_path):
    run = train("cartpole-balance", "sac", total_steps=60, seed=0, out=tmp_path, overrides=TINY, name="p")
    policy = load_policy(run)
    actions = policy.act(np.random.default_rng(0).normal(0, 100, (50, policy.obs_dim)))
    assert np.all(np.abs(actions) <= 1.0) and policy.algo == "sac"


def test_precision_auto_picks_bf16_only_with_native_bf16_matmuls(monkeypatch):
    monkeypatch.setattr(nets, "native_bf16_matmul", lambda: False)
    assert resolve_precision("auto", 256, [256, 256]) == "fp32"
    monkeypatch.setattr(nets, "native_bf16_matmul", lambda: True)
    assert resolve_precision("auto", 256, [256, 256]) == "bf16"
    assert resolve_precision("auto", 256, [128, 128]) == "fp32"  # small matmuls: the casts cost more than AMX saves
    assert resolve_precision("auto", 128, [64, 64]) == "fp32"
    assert (resolve_precision("fp32", 256, [256]), resolve_precision("bf16", 8, [16])) == ("fp32", "bf16")
    with pytest.raises(ValueError, match="precision='fp16'"):
        resolve_precision("fp16", 256, [256])


def test_training_copy_fp32_is_the_module_itself():
    master = TwinQ(3, 2, [8, 8], "relu")
    assert TrainingCopy(master, "fp32").module is master


def test_bf16_training_copy_keeps_float32_master_weights_and_gradients():
    torch.manual_seed(0)
    master = TwinQ(3, 2, [8, 8], "relu")
    work = TrainingCopy(master, "bf16")
    optimizer = torch.optim.Adam(master.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in master.parameters()]
    q = work.module(torch.randn(16, 3), torch.randn(16, 2))
    assert q.dtype == torch.float32 and q.shape == (2, 16)
    q.square().mean().backward()
    work.grads_to_master()
    optimizer.step()
    work.refresh()
    for p, w, b in zip(master.parameters(), work.module.parameters(), before):
        assert p.dtype == p.grad.dtype == torch.float32 and w.dtype == torch.bfloat16
        torch.testing.assert_close(p.grad, w.grad.float(), rtol=0, atol=0)
        assert not torch.equal(p, b)  # the float32 master moved
        torch.testing.assert_close(w, p.detach().to(torch.bfloat16), rtol=0, atol=0)  # and the copy follows it


def _filled_trainer(precision: str, **overrides) -> SACTrainer:
    config = SACConfig(task="cartpole-balance", seed=0, num_envs=4, hidden_sizes=[32, 32], batch_size=64,
                       learning_starts=0, precision=precision, **QUIET, **overrides)
    trainer = SACTrainer(config, make_train_env(config.task, config.num_envs, config.seed))
    while trainer.global_step < 400:
        trainer.env_step()
    return trainer


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sac_critic_learns_the_reward_in_both_precisions(precision):
    # with gamma near 0 the soft Q target is the reward itself: a regression the critic must fit
    trainer = _filled_trainer(precision, gamma=1e-3)
    losses = [float(trainer.update()["losses/qf_loss"].detach()) for _ in range(300)]
    assert all(np.isfinite(losses)) and trainer.parameters_finite()
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:5]), (losses[:5], losses[-20:])
    assert all(p.dtype == torch.float32 for p in [*trainer.q.parameters(), *trainer.actor.parameters()])


def test_sac_bf16_losses_track_fp32_from_the_same_start():
    fp32, bf16 = _filled_trainer("fp32", policy_frequency=1), _filled_trainer("bf16", policy_frequency=1)
    torch.manual_seed(3)
    expected = fp32.update()
    torch.manual_seed(3)
    got = bf16.update()
    for key in ("losses/qf_loss", "losses/actor_loss", "losses/alpha_loss"):
        torch.testing.assert_close(got[key], expected[key], rtol=0.05, atol=0.01)


def test_adam_step_is_optimizer_step_bit_for_bit():
    torch.manual_seed(0)
    a, b = TwinQ(3, 2, [8, 8], "relu"), TwinQ(3, 2, [8, 8], "relu")
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2, fused=True)
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-2, fused=True)
    for _ in range(4):
        x, u = torch.randn(16, 3), torch.randn(16, 2)
        for net, step in ((a, opt_a.step), (b, lambda: adam_step(opt_b))):
            net.zero_grad(set_to_none=True)
            net(x, u).square().mean().backward()
            step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=0)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(opt_b.state[pb][key], opt_a.state[pa][key], rtol=0, atol=0)
    assert not torch.equal(next(a.parameters()), next(TwinQ(3, 2, [8, 8], "relu").parameters()))


def _adam_pair(lr_b: float = 1e-2) -> tuple[list[torch.nn.Module], list[torch.optim.Adam]]:
    torch.manual_seed(1)
    nets = [TwinQ(3, 2, [8, 8], "relu"), TwinQ(3, 2, [4], "tanh")]
    return nets, [torch.optim.Adam(nets[0].parameters(), lr=1e-2, fused=True),
                  torch.optim.Adam(nets[1].parameters(), lr=lr_b, fused=True)]


@pytest.mark.parametrize("lr_b", [1e-2, 3e-3])  # equal settings: one fused call; different: each its own step
def test_adam_step_of_two_optimizers_is_each_step_bit_for_bit(lr_b):
    (ref_nets, ref_opts), (nets, opts) = _adam_pair(lr_b), _adam_pair(lr_b)
    for _ in range(3):
        x, u = torch.randn(16, 3), torch.randn(16, 2)
        for group, step in ((ref_nets, lambda: [o.step() for o in ref_opts]), (nets, lambda: adam_step(*opts))):
            for net in group:
                net.zero_grad(set_to_none=True)
                net(x, u).square().mean().backward()
            step()
    for ref_net, net, ref_opt, opt in zip(ref_nets, nets, ref_opts, opts):
        for pa, pb in zip(ref_net.parameters(), net.parameters()):
            torch.testing.assert_close(pb, pa, rtol=0, atol=0)
            torch.testing.assert_close(opt.state[pb]["exp_avg_sq"], ref_opt.state[pa]["exp_avg_sq"], rtol=0, atol=0)
            assert int(opt.state[pb]["step"]) == 3


def test_flush_denormals_zeroes_denormals_inside_and_restores_the_mode_after():
    denormal = torch.tensor([1e-39], dtype=torch.float64).float()  # below float32's smallest normal, 1.2e-38
    assert not nets.denormals_flushed() and float(denormal * 1.0) > 0
    with nets.flush_denormals():
        assert nets.denormals_flushed() and float(denormal * 1.0) == 0.0
        with nets.flush_denormals():  # nested: the outer block's mode survives the inner one
            pass
        assert nets.denormals_flushed()
    assert not nets.denormals_flushed() and float(denormal * 1.0) > 0
    torch.set_flush_denormal(True)  # a caller that flushes already keeps flushing after the block
    try:
        with nets.flush_denormals():
            pass
        assert nets.denormals_flushed()
    finally:
        torch.set_flush_denormal(False)


def test_sac_update_flushes_denormals_only_while_it_runs(monkeypatch):
    trainer = _filled_trainer("fp32", policy_frequency=1)
    seen = []
    step = sac.adam_step
    monkeypatch.setattr(sac, "adam_step", lambda *opts: (seen.append(nets.denormals_flushed()), step(*opts)))
    trainer.update()
    trainer.update()
    assert seen == [True] * 4 and not nets.denormals_flushed()  # critic and actor steps, twice; the mode restored
