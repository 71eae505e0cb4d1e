"""Directed graphs laid out on the server for SVG (pipeline DAGs, lineage): each node's column is its longest
path from a source, rows keep the input order; edges are cubic curves from a node's right to the next's left."""

from __future__ import annotations

from dataclasses import dataclass, field

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 168, 46, 56, 18, 8


@dataclass
class Node:
    """A box in the drawing: its id, two lines of text, a CSS class (its state or kind) and an optional link."""

    id: str
    label: str
    detail: str = ""
    state: str = ""
    href: str | None = None
    x: int = 0
    y: int = 0


@dataclass
class Layout:
    """A laid-out graph: node boxes, edge paths (SVG `d`), and the drawing's size in px."""

    nodes: list[Node]
    edges: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0
    node_w: int = NODE_W
    node_h: int = NODE_H


def layered(nodes: list[Node], edges: list[tuple[str, str]]) -> Layout:
    """Place `nodes` in columns by longest path along `edges` (source id, target id); unknown ids are ignored."""
    by_id = {node.id: node for node in nodes}
    edges = [(a, b) for a, b in edges if a in by_id and b in by_id and a != b]
    column = _columns([node.id for node in nodes], edges)
    rows: dict[int, int] = {}
    for node in nodes:
        col = column[node.id]
        node.x = PAD + col * (NODE_W + GAP_X)
        node.y = PAD + rows.get(col, 0) * (NODE_H + GAP_Y)
        rows[col] = rows.get(col, 0) + 1
    paths = [_curve(by_id[a], by_id[b]) for a, b in edges]
    width = PAD * 2 + (max(column.values(), default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(rows.values(), default=1) * (NODE_H + GAP_Y) - GAP_Y
    return Layout(nodes, paths, width, height)


def _columns(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path depth of each node (cycles, which lineage never has, are cut at the first revisit)."""
    parents: dict[str, list[str]] = {node: [] for node in ids}
    for a, b in edges:
        parents[b].append(a)
    depth: dict[str, int] = {}

    def visit(node: str, seen: frozenset[str]) -> int:
        if node in depth:
            return depth[node]
        ups = [p for p in parents[node] if p not in seen]
        depth[node] = 1 + max((visit(p, seen | {node}) for p in ups), default=-1)
        return depth[node]

    for node in ids:
        visit(node, frozenset())
    return depth


def _curve(a: Node, b: Node) -> str:
    x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
    x2, y2 = b.x, b.y + NODE_H // 2
    bend = max(20, (x2 - x1) // 2)
    return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
