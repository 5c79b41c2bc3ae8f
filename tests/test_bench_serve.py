"""`mlops bench serve`'s parts that need no platform: the load generator against a real HTTP server on
loopback, and the summary's comparisons on given rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlops_cli.bench_serve import summarise
from mlops_cli.loadgen import post


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn and nginx
    connections: set[int] = set()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).connections.add(id(self.connection))
        if body == b"fail":
            self._send(503, b'{"detail": "no model loaded yet"}')
        elif body == b"chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"ok":', b" true}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif body == b"close":
            self._send(200, b"{}", close=True)
        else:
            self._send(200, b'{"echo": "%s"}' % body)

    def _send(self, status: int, body: bytes, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.connections = set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/predict"
    httpd.shutdown()
    httpd.server_close()


def test_fixed_count_over_keep_alive_connections(server: str) -> None:
    got = post(server, [b"a", b"b", b"chunked"], count=60, concurrency=4)
    assert len(got.latencies_s) == 60 and not got.failures and got.seconds > 0
    assert len(_Handler.connections) == 4  # one connection per client, kept alive


def test_errors_and_closed_connections_are_counted_not_fatal(server: str) -> None:
    got = post(server, [b"ok", b"fail", b"close"], count=30, concurrency=2)
    assert len(got.latencies_s) == 20
    assert len(got.failures) == 10 and all(f.startswith("HTTP 503: ") and "no model" in f for f in got.failures)


def test_a_refused_connection_is_a_failure_per_request() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = post(f"http://127.0.0.1:{port}/predict", [b"x"], count=5, concurrency=2)
    assert not got.latencies_s and len(got.failures) == 5 and "ConnectionRefusedError" in got.failures[0]


def test_not_an_http_url_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        post("ftp://example/x", [b"x"], 1, 1)


def _row(requested: str, variant: str, rps: float, p99: float = 10.0) -> dict[str, object]:
    return {"target": f"mlops serve {requested}", "variant_requested": requested, "variant": variant,
            "throughput_rps": rps, "p99_ms": p99, "failed": 0}


def test_summary_compares_the_served_variant_with_the_forced_ones() -> None:
    rows = [_row("auto", "openvino_bf16", 900.0, 16.0), _row("openvino_int8", "openvino_int8", 933.0),
            _row("openvino_bf16", "openvino_bf16", 901.0), _row("compiled", "compiled", 550.0, 24.0),
            _row("int8", "fp32", 700.0)]  # forced int8 could not run here: fell back, not its own figure
    s = summarise("m", "3", rows)
    assert s["served_variant"] == "openvino_bf16" and s["fastest_forced_variant"] == "openvino_int8"
    assert s["served_variant_is_fastest"] is False and s["served_vs_fastest_throughput"] == round(900 / 933, 2)
    assert s["best_torch_variant"] == "compiled" and s["served_vs_best_torch_throughput"] == round(900 / 550, 2)
    assert s["served_vs_best_torch_p99"] == round(16 / 24, 2)
    assert s["served_vs_compiled_throughput"] == round(900 / 550, 2)
    with_bf16 = summarise("m", "3", [*rows, _row("bf16", "bf16", 700.0, 12.0)])
    assert with_bf16["best_torch_variant"] == "bf16" and with_bf16["served_vs_best_torch_throughput"] == round(9 / 7, 2)
    assert with_bf16["served_vs_compiled_throughput"] == round(900 / 550, 2)
    assert summarise("m", "3", rows[:1] + rows[2:])["served_variant_is_fastest"] is True
    # the served server itself measured fastest (its variant's forced twin drew a slower slice): fastest
    tie = [_row("auto", "openvino_bf16", 1188.0), _row("openvino_int8", "openvino_int8", 1186.0),
           _row("openvino_bf16", "openvino_bf16", 1153.0)]
    assert summarise("m", "3", tie)["served_variant_is_fastest"] is True
