"""Policy learning: PPO and SAC on batched embodia envs (or Gymnasium vector envs), behavior cloning (state and
camera), diffusion policies; one checkpoint format, `load_policy`, ONNX export. The stages are
`embodia.learn.train.run` and `embodia.learn.export.run`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["load_config", "load_policy", "TorchPolicy", "OnnxPolicy", "export_onnx"]

_LAZY = {
    "load_config": "embodia.learn.trainer", "load_policy": "embodia.learn.policy",
    "TorchPolicy": "embodia.learn.policy", "OnnxPolicy": "embodia.core.policy", "export_onnx": "embodia.learn.export",
}

if TYPE_CHECKING:
    from embodia.core.policy import OnnxPolicy
    from embodia.learn.export import export_onnx
    from embodia.learn.policy import TorchPolicy, load_policy
    from embodia.learn.trainer import load_config


def __getattr__(name: str) -> Any:
    # torch is imported on first use so that `import embodia.learn` stays fast
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embodia.learn' has no attribute {name!r}")
