"""Policy serving: an ONNX Runtime server (HTTP + WebSocket), its client, and a background-server helper."""

from __future__ import annotations

import importlib

__all__ = ["PolicyClient", "PolicyServerError", "PolicyServerUnavailable", "ServedModel", "ServerConfig",
           "load_model", "run_server", "serve_in_background"]

_HOMES = {
    "ServedModel": "embodia.serve.runtime",
    "load_model": "embodia.serve.runtime",
    "PolicyClient": "embodia.serve.client",
    "PolicyServerError": "embodia.serve.client",
    "PolicyServerUnavailable": "embodia.serve.client",
    "ServerConfig": "embodia.serve.server",
    "run_server": "embodia.serve.server",
    "serve_in_background": "embodia.serve.server",
}


def __getattr__(name: str) -> object:
    """Import on first use, so `import embodia.serve` does not load ONNX Runtime or uvicorn."""
    if name not in _HOMES:
        raise AttributeError(f"module 'embodia.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
