"""The artifact registry: stage outputs with their manifests, lineage both ways, model versions and aliases.

Public API (every function takes an open `Store` first):
    register_artifact(store, source, manifest=None, *, kind=None, name=None, tags=(), job_id=None, cache_key=None,
                      move=False, jurisdiction=None) -> ArtifactInfo   idempotent: equal content is one artifact;
        jurisdiction: data-residency tag(s) ('BR' or 'BR,EU'); a derived artifact also inherits its inputs' tags
    set_jurisdiction(store, ref, jurisdiction) -> ArtifactInfo   add residency tags to a registered artifact
    get_artifact(store, sha256) / resolve(store, ref) -> ArtifactInfo
    resolve_model_version(store, ref) -> ModelVersionInfo
        refs: 'model:NAME@ALIAS', 'model:NAME@vN', 'model:NAME@latest', 'model:NAME' (= latest),
              'KIND:sha256:<prefix>' (e.g. 'dataset:sha256:ab12'), 'sha256:<prefix>', or a full 64-hex sha256
    find_by_cache_key(store, key) -> ArtifactInfo | None     (pipelines' step cache); set_cache_key(store, sha, key)
    artifact_of_job(store, job_id) -> ArtifactInfo | None    (what a job registered)
    list_artifacts(store, *, kind=None, tag=None, limit=None) -> list[ArtifactInfo]
    tag_artifact(store, ref, *tags) -> ArtifactInfo
    delete_artifact(store, ref, *, force=False) -> ArtifactInfo   refused while others derive from it
    ancestors(store, ref) / descendants(store, ref) -> LineageNode (a tree); lineage(store, ref) -> dict (JSON)
    register_model_version(store, name, artifact_ref, *, report=None, gate=None, who=None, note='') -> ModelVersionInfo
    attach_evaluation(store, name, version, *, report=None, gate=None) -> ModelVersionInfo
    set_alias(store, name, alias, version, *, who=None, why='') -> ModelVersionInfo
    remove_alias(store, name, alias, *, who=None, why='') -> None
    list_model_versions(store, name=None) -> list[ModelVersionInfo]; alias_history(store, name, alias=None)
`ArtifactInfo.path` is where the content lives in the artifact store (a directory with its manifest.json).
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from embodia.core.errors import UserError
from embodia.core.manifest import MANIFEST_FILE, Manifest, list_files, runtime_fields, tree_digest
from embodia.platform.artifacts import check_sha256
from embodia.platform.models import AliasEvent, Artifact, Deployment, LineageEdge, ModelAlias, ModelVersion, utcnow
from embodia.platform.store import Store

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
MIN_PREFIX = 4


@dataclass(frozen=True)
class InputRef:
    """One lineage edge seen from the derived artifact: the stage's name for the input, its hash and kind."""

    name: str
    sha256: str
    kind: str = ""


@dataclass(frozen=True)
class ArtifactInfo:
    """A registered artifact as plain data (safe to use after the session closed)."""

    id: int
    sha256: str
    kind: str
    stage: str
    name: str | None
    size: int
    tags: list[str]
    creator_job_id: int | None
    cache_key: str | None
    created_at: datetime
    manifest: dict[str, Any]
    inputs: list[InputRef]
    path: Path
    jurisdiction: str | None = None

    @property
    def jurisdictions(self) -> frozenset[str]:
        """The residency jurisdictions binding this artifact (empty: no residency rule applies)."""
        return parse_jurisdictions(self.jurisdiction)

    @property
    def ref(self) -> str:
        """The short reference to this artifact, e.g. 'dataset:sha256:1a2b3c4d5e6f'."""
        return f"{self.kind}:sha256:{self.sha256[:12]}"


@dataclass(frozen=True)
class ModelVersionInfo:
    """Version `version` of model `name`, its artifact, evaluation report, gate verdict and current aliases."""

    id: int
    name: str
    version: int
    artifact_sha256: str
    report_sha256: str | None
    gate: dict[str, Any] | None
    aliases: list[str]
    created_by: str
    note: str
    created_at: datetime

    @property
    def ref(self) -> str:
        """'model:NAME@vN'."""
        return f"model:{self.name}@v{self.version}"


