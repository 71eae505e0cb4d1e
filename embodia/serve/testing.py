"""Build small ONNX policy files that follow the `embodia export` contract, for tests and benchmarks.

The file has input "obs" float32 [batch, obs_dim], output "action" float32 [batch, act_dim] clipped to
the action bounds, and the `embodia.*` metadata_props the server reads.
"""

from __future__ import annotations

import io
import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from embodia.core.atomic import atomic_write_bytes
from embodia.core.policy import PolicyMetadata

ONNX_OPSET = 17


def make_mlp_onnx(
    path: str | Path,
    obs_dim: int = 64,
    act_dim: int = 8,
    hidden: Sequence[int] = (256, 256),
    *,
    task: str = "test-task",
    action_low: float = -1.0,
    action_high: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write a random tanh MLP policy (obs_dim → hidden → act_dim, clipped) as an embodia ONNX file."""
    torch.manual_seed(seed)
    low = np.full(act_dim, action_low, dtype=np.float32)
    high = np.full(act_dim, action_high, dtype=np.float32)
    network = ClippedMLP(obs_dim, act_dim, tuple(hidden), low, high).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy TorchScript exporter warns that it is legacy
        torch.onnx.export(network, (torch.zeros(1, obs_dim),), buffer, input_names=["obs"],
                          output_names=["action"], dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)
    metadata = PolicyMetadata(obs_dim=obs_dim, act_dim=act_dim, action_low=tuple(low.tolist()),
                              action_high=tuple(high.tolist()), task=task, algo="random-mlp", version="0.1.0")
    return _write_with_metadata(buffer.getvalue(), metadata, Path(path))


def _write_with_metadata(onnx_bytes: bytes, metadata: PolicyMetadata, path: Path) -> Path:
    """Attach the contract's metadata to an exported graph and write it atomically."""
    model = onnx.load_from_string(onnx_bytes)
    onnx.helper.set_model_props(model, metadata.to_onnx())
    onnx.checker.check_model(model)
    atomic_write_bytes(path, model.SerializeToString())
    return path


class ClippedMLP(torch.nn.Module):
    """Tanh MLP whose output is clipped to the action bounds, like an exported deterministic policy."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], low: np.ndarray, high: np.ndarray):
        super().__init__()
        sizes = (obs_dim, *hidden)
        layers: list[torch.nn.Module] = []
        for size_in, size_out in itertools.pairwise(sizes):
            layers += [torch.nn.Linear(size_in, size_out), torch.nn.Tanh()]
        layers.append(torch.nn.Linear(sizes[-1], act_dim))
        self.net = torch.nn.Sequential(*layers)
        self.register_buffer("low", torch.as_tensor(low))
        self.register_buffer("high", torch.as_tensor(high))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Map observations (B, obs_dim) to clipped actions (B, act_dim)."""
        return torch.clamp(self.net(obs) * 2.0, self.low, self.high)


def make_vision_onnx(
    path: str | Path,
    obs_dim: int = 6,
    act_dim: int = 2,
    image_keys: Sequence[str] = ("observation.images.front",),
    image_size: int = 16,
    *,
    task: str = "test-vision-task",
    seed: int = 0,
) -> Path:
    """Write a tiny camera policy in the contract's form: inputs `obs` float32 (B, obs_dim) and one uint8
    (B, size, size, 3) input per image key (named as the key), output `action` in [-1, 1]."""
    torch.manual_seed(seed)
    network = PooledImagePolicy(obs_dim, act_dim, len(image_keys)).eval()
    example = (torch.zeros(1, obs_dim), *(torch.zeros(1, image_size, image_size, 3, dtype=torch.uint8)
                                          for _ in image_keys))
    names = ["obs", *image_keys]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, example, buffer, input_names=names, output_names=["action"],
                          dynamic_axes={name: {0: "batch"} for name in (*names, "action")},
                          opset_version=ONNX_OPSET, dynamo=False)
    metadata = PolicyMetadata(obs_dim=obs_dim, act_dim=act_dim, action_low=(-1.0,) * act_dim,
                              action_high=(1.0,) * act_dim, task=task, algo="random-vision", version="0.1.0",
                              image_keys=tuple(image_keys), image_size=image_size)
    return _write_with_metadata(buffer.getvalue(), metadata, Path(path))


class PooledImagePolicy(torch.nn.Module):
    """Per image: a 2x2-strided conv over [0, 1] pixels, mean-pooled; with the state, a tanh linear head."""

    def __init__(self, obs_dim: int, act_dim: int, cameras: int):
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(3, 4, kernel_size=2, stride=2) for _ in range(cameras))
        self.head = torch.nn.Linear(obs_dim + 4 * cameras, act_dim)

    def forward(self, obs: torch.Tensor, *images: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim) and images (B, H, W, 3) uint8 → actions (B, act_dim) in [-1, 1]."""
        features = [conv(image.permute(0, 3, 1, 2).float() / 255.0).mean(dim=(2, 3))
                    for conv, image in zip(self.convs, images)]
        return torch.tanh(self.head(torch.cat([obs, *features], dim=1)))
