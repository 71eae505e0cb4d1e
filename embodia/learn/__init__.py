"""Policy learning: PPO and SAC on batched embodia envs (or Gymnasium vector envs), checkpoints, ONNX export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["train", "load_config", "load_policy", "Policy", "OnnxPolicy", "export_onnx", "CheckpointError", "ConfigError"]

_LAZY = {
    "train": "embodia.learn.trainer", "load_config": "embodia.learn.trainer",
    "load_policy": "embodia.learn.policy", "Policy": "embodia.learn.policy", "OnnxPolicy": "embodia.learn.policy",
    "export_onnx": "embodia.learn.export", "CheckpointError": "embodia.learn.checkpoint",
    "ConfigError": "embodia.learn.config",
}

if TYPE_CHECKING:
    from embodia.learn.checkpoint import CheckpointError
    from embodia.learn.config import ConfigError
    from embodia.learn.export import export_onnx
    from embodia.learn.policy import OnnxPolicy, Policy, load_policy
    from embodia.learn.trainer import load_config, train


def __getattr__(name: str) -> Any:
    # torch is imported on first use so that `import embodia.learn` stays fast
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embodia.learn' has no attribute {name!r}")