@dataclass(frozen=True)
class AliasEventInfo:
    """One alias move, as plain data."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    who: str
    why: str
    at: datetime


@dataclass
class LineageNode:
    """One node of a lineage tree: the artifact (None when an input was never registered), the edge's input
    name, model versions/deployments built on it, and the next level (parents or children)."""

    sha256: str
    artifact: ArtifactInfo | None
    edge_name: str = ""
    models: list[str] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    children: list["LineageNode"] = field(default_factory=list)
    repeated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what `embodia lineage --json` prints)."""
        info = self.artifact
        node: dict[str, Any] = {"sha256": self.sha256, "edge": self.edge_name, "registered": info is not None}
        if info is not None:
            node.update(kind=info.kind, stage=info.stage, name=info.name, size=info.size, tags=info.tags,
                    jurisdiction=info.jurisdiction,
                        creator_job_id=info.creator_job_id, created_at=info.created_at.isoformat(),
                        config=info.manifest.get("config", {}), summary=info.manifest.get("summary", {}),
                        versions=info.manifest.get("versions", {}), git_commit=info.manifest.get("git_commit"))
        node.update(models=self.models, deployments=self.deployments, repeated=self.repeated,
                    next=[child.to_dict() for child in self.children])
        return node


def current_user() -> str:
    """Who is acting (recorded on alias moves and model versions)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _check_name(what: str, value: str) -> str:
    if not NAME_RE.match(value or ""):
        raise UserError(f"{what} {value!r} is invalid: use letters, digits, '.', '_' or '-' (starting with a letter "
                        "or digit, at most 200 characters)")
    return value


# ----------------------------------------------------------------------------------------------- artifacts


def _artifact_info(store: Store, row: Artifact) -> ArtifactInfo:
    return ArtifactInfo(id=row.id, sha256=row.sha256, kind=row.kind, stage=row.stage, name=row.name, size=row.size,
                        tags=list(row.tags or []), creator_job_id=row.creator_job_id, cache_key=row.cache_key,
                        created_at=row.created_at, manifest=dict(row.manifest or {}),
                        inputs=[InputRef(e.name, e.input_sha256, e.kind) for e in row.inputs],
                        path=store.artifacts.locate(row.sha256), jurisdiction=row.jurisdiction)


def parse_jurisdictions(value: str | Iterable[str] | None) -> frozenset[str]:
    """Jurisdiction tags from 'BR', 'BR,EU' or an iterable of them (upper-cased; each checked like a name)."""
    if value is None:
        return frozenset()
    parts = value.split(",") if isinstance(value, str) else list(value)
    return frozenset(_check_name("jurisdiction", str(p).strip()).upper() for p in parts if str(p).strip())


def _join_jurisdictions(tags: Iterable[str]) -> str | None:
    """The stored form: sorted, comma-joined; None for no tag."""
    joined = ",".join(sorted(set(tags)))
    if len(joined) > 200:
        raise UserError(f"jurisdiction tags {joined!r} exceed 200 characters; an artifact under that many "
                        "jurisdictions cannot be placed anywhere useful")
    return joined or None


def _inherited_jurisdictions(session: Session, manifest: Manifest) -> frozenset[str]:
    """The union of the jurisdiction tags of the manifest's registered inputs (lineage carries residency)."""
    shas = [entry.sha256 for entry in manifest.inputs]
    if not shas:
        return frozenset()
    rows = session.scalars(select(Artifact.jurisdiction).where(Artifact.sha256.in_(shas)))
    return frozenset().union(*(parse_jurisdictions(value) for value in rows))


def _manifest_for(source: Path, manifest: Manifest | None, kind: str | None) -> Manifest:
    """The manifest to register `source` with: the given one, the one inside it, or a minimal one for an import."""
    if manifest is not None:
        return manifest
    if source.is_dir() and (source / MANIFEST_FILE).is_file():
        return Manifest.read(source)
    if kind is None:
        raise UserError(f"{source} has no {MANIFEST_FILE}; pass kind= (dataset, checkpoint, model, report, video, "
                        "other) to register it as an import")
    outputs = list_files(source)
    return Manifest(kind=kind, stage="import", outputs=outputs, content_sha256=tree_digest(outputs), **runtime_fields())


