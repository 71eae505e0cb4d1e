"""Console pages for what the project ships: the model registry (versions, aliases, gate verdicts, a promote
button), the lineage graph from data to deployment (laid out on the server), deployments with health and
latency probed by the server (the browser only ever talks to the console)."""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.error
import urllib.request
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from embodia.core.errors import UserError
from embodia.platform.api import routes
from embodia.platform.api.auth import Caller
from embodia.platform.api.console.graphs import Node, layered
from embodia.platform.api.console.pages import posted, render
from embodia.platform.api.console.session import console_caller
from embodia.platform.api.schemas import PromoteIn

router = APIRouter(prefix="/console", include_in_schema=False)
NAME = PathParam(pattern=routes.NAME_PATTERN)
PROBES = 3
PROBE_TIMEOUT_S = 1.0


# ----------------------------------------------------------------------------------------------- registry


@router.get("/registry", response_class=HTMLResponse)
def registry_page(request: Request) -> Response:
    """Model versions by name, newest first, with aliases and gate verdicts; admins can promote."""
    caller = console_caller(request)
    return _registry(request, caller, message=None, error=None)


def _registry(request: Request, caller: Caller, *, message: str | None, error: str | None,
              status: int = 200) -> Response:
    versions = routes.list_models(request, name=None, caller=caller)
    models: dict[str, list[dict[str, Any]]] = {}
    for version in sorted(versions, key=lambda v: v["version"], reverse=True):
        models.setdefault(version["name"], []).append(version)
    history = {name: routes.alias_events(request, name=name, caller=caller)[-10:][::-1] for name in models}
    return render(request, "registry.html", caller, status=status, section="Registry", title="Model registry",
                  models=models, history=history, message=message, error=error, can_promote=caller.allows("admin"))


@router.post("/registry/{name}/promote", response_class=HTMLResponse)
async def promote(request: Request, name: str = NAME) -> Response:
    """Point an alias of NAME at a version (admin), through the API's route; the page shows the gate verdict."""
    caller, fields = await posted(request, "admin")
    alias = fields.get("alias", "production").strip() or "production"
    try:
        body = PromoteIn(version=int(fields.get("version", "0")), why=fields.get("why", ""))
        if not _valid_name(alias):
            raise UserError(f"alias {alias!r} is invalid: use letters, digits, '_', '.', '-' (at most 100)")
        version = await asyncio.to_thread(routes.promote, request, body, name=name, alias=alias, caller=caller)
    except (ValueError, ValidationError):
        return _registry(request, caller, message=None, status=400,
                         error="promote: version must be a whole number of at least 1")
    except UserError as problem:
        return _registry(request, caller, message=None, error=str(problem), status=400)
    gate = version.get("gate") or {}
    verdict = f"gate {gate.get('verdict', 'not run')}" + (f" ({gate['reason']})" if gate.get("reason") else "")
    return _registry(request, caller, error=None,
                     message=f"{name}@{alias} now points at version {version['version']}; {verdict}.")


def _valid_name(text: str) -> bool:
    import re

    return re.fullmatch(routes.NAME_PATTERN, text) is not None


# ------------------------------------------------------------------------------------------------ lineage


@router.get("/lineage", response_class=HTMLResponse)
def lineage_page(request: Request, artifact: str | None = Query(None, pattern=r"^[0-9a-f]{64}$")) -> Response:
    """The lineage of an artifact (default: the newest model version's) as a graph from data to deployment."""
    caller = console_caller(request)
    if artifact is None:
        artifact = _default_focus(request, caller)
        if artifact is None:
            return render(request, "lineage.html", caller, section="Lineage", title="Lineage", graph=None,
                          focus=None)
        return RedirectResponse(f"/console/lineage?artifact={artifact}", status_code=303)
    tree = routes.get_lineage(request, sha256=artifact, caller=caller)
    deployments = routes.list_deployments(request, caller=caller)
    graph = _lineage_graph(tree, deployments)
    return render(request, "lineage.html", caller, section="Lineage", title=f"Lineage of {artifact[:12]}",
                  graph=graph, focus=artifact)


def _default_focus(request: Request, caller: Caller) -> str | None:
    versions = routes.list_models(request, name=None, caller=caller)
    if versions:
        return max(versions, key=lambda v: v["created_at"])["artifact_sha256"]
    artifacts = routes.list_artifacts(request, kind=None, limit=1, caller=caller)
    return artifacts[0]["sha256"] if artifacts else None


def _lineage_graph(tree: dict[str, Any], deployments: list[dict[str, Any]]):
    """One node per artifact in the ancestor and descendant trees, edges from input to output, and a node per
    deployment serving one of them."""
    nodes: dict[str, Node] = {}
    edges: set[tuple[str, str]] = set()
    focus = tree["artifact"]

    def add(node: dict[str, Any]) -> None:
        if node["sha256"] not in nodes:
            kind = node.get("kind", "unregistered")
            label = f"{kind} {node.get('name') or ''}".strip()
            detail = node["sha256"][:12] + (f" · {', '.join(node.get('models', []))}" if node.get("models") else "")
            css = kind + (" focus" if node["sha256"] == focus else "")
            nodes[node["sha256"]] = Node(node["sha256"], label, detail, css, f"/console/artifacts/{node['sha256']}")

    def walk(node: dict[str, Any], up: bool) -> None:
        add(node)
        for child in node.get("next", []):
            add(child)
            edges.add((child["sha256"], node["sha256"]) if up else (node["sha256"], child["sha256"]))
            walk(child, up)

    walk(tree["ancestors"], True)
    walk(tree["descendants"], False)
    for state in deployments:
        if state["model_sha256"] in nodes:
            key = f"deployment:{state['name']}"
            nodes[key] = Node(key, f"deployment {state['name']}", state["status"], f"deployment {state['status']}",
                              "/console/deployments")
            edges.add((state["model_sha256"], key))
    ordered = sorted(nodes.values(), key=lambda node: node.id)
    return layered(ordered, sorted(edges))


# -------------------------------------------------------------------------------------------- deployments


@router.get("/deployments", response_class=HTMLResponse)
async def deployments_page(request: Request) -> Response:
    """The project's policy servers: status, health and health-check latency (probed now by this server)."""
    caller = console_caller(request)
    deployments = await asyncio.to_thread(routes.list_deployments, request, caller=caller)
    probes = await asyncio.gather(*(asyncio.to_thread(probe, d["url"]) for d in deployments))
    rows = [{**d, **p} for d, p in zip(deployments, probes)]
    return render(request, "deployments.html", caller, section="Deployments", title="Deployments", rows=rows)


def probe(url: str) -> dict[str, Any]:
    """GET url/healthz a few times: healthy when every answer is 200; the median round trip in seconds."""
    times, healthy = [], True
    for _ in range(PROBES):
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=PROBE_TIMEOUT_S) as reply:
                healthy = healthy and reply.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return {"healthy": False, "latency_s": None}
        times.append(time.perf_counter() - start)
    return {"healthy": healthy, "latency_s": statistics.median(times)}
