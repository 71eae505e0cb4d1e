"""How long a data-parallel gradient all-reduce takes on a region's two-tier Ethernet fabric (alpha-beta model).

Accelerators share a node (fast intra-node links); nodes hang off leaf switches; leaves meet at a spine whose
uplinks are `spine_oversubscription` times thinner than the nodes' NICs. A ring all-reduce moves 2(n-1)/n of
the message over its slowest link and pays 2(n-1) hop latencies; a (double binary) tree pays 2 log2(n) latencies
and about 2 messages over its slowest link. Placement uses `slowdown` to weigh splitting a job across nodes:
its compute hours grow by the share of each step spent communicating.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from embodia.platform.regions.catalog import Network

INTRA_NODE_LATENCY_US = 1.0
Algorithm = Literal["ring", "tree", "best"]


def _bottleneck_gbps(accelerators: np.ndarray, network: Network) -> np.ndarray:
    """Slowest link a collective over `accelerators` crosses: intra-node, node NIC, or oversubscribed spine."""
    nodes = np.ceil(accelerators / network.accelerators_per_node)
    crosses_spine = nodes > network.nodes_per_leaf
    return np.where(nodes <= 1, network.intra_node_gbps,
                    np.where(crosses_spine, network.node_gbps / network.spine_oversubscription, network.node_gbps))


def allreduce_s(message_gb: np.ndarray | float, accelerators: np.ndarray | int, network: Network,
                algorithm: Algorithm = "best") -> np.ndarray:
    """Seconds for one all-reduce of `message_gb` (gigabytes) over `accelerators`; 0 for one accelerator."""
    size = np.asarray(message_gb, dtype=float)
    n = np.asarray(accelerators, dtype=float)
    bandwidth = _bottleneck_gbps(n, network) / 8.0  # GB/s
    nodes = np.ceil(n / network.accelerators_per_node)
    hop_s = np.where(nodes <= 1, INTRA_NODE_LATENCY_US, network.latency_us * np.where(
        nodes > network.nodes_per_leaf, 3.0, 1.0)) * 1e-6  # leaf-spine-leaf is three hops
    ring = 2 * (n - 1) / np.maximum(n, 1) * size / bandwidth + 2 * (n - 1) * hop_s
    tree = 2 * np.ceil(np.log2(np.maximum(n, 1))) * hop_s + 2 * size / bandwidth
    chosen = {"ring": ring, "tree": tree, "best": np.minimum(ring, tree)}[algorithm]
    return np.where(n <= 1, 0.0, chosen)


def slowdown(message_gb: np.ndarray | float, accelerators: np.ndarray | int, step_s: np.ndarray | float,
             network: Network) -> np.ndarray:
    """Factor on run time when every `step_s` of compute is followed by one all-reduce (no overlap assumed)."""
    step = np.asarray(step_s, dtype=float)
    return 1.0 + np.where(step > 0, allreduce_s(message_gb, accelerators, network) / np.maximum(step, 1e-12), 0.0)