def _verify_outputs(source: Path, manifest: Manifest) -> None:
    """The files on disk are the ones the manifest lists (a stage output not changed since it was written)."""
    if manifest.status != "complete":
        raise UserError(f"{source}: the stage's manifest says {manifest.status!r}; only complete outputs are registered")
    check_sha256(manifest.content_sha256)
    on_disk = {(e.path, e.sha256) for e in list_files(source)}
    listed = {(e.path, e.sha256) for e in manifest.outputs}
    if on_disk != listed:
        changed = sorted(p for p, _ in on_disk ^ listed)[:5]
        raise UserError(f"{source}: files differ from its manifest ({', '.join(changed)}); the output was changed "
                        "after its stage wrote it, so its hash cannot be trusted — rerun the stage")


def register_artifact(store: Store, source: str | Path, manifest: Manifest | None = None, *, kind: str | None = None,
                      name: str | None = None, tags: Iterable[str] = (), job_id: int | None = None,
                      cache_key: str | None = None, move: bool = False,
                      jurisdiction: str | Iterable[str] | None = None) -> ArtifactInfo:
    """Store `source` (a stage output) under its content hash and record it with its lineage; registering equal
    content again returns the existing artifact (new tags and jurisdictions are added). The artifact's residency
    jurisdictions are those given plus every registered input's, so derived data stays under its source's rules."""
    source = Path(source)
    if not source.exists():
        raise UserError(f"cannot register {source}: it does not exist")
    manifest = _manifest_for(source, manifest, kind)
    _verify_outputs(source, manifest)
    sha = manifest.content_sha256
    tags = sorted({_check_name("tag", t) for t in tags})
    given = parse_jurisdictions(jurisdiction)
    store.artifacts.put(source, digest=sha, move=move)
    if not (store.artifacts.locate(sha) / MANIFEST_FILE).is_file():  # an import: keep its manifest with it
        manifest.write(store.artifacts.locate(sha))
    size = sum(entry.size for entry in manifest.outputs)
    try:
        with store.session() as session:
            row = _upsert_artifact(session, manifest, size, name, tags, job_id, cache_key, given)
            return _artifact_info(store, row)
    except IntegrityError:  # another process registered the same content at the same moment
        with store.session() as session:
            row = _upsert_artifact(session, manifest, size, name, tags, job_id, cache_key, given)
            return _artifact_info(store, row)


def _upsert_artifact(session: Session, manifest: Manifest, size: int, name: str | None, tags: list[str],
                     job_id: int | None, cache_key: str | None, jurisdictions: frozenset[str]) -> Artifact:
    row = session.scalar(select(Artifact).where(Artifact.sha256 == manifest.content_sha256))
    jurisdictions = jurisdictions | _inherited_jurisdictions(session, manifest)
    if row is not None:
        row.jurisdiction = _join_jurisdictions(parse_jurisdictions(row.jurisdiction) | jurisdictions)
        row.tags = sorted(set(row.tags or []) | set(tags))
        row.name = row.name or name
        row.creator_job_id = row.creator_job_id if row.creator_job_id is not None else job_id
        row.cache_key = row.cache_key or cache_key
        return row
    row = Artifact(sha256=manifest.content_sha256, kind=manifest.kind, stage=manifest.stage, name=name, size=size,
                   manifest=manifest.model_dump(mode="json"), tags=tags, creator_job_id=job_id, cache_key=cache_key,
                   created_at=utcnow(), jurisdiction=_join_jurisdictions(jurisdictions))
    row.inputs = [LineageEdge(input_sha256=entry.sha256, name=entry.name, kind=entry.kind)
                  for entry in manifest.inputs]
    session.add(row)
    session.flush()
    return row


def get_artifact(store: Store, sha256: str) -> ArtifactInfo:
    """The artifact with exactly this hash."""
    with store.session() as session:
        row = session.scalar(select(Artifact).where(Artifact.sha256 == check_sha256(sha256)))
        if row is None:
            raise UserError(f"no artifact sha256:{sha256} in the registry ({store.url})")
        return _artifact_info(store, row)


