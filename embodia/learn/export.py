"""Export a trained policy to ONNX (the shared contract: input `obs`, output `action`, metadata `embodia.*`)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from embodia.core.errors import UserError
from embodia.learn.policy import Policy, load_policy

OPSET = 17


def onnx_metadata(task: str | None, obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray, algo: str) -> dict[str, str]:
    """The `embodia.*` metadata_props every exported policy carries."""
    from embodia import __version__

    return {"embodia.task": task or "", "embodia.obs_dim": str(obs_dim), "embodia.act_dim": str(act_dim),
            "embodia.action_low": json.dumps([float(x) for x in low]),
            "embodia.action_high": json.dumps([float(x) for x in high]),
            "embodia.algo": algo, "embodia.version": __version__}


def write_onnx(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], out: str | Path,
               metadata: dict[str, str], *, input_names: tuple[str, ...] = ("obs",),
               verify: Callable[[Path], None] | None = None) -> Path:
    """Trace `module` to `out` atomically with the contract's names (inputs -> `action`, dynamic batch) and metadata.

    `verify(tmp_path)` may refuse the written file by raising; the previous `out` is then left untouched.
    """
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    dynamic_axes = {name: {0: "batch"} for name in (*input_names, "action")}
    with warnings.catch_warnings():  # the TorchScript exporter warns about its own deprecation and about tracing
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example_inputs, str(tmp), input_names=list(input_names),
                          output_names=["action"], dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)
    model = onnx.load(str(tmp))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))
    if verify is not None:
        try:
            verify(tmp)
        except Exception:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, out)
    return out


def export_onnx(policy: Policy | str | Path, out: str | Path, verify: bool = True) -> Path:
    """Write `out` (.onnx) atomically; with `verify`, check ONNX Runtime against PyTorch on 1,000 random observations."""
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
        if not isinstance(policy, Policy):
            raise UserError("the model is already an ONNX file; pass a checkpoint or run directory to export")

    def check_parity(onnx_path: Path) -> None:
        max_diff = parity(policy, onnx_path)
        if max_diff > 1e-5:
            raise RuntimeError(f"ONNX export of {policy.task} differs from PyTorch by {max_diff:.2e} (> 1e-5)")

    metadata = onnx_metadata(policy.task, policy.obs_dim, policy.act_dim, policy.action_low, policy.action_high,
                             policy.algo)
    return write_onnx(policy.actor, (torch.zeros(2, policy.obs_dim),), out, metadata,
                      verify=check_parity if verify else None)


def parity(policy: Policy, onnx_path: str | Path, num_obs: int = 1000, seed: int = 0) -> float:
    """Max |ONNX Runtime - PyTorch| over `num_obs` random observations (scaled around the normalizer's range)."""
    from embodia.learn.policy import OnnxPolicy

    rng = np.random.default_rng(seed)
    mean = policy.actor.obs_mean.numpy()
    std = policy.actor.obs_std.numpy()
    obs = (mean + std * rng.normal(0.0, 3.0, (num_obs, policy.obs_dim))).astype(np.float32)
    return float(np.max(np.abs(OnnxPolicy(onnx_path).act(obs) - policy.act(obs))))
