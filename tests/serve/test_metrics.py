"""Prometheus text exposition of the server metrics."""

from __future__ import annotations

from embodia.serve.metrics import Histogram, ServerMetrics


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram(buckets_s=(0.001, 0.01))
    for seconds in (0.0005, 0.002, 0.003, 5.0):
        histogram.observe(seconds)
    lines = histogram.lines("latency", 'endpoint="/act"')
    assert lines[:3] == ['latency_bucket{endpoint="/act",le="0.001"} 1',
                         'latency_bucket{endpoint="/act",le="0.01"} 3',
                         'latency_bucket{endpoint="/act",le="+Inf"} 4']
    assert lines[4] == 'latency_count{endpoint="/act"} 4'
    assert abs(float(lines[3].split()[-1]) - 5.0055) < 1e-9


def test_render_counts_requests_by_endpoint_and_status() -> None:
    metrics = ServerMetrics()
    metrics.record_request("/act", 200, 0.0003)
    metrics.record_request("/act", 200, 0.0004)
    metrics.record_request("/act", 422, 0.0001)
    metrics.record_request(metrics.endpoint("/nope"), 404, 0.0001)
    text = metrics.render()
    assert 'embodia_requests_total{endpoint="/act",status="200"} 2' in text
    assert 'embodia_requests_total{endpoint="/act",status="422"} 1' in text
    assert 'embodia_requests_total{endpoint="other",status="404"} 1' in text
    assert 'embodia_request_duration_seconds_count{endpoint="/act"} 3' in text
    assert "embodia_requests_in_flight 0" in text
    assert "# TYPE embodia_request_duration_seconds histogram" in text