def _by_prefix(session: Session, prefix: str, kind: str | None) -> Artifact:
    prefix = prefix.lower()
    if len(prefix) < MIN_PREFIX or not set(prefix) <= set("0123456789abcdef"):
        raise UserError(f"sha256 prefix {prefix!r}: give at least {MIN_PREFIX} hex digits")
    query = select(Artifact).where(Artifact.sha256.startswith(prefix, autoescape=True))
    if kind is not None:
        query = query.where(Artifact.kind == kind)
    rows = list(session.scalars(query.limit(6)))
    what = f"{kind} artifact" if kind else "artifact"
    if not rows:
        raise UserError(f"no {what} with sha256 starting {prefix!r}; `embodia artifacts list` shows what exists")
    if len(rows) > 1:
        raise UserError(f"sha256 prefix {prefix!r} matches several artifacts "
                        f"({', '.join(r.sha256[:16] for r in rows)}); give more digits")
    return rows[0]


def _parse_model_ref(ref: str) -> tuple[str, str]:
    body = ref[len("model:"):]
    name, _, selector = body.partition("@")
    return _check_name("model name", name), selector or "latest"


def _model_version_row(session: Session, name: str, selector: str) -> ModelVersion:
    """The version a selector names: 'vN' (or 'N'), 'latest', or an alias."""
    if re.fullmatch(r"v?\d+", selector):
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                         ModelVersion.version == int(selector.lstrip("v"))))
    elif selector == "latest":
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == name)
                             .order_by(ModelVersion.version.desc()).limit(1))
    else:
        alias = session.get(ModelAlias, (name, selector))
        row = session.get(ModelVersion, alias.model_version_id) if alias is not None else None
    if row is None:
        known = session.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.name == name))
        hint = "`embodia models list` shows the versions and aliases" if known else f"no model {name!r} is registered"
        raise UserError(f"model:{name}@{selector} does not exist; {hint}")
    return row


def _resolve_row(session: Session, ref: str) -> Artifact:
    ref = ref.strip()
    if ref.startswith("sha256:"):
        return _by_prefix(session, ref[len("sha256:"):], None)
    kind, sep, rest = ref.partition(":sha256:")
    if sep:
        return _by_prefix(session, rest, _check_name("kind", kind))
    if ref.startswith("model:"):
        version = _model_version_row(session, *_parse_model_ref(ref))
        return session.get(Artifact, version.artifact_id)
    if len(ref) == 64 and set(ref) <= set("0123456789abcdef"):
        return _by_prefix(session, ref, None)
    raise UserError(f"artifact reference {ref!r} not understood; use model:NAME@ALIAS, model:NAME@vN, "
                    "KIND:sha256:<prefix> (e.g. dataset:sha256:1a2b) or sha256:<prefix>")


def resolve(store: Store, ref: str) -> ArtifactInfo:
    """The artifact a reference names (a model reference gives that version's artifact)."""
    with store.session() as session:
        return _artifact_info(store, _resolve_row(session, ref))


def find_by_cache_key(store: Store, key: str) -> ArtifactInfo | None:
    """The artifact last registered under a pipeline step's cache key, if its content is still stored."""
    with store.session() as session:
        row = session.scalar(select(Artifact).where(Artifact.cache_key == key).order_by(Artifact.id.desc()).limit(1))
        if row is None or not store.artifacts.exists(row.sha256):
            return None
        return _artifact_info(store, row)


def artifact_of_job(store: Store, job_id: int) -> ArtifactInfo | None:
    """The artifact a job registered (what keeps a retried job from registering a second one)."""
    with store.session() as session:
        row = session.scalar(select(Artifact).where(Artifact.creator_job_id == job_id).order_by(Artifact.id).limit(1))
        return _artifact_info(store, row) if row is not None else None


