import json

import numpy as np
import onnx
import pytest

from embodia.core.errors import CheckpointError
from embodia.core.policy import OnnxPolicy
from embodia.learn import load_policy
from embodia.learn.export import export_onnx
from embodia.learn.train import train


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train("cartpole-balance", "ppo", total_steps=1024, seed=0, out=out,
                 overrides={"progress": False, "tensorboard": False, "num_envs": 8, "num_steps": 32, "num_minibatches": 2})


def test_onnx_matches_pytorch_on_1000_random_observations(ppo_run, tmp_path):
    policy = load_policy(ppo_run)
    path = export_onnx(policy, tmp_path / "policy.onnx")
    onnx_policy = load_policy(path)
    assert isinstance(onnx_policy, OnnxPolicy)
    rng = np.random.default_rng(0)
    obs = (policy.actor.obs_mean.numpy() + policy.actor.obs_std.numpy() * rng.normal(0, 3, (1000, 5))).astype(np.float32)
    torch_actions = policy.act(obs)
    onnx_actions = onnx_policy.act(obs)
    assert onnx_actions.shape == (1000, 1) and onnx_actions.dtype == np.float32
    assert np.max(np.abs(onnx_actions - torch_actions)) <= 1e-5
    assert np.ptp(torch_actions) > 0  # not a constant policy: the comparison means something
    np.testing.assert_allclose(onnx_policy.act(obs[:1]), torch_actions[:1], atol=1e-5)  # dynamic batch axis


def test_onnx_file_carries_the_shared_contract(ppo_run, tmp_path):
    path = export_onnx(ppo_run, tmp_path / "p.onnx")
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["obs"] and [o.name for o in model.graph.output] == ["action"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["embodia.task"] == "cartpole-balance" and meta["embodia.algo"] == "ppo"
    assert (int(meta["embodia.obs_dim"]), int(meta["embodia.act_dim"])) == (5, 1)
    assert json.loads(meta["embodia.action_low"]) == [-1.0] and json.loads(meta["embodia.action_high"]) == [1.0]
    assert "embodia.version" in meta
    assert not list(tmp_path.glob(".*tmp*"))


def test_sac_export_matches_pytorch(tmp_path):
    run = train("cartpole-balance", "sac", total_steps=64, seed=0, out=tmp_path,
                overrides={"progress": False, "tensorboard": False, "num_envs": 2, "hidden_sizes": [16, 16],
                           "batch_size": 16, "learning_starts": 32, "norm_obs": True})
    path = export_onnx(run, tmp_path / "sac.onnx")
    obs = np.random.default_rng(1).normal(0, 2, (1000, 5)).astype(np.float32)
    assert np.max(np.abs(load_policy(path).act(obs) - load_policy(run).act(obs))) <= 1e-5


def test_bad_onnx_file_raises_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.onnx is not a valid ONNX model"):
        load_policy(bad)
    with pytest.raises(CheckpointError, match="missing.onnx does not exist"):
        load_policy(tmp_path / "missing.onnx")
