"""embodia.core: the bottom layer every other package builds on; imports neither torch nor mujoco.

Errors (user vs internal), atomic file/directory writes, the policy + ONNX metadata contract,
artifact manifests with provenance, and the progress/cancellation `Reporter` protocol. Names are imported
on first use (PEP 562) so that `import embodia` does not pay for pydantic and hashing code it may not need.
"""

from __future__ import annotations

from embodia.core.errors import (  # noqa: F401 (re-exported through __all__)
    Cancelled,
    CheckpointError,
    ConfigError,
    DatasetFormatError,
    EmbodiaError,
    UserError,
)
from embodia.core.lazy import lazy_exports

_EXPORTS = {
    "atomic_dir": "embodia.core.atomic", "atomic_write_bytes": "embodia.core.atomic",
    "atomic_write_json": "embodia.core.atomic", "atomic_write_text": "embodia.core.atomic",
    "Manifest": "embodia.core.manifest", "hash_file": "embodia.core.manifest", "hash_tree": "embodia.core.manifest",
    "NullReporter": "embodia.core.reporter", "Reporter": "embodia.core.reporter",
}
__all__ = sorted([*_EXPORTS, "Cancelled", "CheckpointError", "ConfigError", "DatasetFormatError", "EmbodiaError",
                  "UserError"])
__getattr__ = lazy_exports("embodia.core", _EXPORTS)