def set_cache_key(store: Store, sha256: str, key: str) -> None:
    """Record that a pipeline step with cache key `key` produced the artifact `sha256` (the latest key wins)."""
    with store.session() as session:
        row = session.scalar(select(Artifact).where(Artifact.sha256 == check_sha256(sha256)))
        if row is None:
            raise UserError(f"no artifact sha256:{sha256} in the registry ({store.url})")
        row.cache_key = key


def list_artifacts(store: Store, *, kind: str | None = None, tag: str | None = None,
                   limit: int | None = None) -> list[ArtifactInfo]:
    """Registered artifacts, newest first, optionally of one kind or carrying one tag."""
    with store.session() as session:
        query = select(Artifact).order_by(Artifact.id.desc())
        if kind:
            query = query.where(Artifact.kind == kind)
        rows = [_artifact_info(store, row) for row in session.scalars(query)]
    if tag:
        rows = [row for row in rows if tag in row.tags]
    return rows[:limit] if limit else rows


def tag_artifact(store: Store, ref: str, *tags: str) -> ArtifactInfo:
    """Add tags to an artifact."""
    with store.session() as session:
        row = _resolve_row(session, ref)
        row.tags = sorted(set(row.tags or []) | {_check_name("tag", t) for t in tags})
        return _artifact_info(store, row)


def set_jurisdiction(store: Store, ref: str, jurisdiction: str | Iterable[str]) -> ArtifactInfo:
    """Add residency jurisdiction tags to a registered artifact (tags are only ever added: residency tightens).
    Artifacts already derived from it are tagged too, so the rule follows the data down its lineage."""
    added = parse_jurisdictions(jurisdiction)
    if not added:
        raise UserError(f"jurisdiction {jurisdiction!r}: give at least one tag, e.g. BR or EU")
    with store.session() as session:
        root = _resolve_row(session, ref)
        pending, seen = [root], set()
        while pending:
            row = pending.pop()
            if row.sha256 in seen:
                continue
            seen.add(row.sha256)
            row.jurisdiction = _join_jurisdictions(parse_jurisdictions(row.jurisdiction) | added)
            pending += session.scalars(select(Artifact).join(LineageEdge, LineageEdge.artifact_id == Artifact.id)
                                       .where(LineageEdge.input_sha256 == row.sha256)).unique()
        session.flush()
        return _artifact_info(store, root)


def delete_artifact(store: Store, ref: str, *, force: bool = False) -> ArtifactInfo:
    """Remove an artifact and its content; refused while other artifacts derive from it or a model version or
    deployment uses it, unless `force` (their lineage then shows the input as unregistered)."""
    with store.session() as session:
        row = _resolve_row(session, ref)
        info = _artifact_info(store, row)
        users = _dependents(session, row)
        if users and not force:
            raise UserError(f"{info.ref} is used by {', '.join(users[:5])}"
                            f"{' and more' if len(users) > 5 else ''}; delete those first or pass --force")
        if force:
            for version in session.scalars(select(ModelVersion).where(ModelVersion.artifact_id == row.id)):
                _delete_version(session, version)
            for version in session.scalars(select(ModelVersion).where(ModelVersion.report_artifact_id == row.id)):
                version.report_artifact_id = None
        session.delete(row)
    store.artifacts.delete(info.sha256)
    return info


def _delete_version(session: Session, version: ModelVersion) -> None:
    for alias in session.scalars(select(ModelAlias).where(ModelAlias.model_version_id == version.id)):
        session.delete(alias)
    for deployment in session.scalars(select(Deployment).where(Deployment.model_version_id == version.id)):
        deployment.model_version_id = None
    session.flush()
    session.delete(version)


def _dependents(session: Session, row: Artifact) -> list[str]:
    """What would lose its source if `row` went: derived artifacts and model versions."""
    children = session.scalars(select(Artifact).join(LineageEdge, LineageEdge.artifact_id == Artifact.id)
                               .where(LineageEdge.input_sha256 == row.sha256)).unique()
    users = [f"{child.kind}:sha256:{child.sha256[:12]}" for child in children]
    versions = session.scalars(select(ModelVersion).where((ModelVersion.artifact_id == row.id)
                                                          | (ModelVersion.report_artifact_id == row.id)))
    return users + [f"model:{v.name}@v{v.version}" for v in versions]


