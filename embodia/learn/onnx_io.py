"""Trace a deployable torch module into the embodia ONNX contract (see `embodia.core.policy`): input `obs`
float32 (B, obs_dim) plus one uint8 (B, size, size, 3) input per image key named as the key, output `action`,
and the `embodia.*` metadata written by `PolicyMetadata.to_onnx()` (the one writer of it)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embodia import __version__
from embodia.core.atomic import atomic_file
from embodia.core.policy import ACTION_OUTPUT, OBS_INPUT, PolicyMetadata

if TYPE_CHECKING:
    import torch

OPSET = 17


def write_onnx(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], out: str | Path,
               metadata: PolicyMetadata, *, verify: Callable[[Path], None] | None = None) -> Path:
    """Trace `module(obs, *images)` to `out` atomically with the contract's names, dynamic batch and metadata.

    `verify(tmp_path)` may refuse the written file by raising; the previous `out` is then left untouched.
    """
    import onnx  # imported here, not at the top: `metadata_from_spec` serves the torch-free export too
    import torch

    input_names = [OBS_INPUT, *metadata.image_keys]
    if len(example_inputs) != len(input_names):
        raise ValueError(f"{len(example_inputs)} example inputs for ONNX inputs {input_names}")
    with atomic_file(out, suffix=".onnx") as tmp:
        dynamic_axes = {name: {0: "batch"} for name in (*input_names, ACTION_OUTPUT)}
        with warnings.catch_warnings():  # the TorchScript exporter warns about its own deprecation and about tracing
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), example_inputs, str(tmp), input_names=input_names,
                              output_names=[ACTION_OUTPUT], dynamic_axes=dynamic_axes, opset_version=OPSET,
                              dynamo=False)
        model = onnx.load(str(tmp))
        for key, value in metadata.to_onnx().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        if verify is not None:
            verify(tmp)
    return Path(out)


def metadata_from_spec(spec: dict[str, Any]) -> PolicyMetadata:
    """The ONNX metadata of a checkpoint's policy spec (config.json's `policy` section)."""
    return PolicyMetadata(obs_dim=int(spec["obs_dim"]), act_dim=int(spec["act_dim"]),
                          action_low=tuple(float(x) for x in spec["action_low"]),
                          action_high=tuple(float(x) for x in spec["action_high"]),
                          task=spec.get("task") or "", algo=spec["algo"], version=__version__,
                          image_keys=tuple(spec.get("image_keys") or ()), image_size=spec.get("image_size"))


def example_inputs(spec: dict[str, Any], batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the contract's shapes: obs (batch, obs_dim) [+ (batch, size, size, 3) uint8 per image key]."""
    import torch

    size = spec.get("image_size")
    images = [torch.zeros(batch, size, size, 3, dtype=torch.uint8) for _ in spec.get("image_keys") or ()]
    return (torch.zeros(batch, int(spec["obs_dim"])), *images)


def export_actor(actor: torch.nn.Module, spec: dict[str, Any], out: str | Path, *,
                 verify: Callable[[Path], None] | None = None) -> Path:
    """Write a deployable actor `actor(obs, *images) -> action` with its spec's metadata as `out` (.onnx)."""
    return write_onnx(actor, example_inputs(spec), out, metadata_from_spec(spec), verify=verify)
