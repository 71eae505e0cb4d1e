"""Synthetic robot data: LeRobot v3.0 datasets (writer, reader, checker), generation at scale, augmentation, viewer.

The stages are the submodules' `run` functions: `embodia.data.generate.run` and `embodia.data.augment.run`
(so `embodia.data.generate` is always the module, never a function of the same name).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Dataset", "DatasetSpec", "Episode", "StagingArea", "write_dataset", "check_dataset", "GenerateConfig",
           "AugmentConfig", "write_page"]

_LOCATIONS = {
    "Dataset": "embodia.data.reader", "DatasetSpec": "embodia.data.writer", "Episode": "embodia.data.writer",
    "StagingArea": "embodia.data.writer", "write_dataset": "embodia.data.writer", "check_dataset": "embodia.data.check",
    "GenerateConfig": "embodia.data.generate", "AugmentConfig": "embodia.data.augment",
    "write_page": "embodia.data.viewer",
}


def __getattr__(name: str) -> Any:  # lazy, so `import embodia.data.experts` does not pull torch or av
    if name in _LOCATIONS:
        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'embodia.data' has no attribute {name!r}")
