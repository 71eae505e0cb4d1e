"""The one shape of every stage: `run(config, out, *, inputs, reporter) -> Manifest`.

`run_stage` is the shared frame: it builds the output in a staging directory beside `out`, lets the stage
body fill it, writes the manifest (config, hashed inputs and outputs, versions, seeds, times) and moves the
whole tree into `out`. A stage stopped by its reporter, a callback or Ctrl-C is recorded `cancelled`, never
as complete. The staging directory has a fixed name (`.<out>.partial`) so resumable stages (training,
generation) find their partial work after a crash.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from embodia.core.atomic import replace_dir
from embodia.core.errors import Cancelled, UserError
from embodia.core.manifest import Manifest, input_entry, list_files, now_utc, runtime_fields, tree_digest
from embodia.core.reporter import Reporter, reporter_or_null


@dataclass
class StageResult:
    """What a stage body returns: seeds it used, headline results, files to leave out of the content hash."""

    seeds: list[int] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    volatile: tuple[str, ...] = ()


ShardMap = Callable[[Callable[..., Any], list[tuple]], list[Any]]
"""How a sharded stage runs its shards: `map_shards(function, calls)` returns `[function(*args) for args in calls]`,
in order, computed anywhere (one Ray task a call on a cluster: `embodia.platform.sharding.ray_map`)."""


def map_in_process(function: Callable[..., Any], calls: list[tuple]) -> list[Any]:
    """Run the shard calls one after another in this process (the shard map when no cluster is at hand)."""
    return [function(*args) for args in calls]


def split_range(items: range, shards: int) -> list[range]:
    """`items` cut into at most `shards` contiguous, disjoint, non-empty ranges of near-equal size, in order."""
    count = max(1, min(shards, len(items)))
    bounds = [items.start + len(items) * k // count for k in range(count + 1)]
    return [range(low, high) for low, high in itertools.pairwise(bounds) if high > low]


def staging_dir(out: str | Path) -> Path:
    """Where a stage builds `out` before moving it into place (stable across restarts, for resume)."""
    out = Path(out)
    return out.with_name(f".{out.name}.partial")


def published_path(path: str | Path) -> Path:
    """`path` with any staging component `.<name>.partial` named as the published `<name>` (what a user knows)."""
    parts = [part[1:-len(".partial")] if part.startswith(".") and part.endswith(".partial") else part
             for part in Path(path).parts]
    return Path(*parts)


def run_stage(stage: str, kind: str, config: Mapping[str, Any], out: str | Path,
              body: Callable[[Path, Reporter], StageResult | None], *,
              inputs: Mapping[str, str | Path] | None = None, reporter: Reporter | None = None,
              resume: bool = False, overwrite: bool = True, keep_failed: bool = True) -> Manifest:
    """Run `body(staging, reporter)` and publish `out` whole with its manifest; returns the manifest.

    `resume=True` keeps an existing staging directory (partial work of a crashed run); otherwise it starts empty.
    On `Cancelled` (or Ctrl-C) the partial output is kept in staging and a `cancelled` manifest is returned.
    Any other error leaves staging for inspection/resume and re-raises; `out` keeps its previous content. A body
    that fails before writing anything (e.g. a config the body validates) leaves no directory behind at all; with
    `keep_failed=False` (stages that cannot resume) a failed body leaves nothing behind whatever it wrote.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is a file; choose a directory path for --out")
    if out.exists() and not overwrite:
        raise UserError(f"output {out} already exists; pass another --out or allow overwriting")
    reporter = reporter_or_null(reporter)
    input_entries = [input_entry(name, path) for name, path in (inputs or {}).items()]
    staging = staging_dir(out)
    if staging.exists() and not resume:
        shutil.rmtree(staging)
    created = _first_missing(staging)
    staging.mkdir(parents=True, exist_ok=True)
    started = now_utc()
    status = "complete"
    try:
        result = body(staging, reporter) or StageResult()
    except (Cancelled, KeyboardInterrupt):
        status, result = "cancelled", StageResult()
    except BaseException:
        if not keep_failed:
            shutil.rmtree(created or staging, ignore_errors=True)
        elif created is not None and not any(p.is_file() for p in created.rglob("*")):  # nothing written: no empty dirs
            shutil.rmtree(created, ignore_errors=True)
        raise
    outputs = list_files(staging)
    volatile = tuple(result.volatile)
    hashed = [entry for entry in outputs
              if not any(entry.path == v or entry.path.startswith(v.rstrip("/") + "/") for v in volatile)]
    manifest = Manifest(kind=kind, stage=stage, status=status, config=_plain(dict(config)), inputs=input_entries,
                        outputs=outputs, content_sha256=tree_digest(hashed), seeds=list(result.seeds),
                        started_at=started, finished_at=now_utc(), summary=_plain(result.summary), **runtime_fields())
    manifest.write(staging)
    if status == "complete":
        replace_dir(staging, out)
    return manifest


def _first_missing(path: Path) -> Path | None:
    """The outermost directory `path.mkdir(parents=True)` would create, or None when `path` exists."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _plain(value: Any) -> Any:
    """JSON-safe copy of a config/summary (paths to str, tuples to lists, numpy scalars to Python)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return value
