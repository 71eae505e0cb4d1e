"""Export a trained policy to ONNX (the shared contract: input `obs`, output `action`, metadata `embodia.*`)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from embodia.learn.policy import Policy, load_policy

OPSET = 17


def export_onnx(policy: Policy | str | Path, out: str | Path, verify: bool = True) -> Path:
    """Write `out` (.onnx) atomically; with `verify`, check ONNX Runtime against PyTorch on 1,000 random observations."""
    import onnx

    import embodia

    if not isinstance(policy, Policy):
        policy = load_policy(policy)
        if not isinstance(policy, Policy):
            raise ValueError("the model is already an ONNX file; pass a checkpoint or run directory to export")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    example = torch.zeros(2, policy.obs_dim)
    with warnings.catch_warnings():  # the TorchScript exporter warns about its own deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(policy.actor, (example,), str(tmp), input_names=["obs"], output_names=["action"],
                          dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, opset_version=OPSET, dynamo=False)
    model = onnx.load(str(tmp))
    metadata = {
        "embodia.task": policy.task, "embodia.obs_dim": str(policy.obs_dim), "embodia.act_dim": str(policy.act_dim),
        "embodia.action_low": json.dumps(policy.action_low.tolist()),
        "embodia.action_high": json.dumps(policy.action_high.tolist()),
        "embodia.algo": policy.algo, "embodia.version": getattr(embodia, "__version__", "0"),
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))
    if verify:
        max_diff = parity(policy, tmp)
        if max_diff > 1e-5:
            tmp.unlink()
            raise RuntimeError(f"ONNX export of {policy.task} differs from PyTorch by {max_diff:.2e} (> 1e-5)")
    os.replace(tmp, out)
    return out


def parity(policy: Policy, onnx_path: str | Path, num_obs: int = 1000, seed: int = 0) -> float:
    """Max |ONNX Runtime - PyTorch| over `num_obs` random observations (scaled around the normalizer's range)."""
    from embodia.learn.policy import OnnxPolicy

    rng = np.random.default_rng(seed)
    mean = policy.actor.obs_mean.numpy()
    std = policy.actor.obs_std.numpy()
    obs = (mean + std * rng.normal(0.0, 3.0, (num_obs, policy.obs_dim))).astype(np.float32)
    return float(np.max(np.abs(OnnxPolicy(onnx_path).act(obs) - policy.act(obs))))