# ----------------------------------------------------------------------------------------------- lineage


def _node(store: Store, session: Session, sha: str, edge_name: str) -> tuple[LineageNode, Artifact | None]:
    row = session.scalar(select(Artifact).where(Artifact.sha256 == sha))
    node = LineageNode(sha256=sha, artifact=_artifact_info(store, row) if row else None, edge_name=edge_name)
    if row is not None:
        for version in session.scalars(select(ModelVersion).where(ModelVersion.artifact_id == row.id)):
            aliases = sorted(a.alias for a in session.scalars(select(ModelAlias)
                                                              .where(ModelAlias.model_version_id == version.id)))
            node.models.append(f"model:{version.name}@v{version.version}"
                               + (f" ({', '.join(aliases)})" if aliases else ""))
            node.deployments += [f"{d.name} ({d.status}{f', port {d.port}' if d.port else ''})"
                                 for d in session.scalars(select(Deployment)
                                                          .where(Deployment.model_version_id == version.id))]
    return node, row


def _walk(store: Store, session: Session, sha: str, edge_name: str, up: bool, seen: set[str]) -> LineageNode:
    node, row = _node(store, session, sha, edge_name)
    if sha in seen:
        node.repeated = True
        return node
    seen = seen | {sha}
    if up and row is not None:
        node.children = [_walk(store, session, e.input_sha256, e.name, up, seen) for e in row.inputs]
    elif not up:
        edges = session.execute(select(Artifact.sha256, LineageEdge.name).join(
            LineageEdge, LineageEdge.artifact_id == Artifact.id).where(LineageEdge.input_sha256 == sha)
            .order_by(Artifact.id)).all()
        node.children = [_walk(store, session, child_sha, name, up, seen) for child_sha, name in edges]
    return node


def ancestors(store: Store, ref: str) -> LineageNode:
    """The tree of what `ref` was made from, down to raw inputs (children of a node are its inputs)."""
    with store.session() as session:
        return _walk(store, session, _resolve_row(session, ref).sha256, "", True, set())


def descendants(store: Store, ref: str) -> LineageNode:
    """The tree of everything derived from `ref` (children of a node are artifacts made from it)."""
    with store.session() as session:
        return _walk(store, session, _resolve_row(session, ref).sha256, "", False, set())


def lineage(store: Store, ref: str) -> dict[str, Any]:
    """Both directions as JSON-ready data: {'artifact', 'ancestors', 'descendants'}."""
    up, down = ancestors(store, ref), descendants(store, ref)
    return {"artifact": up.artifact.sha256 if up.artifact else up.sha256, "ancestors": up.to_dict(),
            "descendants": down.to_dict()}


# ----------------------------------------------------------------------------------------------- models


def _version_info(session: Session, row: ModelVersion) -> ModelVersionInfo:
    artifact = session.get(Artifact, row.artifact_id)
    report = session.get(Artifact, row.report_artifact_id) if row.report_artifact_id else None
    aliases = sorted(a.alias for a in session.scalars(select(ModelAlias).where(ModelAlias.model_version_id == row.id)))
    return ModelVersionInfo(id=row.id, name=row.name, version=row.version, artifact_sha256=artifact.sha256,
                            report_sha256=report.sha256 if report else None, gate=row.gate, aliases=aliases,
                            created_by=row.created_by, note=row.note, created_at=row.created_at)


def register_model_version(store: Store, name: str, artifact_ref: str, *, report: str | None = None,
                           gate: dict[str, Any] | None = None, who: str | None = None,
                           note: str = "") -> ModelVersionInfo:
    """Make an artifact the next version of model `name` (the same artifact again returns its existing version)."""
    _check_name("model name", name)
    for _ in range(3):
        try:
            with store.session() as session:
                artifact = _resolve_row(session, artifact_ref)
                existing = session.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                                     ModelVersion.artifact_id == artifact.id))
                if existing is not None:
                    return _version_info(session, existing)
                latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)) or 0
                row = ModelVersion(name=name, version=latest + 1, artifact_id=artifact.id, gate=gate,
                                   created_by=who or current_user(), note=note, created_at=utcnow(),
                                   report_artifact_id=_resolve_row(session, report).id if report else None)
                session.add(row)
                session.flush()
                return _version_info(session, row)
        except IntegrityError:
            continue  # another process took that version number: count again
    raise RuntimeError(f"could not allocate a version of model {name!r} after 3 tries")


