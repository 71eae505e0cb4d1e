"""The torch-free MLP export (`embodia.learn.mlp_export`): for every MLP kind (PPO, SAC, state BC incl. chunking
and state_indices) its ONNX file gives the torch-traced file's actions to 1e-5, carries the same contract, is a
valid ONNX model, serves, and a damaged or unknown checkpoint is a clear error."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from safetensors.numpy import save_file

from embodia.core.errors import CheckpointError, UserError
from embodia.core.policy import OnnxPolicy
from embodia.learn import load_policy
from embodia.learn.bc import train_bc
from embodia.learn.export import export_onnx
from embodia.learn.export import run as export_stage
from embodia.learn.mlp_export import MlpPolicy, onnx_bytes, read_mlp_policy
from embodia.learn.train import train
from embodia.serve.client import PolicyClient
from embodia.serve.server import serve_in_background

TINY_RL = {"progress": False, "tensorboard": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, reach_dataset):
    """One tiny checkpoint of each MLP kind, trained for a few steps (weights need not be good, only non-trivial)."""
    out = tmp_path_factory.mktemp("mlp-runs")
    ppo = {"num_envs": 4, "num_steps": 16, "num_minibatches": 2}
    sac = {"num_envs": 2, "hidden_sizes": [16, 16], "batch_size": 16, "learning_starts": 32}
    bc = {"num_steps": 30, "batch_size": 16, "hidden_sizes": [32, 32]}
    return {
        "ppo": train("cartpole-balance", "ppo", total_steps=256, seed=0, out=out / "ppo", overrides={**TINY_RL, **ppo}),
        "ppo-elu-raw-obs": train("cartpole-balance", "ppo", total_steps=128, seed=1, out=out / "ppo2",
                                 overrides={**TINY_RL, **ppo, "activation": "elu", "norm_obs": False}),
        "sac": train("cartpole-balance", "sac", total_steps=64, seed=0, out=out / "sac",
                     overrides={**TINY_RL, **sac, "norm_obs": True}),
        "sac-relu": train("cartpole-balance", "sac", total_steps=64, seed=2, out=out / "sac2",
                          overrides={**TINY_RL, **sac, "activation": "relu"}),
        "bc": train_bc(reach_dataset, bc, out / "bc"),
        "bc-chunk-nll-columns": train_bc(reach_dataset, {**bc, "chunk_size": 4, "n_action_steps": 2, "loss": "nll",
                                                         "state_indices": [0, 5, 2, 20]}, out / "bc2"),
    }


@pytest.mark.parametrize("kind", ["ppo", "ppo-elu-raw-obs", "sac", "sac-relu", "bc", "bc-chunk-nll-columns"])
def test_torch_free_onnx_equals_the_torch_traced_onnx(runs, kind, tmp_path):
    mlp = read_mlp_policy(runs[kind])
    assert isinstance(mlp, MlpPolicy)
    ours = export_onnx(runs[kind], tmp_path / "numpy.onnx")  # a path of an MLP checkpoint: the torch-free writer
    traced = export_onnx(load_policy(runs[kind]), tmp_path / "torch.onnx")  # a TorchPolicy: torch.onnx
    rng = np.random.default_rng(3)
    obs = (mlp.obs_center + mlp.obs_scale * rng.normal(0, 3, (1000, mlp.obs_dim))).astype(np.float32)
    ours_actions, traced_actions = OnnxPolicy(ours).act(obs), OnnxPolicy(traced).act(obs)
    assert ours_actions.shape == (1000, mlp.act_dim) and ours_actions.dtype == np.float32
    assert np.max(np.abs(ours_actions - traced_actions)) <= 1e-5
    assert np.max(np.abs(mlp.act(obs) - traced_actions)) <= 1e-5  # the NumPy reference is right too
    assert np.ptp(traced_actions) > 0  # not a constant policy: the comparison means something
    np.testing.assert_allclose(OnnxPolicy(ours).act(obs[0]), traced_actions[0], atol=1e-5)  # batch of one


@pytest.mark.parametrize("kind", ["ppo", "sac", "bc-chunk-nll-columns"])
def test_torch_free_onnx_is_a_valid_model_with_the_same_contract(runs, kind):
    ours = onnx.load_from_string(onnx_bytes(read_mlp_policy(runs[kind])))
    onnx.checker.check_model(ours, full_check=True)  # also infers every shape
    traced = onnx.load(str(export_onnx(load_policy(runs[kind]), runs[kind] / "traced.onnx")))
    (runs[kind] / "traced.onnx").unlink()
    for graph_io in ("input", "output"):
        described = [[(v.name, v.type.tensor_type.elem_type, [d.dim_value or "batch" for d in v.type.tensor_type.shape.dim])
                      for v in getattr(model.graph, graph_io)] for model in (ours, traced)]
        assert described[0] == described[1]
    assert {p.key: p.value for p in ours.metadata_props} == {p.key: p.value for p in traced.metadata_props}
    assert [o.version for o in ours.opset_import] == [o.version for o in traced.opset_import]


@pytest.mark.parametrize("algo, extra", [("bc", {"bc": {"image_keys": ["observation.images.front"]}}),
                                         ("diffusion", {"diffusion": {}})])
def test_camera_bc_and_diffusion_keep_the_torch_exporter(tmp_path, algo, extra):
    config = {"policy": {"algo": algo, "obs_dim": 3, "act_dim": 1, "action_low": [-1.0], "action_high": [1.0], **extra}}
    checkpoint = _checkpoint(tmp_path / "ckpt", config, model={"body.0.weight": np.zeros((1, 3), np.float32)})
    assert read_mlp_policy(checkpoint) is None


def test_export_stage_writes_a_servable_file_without_importing_torch(runs, tmp_path):
    code = ("import sys\nfrom embodia.learn.export import run\n"
            f"m = run(None, {str(tmp_path / 'out')!r}, inputs={{'checkpoint': {str(runs['sac'])!r}}})\n"
            "print(m.summary['reference'], m.summary['max_abs_diff'], 'torch' in sys.modules, 'onnx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    reference, diff, torch_loaded, onnx_loaded = done.stdout.split()
    assert reference == "NumPy" and float(diff) <= 1e-5 and torch_loaded == onnx_loaded == "False"
    served = OnnxPolicy(tmp_path / "out" / "policy.onnx")
    obs = np.random.default_rng(0).normal(size=(4, served.obs_dim)).astype(np.float32)
    url, stop = serve_in_background(tmp_path / "out" / "policy.onnx", port=0)  # the server answers the file's actions
    try:
        np.testing.assert_allclose(PolicyClient(url).act(obs), served.act(obs), atol=1e-6)
    finally:
        stop()


def test_export_command_imports_neither_torch_nor_onnx(runs, tmp_path):
    command = [sys.executable, "-X", "importtime", "-m", "embodia", "export", str(runs["ppo"]), "--out", str(tmp_path / "x")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "embodia.learn.mlp_export" in imported and "onnxruntime" in imported
    assert not {"torch", "onnx", "ml_dtypes", "embodia.learn.policy"} & imported
    assert "max |onnx - NumPy|" in " ".join(done.stdout.split()) and (tmp_path / "x" / "policy.onnx").is_file()


def test_damaged_weights_are_a_clear_error(runs, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(runs["ppo"] / "checkpoints" / "final", checkpoint)
    (checkpoint / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt or unreadable"):
        export_onnx(checkpoint, tmp_path / "p.onnx")


def test_weights_of_another_network_are_a_clear_error(runs, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(runs["ppo"] / "checkpoints" / "final", checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["policy"]["hidden_sizes"] = [7]
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match its config"):
        read_mlp_policy(checkpoint)


def test_unknown_algo_and_non_finite_weights_are_clear_errors(tmp_path):
    spec = {"obs_dim": 2, "act_dim": 1, "action_low": [-1.0], "action_high": [1.0]}
    with pytest.raises(CheckpointError, match="names algo 'dqn', which embodia.learn cannot load"):
        read_mlp_policy(_checkpoint(tmp_path / "a", {"policy": {**spec, "algo": "dqn"}}, model={}))
    rl = {**spec, "algo": "ppo", "hidden_sizes": [], "activation": "tanh", "obs_clip": 10.0, "norm_obs": False}
    weights = {"actor.mean.0.weight": np.array([[np.nan, 1.0]], np.float32), "actor.mean.0.bias": np.zeros(1, np.float32)}
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):
        read_mlp_policy(_checkpoint(tmp_path / "b", {"policy": rl}, model=weights))
    with pytest.raises(UserError, match="already an ONNX file"):
        export_stage(None, tmp_path / "out", inputs={"checkpoint": tmp_path / "policy.onnx"})


def _checkpoint(directory, config, *, model):
    directory.mkdir(parents=True)
    save_file(model or {"unused": np.zeros(1, np.float32)}, directory / "model.safetensors")
    save_file({"obs_mean": np.zeros(2), "obs_var": np.ones(2), "obs_count": np.ones(1)}, directory / "normalizer.safetensors")
    (directory / "config.json").write_text(json.dumps(config))
    return directory
