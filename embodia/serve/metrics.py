"""Server metrics in the Prometheus text exposition format (version 0.0.4), written by hand to stay cheap.

The server runs on one asyncio event loop, so counters are plain integers without locks.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# request latency buckets (seconds): fine below 5 ms, where a control-loop policy server should live
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
ENDPOINTS = ("/act", "/stream", "/healthz", "/metadata", "/metrics")


class Histogram:
    """Cumulative-bucket histogram of durations in seconds."""

    def __init__(self, buckets_s: tuple[float, ...] = LATENCY_BUCKETS_S):
        self.buckets_s = buckets_s
        self.counts = [0] * (len(buckets_s) + 1)  # last slot is +Inf
        self.sum_s = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Record one duration."""
        self.counts[bisect.bisect_left(self.buckets_s, seconds)] += 1
        self.sum_s += seconds
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        """Exposition lines `name_bucket{..,le=".."}`, `name_sum`, `name_count`."""
        separator = "," if labels else ""
        out, cumulative = [], 0
        for bound, count in zip((*self.buckets_s, float("inf")), self.counts):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels}{separator}le="{le}"}} {cumulative}')
        braced = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braced} {self.sum_s!r}")
        out.append(f"{name}_count{braced} {self.count}")
        return out


class ServerMetrics:
    """Request counts by endpoint and status, latency histograms, in-flight requests, observations served."""

    def __init__(self) -> None:
        self.started_at_s = time.time()
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.latency = {endpoint: Histogram() for endpoint in ENDPOINTS}
        self.inference = Histogram()
        self.in_flight = 0
        self.stream_connections = 0
        self.observations = 0

    def endpoint(self, path: str) -> str:
        """The metric label for a request path (unknown paths share one label to bound cardinality)."""
        return path if path in self.latency else "other"

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request (or WebSocket message) and its latency."""
        self.requests[(endpoint, status)] += 1
        histogram = self.latency.get(endpoint)
        if histogram is not None:
            histogram.observe(seconds)

    def render(self) -> str:
        """All metrics as Prometheus text."""
        lines = [
            "# HELP embodia_requests_total HTTP requests (and /stream messages) by endpoint and status code.",
            "# TYPE embodia_requests_total counter",
        ]
        for (endpoint, status), count in sorted(self.requests.items()):
            lines.append(f'embodia_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}')
        lines += ["# HELP embodia_request_duration_seconds Time from request received to reply sent.",
                  "# TYPE embodia_request_duration_seconds histogram"]
        for endpoint, histogram in self.latency.items():
            lines += histogram.lines("embodia_request_duration_seconds", f'endpoint="{endpoint}"')
        lines += ["# HELP embodia_inference_duration_seconds ONNX Runtime time per batch.",
                  "# TYPE embodia_inference_duration_seconds histogram"]
        lines += self.inference.lines("embodia_inference_duration_seconds", "")
        lines += [
            "# HELP embodia_requests_in_flight HTTP requests being handled now (a scrape counts itself).",
            "# TYPE embodia_requests_in_flight gauge",
            f"embodia_requests_in_flight {self.in_flight}",
            "# HELP embodia_stream_connections Open /stream WebSocket connections.",
            "# TYPE embodia_stream_connections gauge",
            f"embodia_stream_connections {self.stream_connections}",
            "# HELP embodia_observations_total Observations turned into actions.",
            "# TYPE embodia_observations_total counter",
            f"embodia_observations_total {self.observations}",
            "# HELP embodia_start_time_seconds Unix time the server started.",
            "# TYPE embodia_start_time_seconds gauge",
            f"embodia_start_time_seconds {self.started_at_s!r}",
        ]
        return "\n".join(lines) + "\n"
