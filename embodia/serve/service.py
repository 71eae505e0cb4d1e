"""What the policy server does for each endpoint, independent of the web framework that carries it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

import numpy as np
import orjson

from embodia.core.errors import UserError
from embodia.serve.codec import (
    BINARY_TYPE,
    JSON_TYPE,
    RequestError,
    InputSpec,
    Inputs,
    decode_binary,
    decode_json,
    encode_binary_action,
    encode_json_action,
    error_body,
)
from embodia.serve.metrics import PROMETHEUS_TYPE, ServerMetrics
from embodia.serve.runtime import ServedModel

JSON_BYTES_PER_VALUE = 32  # generous upper bound of one float in JSON, to size the body limit
JSON_BYTES_PER_PIXEL_VALUE = 2  # base64 takes 4/3 bytes per uint8; nested lists (~4) fit only smaller batches
# payloads above this are decoded and run in a worker thread: below it a hand-off costs more than the work,
# above it the work would hold the event loop (and /healthz, and every small request) for milliseconds
OFFLOAD_BYTES = 64 * 1024
CLOSE_AFTER = frozenset({408, 413})  # the rest of such a request is never read, so the connection cannot be reused
Result = TypeVar("Result")


class Reply(NamedTuple):
    """An HTTP reply: status, content type, body, and the `x-embodia-shape` header for binary bodies."""

    status: int
    content_type: str
    body: bytes
    shape: str | None = None


class PolicyService:
    """Validates requests against the policy spec, runs the policy, encodes replies, keeps the metrics."""

    def __init__(self, model: ServedModel, max_batch: int = 1024):
        if max_batch < 1:
            raise UserError(f"max_batch={max_batch} must be at least 1")
        self.model = model
        self.policy = model.policy
        self.spec = model.metadata
        self.max_batch = max_batch
        self.inputs = InputSpec(self.spec.obs_dim, max_batch, self.spec.image_keys, self.spec.image_size or 0)
        self.metrics = ServerMetrics()
        pixel_values = len(self.inputs.image_keys) * self.inputs.image_bytes
        self.max_body_bytes = max_batch * (self.spec.obs_dim * JSON_BYTES_PER_VALUE
                                           + pixel_values * JSON_BYTES_PER_PIXEL_VALUE) + 4096
        self._metrics_lock = threading.Lock()  # inference is also counted from the worker thread
        self._worker: ThreadPoolExecutor | None = None
        self._metadata_body = orjson.dumps(self._metadata())
        self._health_body = orjson.dumps({"status": "ok", "task": self.spec.task, "model": model.file})

    def act(self, body: bytes, content_type: str, shape_header: str | None) -> Reply:
        """POST /act: JSON or binary observations in, actions of the same rank and format out."""
        media_type = content_type.split(";", 1)[0].strip().lower()
        try:
            if media_type in (JSON_TYPE, ""):
                inputs = decode_json(body, self.inputs)
                return Reply(200, JSON_TYPE, encode_json_action(self.infer(inputs), inputs.single))
            if media_type == BINARY_TYPE:
                inputs = decode_binary(body, shape_header, self.inputs)
                payload, shape = encode_binary_action(self.infer(inputs), inputs.single)
                return Reply(200, BINARY_TYPE, payload, shape)
            raise RequestError(415, f"content-type {content_type!r} is not supported; use {JSON_TYPE} or "
                                    f"{BINARY_TYPE} (float32 rows)")
        except RequestError as error:
            return self.error(error.status, error.message)

    def infer(self, inputs: Inputs) -> np.ndarray:
        """Run the policy on checked inputs (obs (B, obs_dim) [+ images]) → actions (B, act_dim) float32."""
        start = time.perf_counter()
        actions = self.policy.run_checked(inputs.obs, inputs.images)  # the decoders checked them
        with self._metrics_lock:
            self.metrics.inference.observe(time.perf_counter() - start)
            self.metrics.observations += inputs.obs.shape[0]
        return actions

    async def off_loop(self, size: int, work: Callable[..., Result], *args: object) -> Result:
        """`work(*args)` inline for a small payload, in the worker thread for one over OFFLOAD_BYTES."""
        if size <= OFFLOAD_BYTES:
            return work(*args)
        if self._worker is None:
            # one thread: large requests queue behind each other instead of all holding memory at once
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embodia-serve-large")
        return await asyncio.get_running_loop().run_in_executor(self._worker, work, *args)

    def close(self) -> None:
        """Stop the worker thread (at server shutdown)."""
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None

    def stream_frame(self, frame: bytes) -> bytes:
        """One binary /stream frame (an /act binary body without the shape header) → k*act_dim float32."""
        return encode_binary_action(self.infer(decode_binary(frame, None, self.inputs)), single=False)[0]

    def stream_text(self, text: str) -> str:
        """One JSON text /stream frame, same body as POST /act (raises RequestError)."""
        inputs = decode_json(text.encode(), self.inputs)
        return encode_json_action(self.infer(inputs), inputs.single).decode()

    def healthz(self) -> Reply:
        """GET /healthz: the model is loaded and answering."""
        return Reply(200, JSON_TYPE, self._health_body)

    def metadata(self) -> Reply:
        """GET /metadata: observation/action spec and model identity."""
        return Reply(200, JSON_TYPE, self._metadata_body)

    def metrics_text(self) -> Reply:
        """GET /metrics: Prometheus text."""
        return Reply(200, PROMETHEUS_TYPE, self.metrics.render().encode())

    def error(self, status: int, message: str) -> Reply:
        """A JSON error reply."""
        return Reply(status, JSON_TYPE, error_body(status, message))

    def _metadata(self) -> dict:
        spec, model = self.spec, self.model
        return {
            "task": spec.task,
            "algo": spec.algo,
            "version": spec.version,
            "observation": {"name": "obs", "shape": [spec.obs_dim], "dtype": "float32"},
            "action": {"name": "action", "shape": [spec.act_dim], "dtype": "float32",
                       "low": list(spec.action_low), "high": list(spec.action_high)},
            "image_keys": list(spec.image_keys),
            "image_size": spec.image_size,
            "images": {key: {"name": key, "shape": [spec.image_size, spec.image_size, 3], "dtype": "uint8"}
                       for key in spec.image_keys},
            "obs_dim": spec.obs_dim,
            "act_dim": spec.act_dim,
            "max_batch": self.max_batch,
            "model": {"file": model.file, "sha256": model.sha256},
            "formats": [JSON_TYPE, BINARY_TYPE],
            "stream": "/stream",
        }
