"""Bounds that keep one client from holding the server: request body size checked while it streams in, a
deadline for a request's headers and for its body, and a cap on header bytes (httptools has none of its own).

uvicorn closes a keep-alive connection that idles after a reply, but a connection that never sends a
request, or sends it a byte at a time, is held forever; `guarded_protocol` adds the missing deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from embodia.serve.codec import RequestError, error_body

MAX_HEADER_BYTES = 64 * 1024


async def read_body(chunks: AsyncIterator[bytes], declared_length: str | None, limit: int, timeout_s: float) -> bytes:
    """The whole request body, refused (413) as soon as it passes `limit` bytes and (408) if it takes longer
    than `timeout_s`; a chunked body is never buffered past the limit."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise RequestError(413, f"request body of {declared_length} bytes exceeds the server limit of {limit} bytes "
                                "(max_batch observations); split the batch")
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"request body exceeds the server limit of {limit} bytes; split the "
                                            "batch")
                parts.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"request body not received within {timeout_s:g} s ({size} bytes arrived); "
                                "send the whole body at once") from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _HeaderGuard:
    """Mixin for uvicorn's HTTP protocols: close a connection whose request headers do not arrive within
    `header_timeout_s` (from connecting, or from the first byte after a keep-alive reply), and answer 431 when
    they grow past `max_header_bytes`."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = MAX_HEADER_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle  # type: ignore[attr-defined]
        awaiting = cycle is None or cycle.response_complete
        if awaiting and self._header_timer is None:
            self._arm_header_timer()
        super().data_received(data)  # type: ignore[misc]
        if not awaiting:
            return
        if self.cycle is not cycle or self.transport.get_protocol() is not self:  # type: ignore[attr-defined]
            self._cancel_header_timer()  # headers complete (a request started, or a WebSocket took over)
            self._header_bytes = 0
            return
        self._header_bytes += len(data)
        if self._header_bytes > self.max_header_bytes:
            self._refuse(431, f"request headers exceed {self.max_header_bytes} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._on_header_timeout)  # type: ignore

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        cycle = self.cycle  # type: ignore[attr-defined]
        if self.transport.is_closing() or not (cycle is None or cycle.response_complete):  # type: ignore
            return
        if self._header_bytes:
            self._refuse(408, f"request headers not received within {self.header_timeout_s:g} s")
        else:
            self.transport.close()  # type: ignore[attr-defined]

    def _refuse(self, status: int, message: str) -> None:
        body = error_body(status, message)
        reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
        head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n").encode()
        self._cancel_header_timer()
        self.transport.write(head + body)  # type: ignore[attr-defined]
        self.transport.close()  # type: ignore[attr-defined]


def guarded_protocol(http: str, header_timeout_s: float, max_header_bytes: int = MAX_HEADER_BYTES) -> type:
    """uvicorn's HTTP protocol class for `http` ('auto', 'httptools', 'h11') with the header guard mixed in."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    base = import_from_string(HTTP_PROTOCOLS[http])
    return type(f"Guarded{base.__name__}", (_HeaderGuard, base),
                {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes})
