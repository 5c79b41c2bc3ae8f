"""A small load generator for benchmarks: keep-alive HTTP/1.1 POSTs on asyncio streams, one process.

Used by ``mlops bench serve``. A client on the same small host competes with the servers it measures
for the CPU: with 8 httpx threads (about 1 ms of Python per request, under the GIL) the client, not the
server, capped the figures. Here each request is a prepared byte string written to an open connection
and its response is read by ``Content-Length`` (or chunks), so the client costs tens of microseconds.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    """One per successful (HTTP 200) request."""
    failures: list[str] = field(default_factory=list)
    """One per failed request: the status and the start of the body, or the connection error."""
    seconds: float = 0.0

    def add(self, other: LoadResult) -> None:
        """Count ``other`` (a later slice of the same load) in this one."""
        self.latencies_s += other.latencies_s
        self.failures += other.failures
        self.seconds += other.seconds

    @property
    def rate(self) -> float:
        """Successful requests per second of load."""
        return len(self.latencies_s) / max(self.seconds, 1e-9)

    def figures(self) -> dict[str, Any]:
        """ok, failed, seconds, p50_ms, p99_ms (NaN without a success) and the first three failures."""
        lat = np.asarray(self.latencies_s or [np.nan]) * 1000.0
        return {"ok": len(self.latencies_s), "failed": len(self.failures), "seconds": round(self.seconds, 3),
                "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "first_errors": self.failures[:3]}


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        await reader.readuntil(b"\r\n")
        body = b"".join(parts)
    else:
        body = await reader.read()
        headers["connection"] = "close"
    return status, headers, body


async def post_many(url: str, bodies: Sequence[bytes], count: int, concurrency: int,
                    auth: tuple[str, str] | None = None, verify: str | bool = True,
                    timeout_s: float = 120.0) -> LoadResult:
    """POST ``count`` bodies (cycling through ``bodies``) to ``url`` over ``concurrency`` connections."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    tls: ssl.SSLContext | None = None
    if u.scheme == "https":
        tls = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    extra = ""
    if auth:
        extra = "Authorization: Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() + "\r\n"
    path = u.path + (f"?{u.query}" if u.query else "")
    requests = [(f"POST {path} HTTP/1.1\r\nHost: {u.hostname}:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(b)}\r\n{extra}\r\n").encode() + b for b in bodies]
    todo = iter(range(count))
    result = LoadResult()

    async def connection() -> None:
        writer: asyncio.StreamWriter | None = None
        reader: asyncio.StreamReader | None = None
        for i in todo:
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(u.hostname, port, ssl=tls), timeout_s)
                start = time.perf_counter()
                writer.write(requests[i % len(requests)])
                status, headers, body = await asyncio.wait_for(_response(reader), timeout_s)  # type: ignore[arg-type]
                elapsed = time.perf_counter() - start
                if status == 200:
                    result.latencies_s.append(elapsed)
                else:
                    result.failures.append(f"HTTP {status}: {body[:120].decode('utf-8', 'replace')}")
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                result.failures.append(f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result


def post(url: str, bodies: Sequence[bytes], count: int, concurrency: int, auth: tuple[str, str] | None = None,
         verify: str | bool = True) -> LoadResult:
    """:func:`post_many` from synchronous code."""
    return asyncio.run(post_many(url, bodies, count, concurrency, auth, verify))
