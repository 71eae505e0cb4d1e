"""The export stage: a checkpoint (any algorithm, state or camera policy) -> an ONNX file in its own output
directory, checked against a reference forward pass, with the embodia contract (see `embodia.core.policy`).

MLP policies (PPO, SAC, state BC) export without PyTorch or onnx (`embodia.learn.mlp_export`; a whole
`embodia export` then costs ~0.7 s CPU instead of ~4.5 s); camera BC and diffusion policies are traced by
`torch.onnx`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embodia.core.errors import CheckpointError, ConfigError
from embodia.core.manifest import Manifest
from embodia.core.policy import OnnxPolicy
from embodia.core.reporter import Reporter
from embodia.core.stage import StageResult, run_stage
from embodia.learn.mlp_export import (
    MlpPolicy,
    mlp_parity,
    read_mlp_policy,
    write_mlp_onnx,
)

if TYPE_CHECKING:
    from embodia.learn.policy import TorchPolicy

POLICY_FILE = "policy.onnx"
MAX_ABS_DIFF = 1e-5


def export_onnx(policy: TorchPolicy | str | Path, out: str | Path, verify: bool = True) -> Path:
    """Write `out` (.onnx) atomically; with `verify`, refuse a file whose actions differ from the reference
    forward pass by more than 1e-5 on 1,000 random observations (and images).

    A checkpoint path of an MLP policy exports without PyTorch (the reference is NumPy); a `TorchPolicy`, or a
    checkpoint of a camera or diffusion policy, is traced by `torch.onnx` (the reference is PyTorch)."""
    write_checked(policy_to_export(policy), out, verify)
    return Path(out)


def policy_to_export(policy: TorchPolicy | str | Path) -> MlpPolicy | TorchPolicy:
    """The arrays of an MLP checkpoint (no torch), else the checkpoint's `TorchPolicy`."""
    from_path = isinstance(policy, (str, Path))
    if from_path and Path(policy).suffix == ".onnx":
        raise CheckpointError(f"{policy} is already an ONNX file; pass a checkpoint or run directory to export")
    mlp = read_mlp_policy(policy) if from_path else None
    if mlp is not None:
        return mlp
    # torch: only for what is not a plain MLP
    from embodia.learn.policy import TorchPolicy, load_policy

    return policy if isinstance(policy, TorchPolicy) else load_policy(policy)


def write_checked(policy: MlpPolicy | TorchPolicy, out: str | Path, verify: bool) -> float | None:
    """Write `policy` as `out`; with `verify`, return the max |ONNX Runtime - reference| and refuse (keep the
    previous `out`) above 1e-5. The reference is NumPy for an `MlpPolicy`, PyTorch otherwise."""
    diffs: list[float] = []

    def check(onnx_path: Path) -> None:
        diff = mlp_parity(policy, onnx_path) if isinstance(policy, MlpPolicy) else parity(policy, onnx_path)
        name = policy.spec.get("task") or policy.spec["algo"]
        if not np.isfinite(diff):
            raise CheckpointError(f"the {name} policy's actions on random observations are not finite (NaN or "
                                  "infinite weights?): its training diverged; export an earlier checkpoint")
        if diff > MAX_ABS_DIFF:
            raise RuntimeError(f"ONNX export of {name} differs from {reference_name(policy)} by {diff:.2e} "
                               f"(> {MAX_ABS_DIFF:g}); this is a bug")
        diffs.append(diff)

    if isinstance(policy, MlpPolicy):
        write_mlp_onnx(policy, out, verify=check if verify else None)
    else:
        from embodia.learn.onnx_io import export_actor

        export_actor(policy.actor, policy.spec, out, verify=check if verify else None)
    return diffs[0] if diffs else None


def reference_name(policy: MlpPolicy | TorchPolicy) -> str:
    """What the exported file's actions are checked against."""
    return "NumPy" if isinstance(policy, MlpPolicy) else "PyTorch"


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
    policy = policy_to_export(inputs["checkpoint"])
    spec = policy.spec
    verify = bool(config.get("verify", True))

    def body(staging: Path, stage_reporter: Reporter) -> StageResult:
        stage_reporter.start("export", total=1, unit="files")
        diff = write_checked(policy, staging / POLICY_FILE, verify)
        stage_reporter.update(1, message=f"{POLICY_FILE} ({spec['obs_dim']} -> {spec['act_dim']})")
        stage_reporter.finish()
        return StageResult(summary={"file": POLICY_FILE, "algo": spec["algo"], "task": spec.get("task") or "",
                                    "obs_dim": int(spec["obs_dim"]), "act_dim": int(spec["act_dim"]),
                                    "image_keys": list(spec.get("image_keys") or ()), "max_abs_diff": diff,
                                    "reference": reference_name(policy)})

    return run_stage("export", "model", {"verify": verify}, out, body,
                     inputs={"checkpoint": inputs["checkpoint"]}, reporter=reporter)
