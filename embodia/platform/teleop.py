"""Human demonstrations into the registry: a teleoperation dataset (from the console or `embodia teleop`) registered
with its lineage — stage teleop, source human, operator — and recorded as belonging to a project."""

from __future__ import annotations

import time
from pathlib import Path

from embodia.core.errors import UserError
from embodia.core.manifest import Manifest
from embodia.platform import registry
from embodia.platform.models import ProjectArtifact
from embodia.platform.store import Store

TAGS = ("human", "teleop")


def register_recording(store: Store, dataset: str | Path, project: str, *, move: bool = False) -> registry.ArtifactInfo:
    """Register the teleop dataset at `dataset` (with its manifest) as `teleop-<task>-<UTC time>`, owned by
    `project`, so the project's API and console list it."""
    manifest = Manifest.read(dataset)
    if manifest.stage != "teleop" or manifest.kind != "dataset":
        raise UserError(f"{dataset} is a {manifest.kind} from stage {manifest.stage!r}, not a teleoperation "
                                 "dataset; record one with `embodia teleop`")
    name = f"teleop-{manifest.config.get('task', 'task')}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    info = registry.register_artifact(store, dataset, manifest, name=name, tags=TAGS, move=move)
    with store.session() as session:
        if session.get(ProjectArtifact, (project, info.sha256)) is None:
            session.add(ProjectArtifact(project=project, sha256=info.sha256))
    return info
