"""The export stage: a checkpoint (any algorithm, state or camera policy) -> an ONNX file in its own output
directory, checked against PyTorch, with the embodia contract (see `embodia.core.policy`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from embodia.core.errors import CheckpointError, ConfigError, UserError
from embodia.core.manifest import Manifest
from embodia.core.policy import OnnxPolicy
from embodia.core.reporter import Reporter
from embodia.core.stage import StageResult, run_stage
from embodia.learn.onnx_io import export_actor
from embodia.learn.policy import TorchPolicy, load_policy

POLICY_FILE = "policy.onnx"
MAX_ABS_DIFF = 1e-5


def export_onnx(policy: TorchPolicy | str | Path, out: str | Path, verify: bool = True) -> Path:
    """Write `out` (.onnx) atomically; with `verify`, refuse a file whose actions differ from PyTorch's by more
    than 1e-5 on 1,000 random observations (and images)."""
    if not isinstance(policy, TorchPolicy):
        policy = load_policy(policy)
        if not isinstance(policy, TorchPolicy):
            raise UserError("the model is already an ONNX file; pass a checkpoint or run directory to export")

    def check_parity(onnx_path: Path) -> None:
        max_diff = parity(policy, onnx_path)
        if max_diff > MAX_ABS_DIFF:
            raise RuntimeError(f"ONNX export of {policy.task or policy.algo} differs from PyTorch by {max_diff:.2e} "
                               f"(> {MAX_ABS_DIFF:g}); this is a bug")

    return export_actor(policy.actor, policy.spec, out, verify=check_parity if verify else None)


def parity(policy: TorchPolicy, onnx_path: str | Path, num_obs: int = 1000, seed: int = 0) -> float:
    """Max |ONNX Runtime - PyTorch| over `num_obs` random observations (scaled around the normalizer's range)
    and, for camera policies, random images."""
    rng = np.random.default_rng(seed)
    mean = policy.actor.obs_mean.numpy()
    std = policy.actor.obs_std.numpy()
    if policy.image_keys:
        num_obs = min(num_obs, 64)  # each observation also runs the image encoder
    obs = (mean + std * rng.normal(0.0, 3.0, (num_obs, policy.obs_dim))).astype(np.float32)
    size = policy.image_size or 0
    images = {key: rng.integers(0, 256, (num_obs, size, size, 3), dtype=np.uint8) for key in policy.image_keys}
    onnx_actions = OnnxPolicy(onnx_path).act(obs, images or None)
    return float(np.max(np.abs(onnx_actions - policy.act(obs, images or None))))


def run(config: Mapping[str, Any] | None, out: str | Path, *, inputs: Mapping[str, str | Path],
        reporter: Reporter | None = None) -> Manifest:
    """Export `inputs["checkpoint"]` (a run or checkpoint directory) to `out/policy.onnx`; returns the manifest.

    `config`: {"verify": bool (default true)}. The output holds only the ONNX file (and the manifest)."""
    config = dict(config or {})
    unknown = sorted(set(config) - {"verify"})
    if unknown:
        raise ConfigError(f"unknown export config field {unknown[0]!r}; valid fields: verify")
    if "checkpoint" not in inputs:
        raise ConfigError("the export stage needs inputs={'checkpoint': <run or checkpoint directory>}")
    policy = load_policy(inputs["checkpoint"])
    if not isinstance(policy, TorchPolicy):
        raise CheckpointError(f"{inputs['checkpoint']} is already an ONNX file; pass a checkpoint or run directory")
    verify = bool(config.get("verify", True))

    def body(staging: Path, stage_reporter: Reporter) -> StageResult:
        stage_reporter.start("export", total=1, unit="files")
        path = export_onnx(policy, staging / POLICY_FILE, verify=verify)
        diff = parity(policy, path) if verify else None
        stage_reporter.update(1, message=f"{POLICY_FILE} ({policy.obs_dim} -> {policy.act_dim})")
        stage_reporter.finish()
        return StageResult(summary={"file": POLICY_FILE, "algo": policy.algo, "task": policy.task,
                                    "obs_dim": policy.obs_dim, "act_dim": policy.act_dim,
                                    "image_keys": list(policy.image_keys), "max_abs_diff": diff})

    return run_stage("export", "model", {"verify": verify}, out, body,
                     inputs={"checkpoint": inputs["checkpoint"]}, reporter=reporter)