def get_model_version(store: Store, name: str, selector: str | int) -> ModelVersionInfo:
    """Version `selector` ('vN', N, 'latest' or an alias) of model `name`."""
    with store.session() as session:
        return _version_info(session, _model_version_row(session, name, str(selector)))


def resolve_model_version(store: Store, ref: str) -> ModelVersionInfo:
    """The model version a 'model:NAME@...' reference names."""
    if not ref.startswith("model:"):
        raise UserError(f"{ref!r} is not a model reference; use model:NAME@ALIAS or model:NAME@vN")
    return get_model_version(store, *_parse_model_ref(ref))


def attach_evaluation(store: Store, name: str, version: str | int, *, report: str | None = None,
                      gate: dict[str, Any] | None = None) -> ModelVersionInfo:
    """Record the evaluation report and/or gate verdict behind a model version."""
    with store.session() as session:
        row = _model_version_row(session, name, str(version))
        if report is not None:
            row.report_artifact_id = _resolve_row(session, report).id
        if gate is not None:
            row.gate = gate
        session.flush()
        return _version_info(session, row)


def set_alias(store: Store, name: str, alias: str, version: str | int, *, who: str | None = None,
              why: str = "") -> ModelVersionInfo:
    """Point `name@alias` at a version (set or moved), recording who, when and why."""
    _check_name("alias", alias)
    if re.fullmatch(r"v?\d+", alias) or alias == "latest":
        raise UserError(f"alias {alias!r} is reserved (vN and latest name versions); choose another name")
    with store.session() as session:
        target = _model_version_row(session, name, str(version))
        current = session.get(ModelAlias, (name, alias))
        before = session.get(ModelVersion, current.model_version_id).version if current else None
        who = who or current_user()
        if current is None:
            session.add(ModelAlias(name=name, alias=alias, model_version_id=target.id, updated_by=who, reason=why,
                                   updated_at=utcnow()))
        else:
            current.model_version_id, current.updated_by, current.reason = target.id, who, why
            current.updated_at = utcnow()
        session.add(AliasEvent(name=name, alias=alias, from_version=before, to_version=target.version, who=who,
                               why=why, at=utcnow()))
        session.flush()
        return _version_info(session, target)


def remove_alias(store: Store, name: str, alias: str, *, who: str | None = None, why: str = "") -> None:
    """Remove `name@alias` (recorded in its history)."""
    with store.session() as session:
        current = session.get(ModelAlias, (name, alias))
        if current is None:
            raise UserError(f"model:{name}@{alias} is not set")
        before = session.get(ModelVersion, current.model_version_id).version
        session.delete(current)
        session.add(AliasEvent(name=name, alias=alias, from_version=before, to_version=None,
                               who=who or current_user(), why=why, at=utcnow()))


def list_model_versions(store: Store, name: str | None = None) -> list[ModelVersionInfo]:
    """Every model version (of one model when `name` is given), by name then version."""
    with store.session() as session:
        query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
        if name:
            query = query.where(ModelVersion.name == name)
        return [_version_info(session, row) for row in session.scalars(query)]


def alias_history(store: Store, name: str, alias: str | None = None) -> list[AliasEventInfo]:
    """Alias moves of a model, oldest first."""
    with store.session() as session:
        query = select(AliasEvent).where(AliasEvent.name == name).order_by(AliasEvent.id)
        if alias:
            query = query.where(AliasEvent.alias == alias)
        return [AliasEventInfo(e.name, e.alias, e.from_version, e.to_version, e.who, e.why, e.at)
                for e in session.scalars(query)]


def info_dict(info: ArtifactInfo | ModelVersionInfo | AliasEventInfo) -> dict[str, Any]:
    """JSON-ready dict of a record (datetimes and paths as strings)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, Path) else v)
            for k, v in asdict(info).items()}
