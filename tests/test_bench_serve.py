"""`mlops bench serve`'s parts that need no platform: the load generator against a real HTTP server on
loopback, the summary's comparisons on given rows, and the scrape-cost pieces (Prometheus configuration, scrape
count, summary, the command's refusal without Prometheus)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlops_cli import bench_serve
from mlops_cli.bench_serve import (
    ScrapeRound,
    count_scrapes,
    prometheus_config,
    render_scrape,
    summarise,
    summarise_scrape,
)
from mlops_cli.cli import app
from mlops_cli.loadgen import LoadResult, post


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


def test_a_refused_connection_is_a_failure_per_request(free_port) -> None:  # noqa: ANN001
    port = free_port()  # nothing listens on it
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


# --- scrape cost ---------------------------------------------------------------------------------


def test_prometheus_config_scrapes_the_server_alone_at_the_interval(tmp_path: Path) -> None:
    config = yaml.safe_load(prometheus_config("127.0.0.1:8123", 15))
    assert config["global"] == {"scrape_interval": "15000ms", "scrape_timeout": "10000ms"}
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"] == [{"targets": ["127.0.0.1:8123"]}]
    assert yaml.safe_load(prometheus_config("127.0.0.1:1", 2.5))["global"]["scrape_timeout"] == "2500ms"
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) not installed: the configuration is not checked by it")
    (tmp_path / "p.yml").write_text(prometheus_config("127.0.0.1:8123", 15))
    check = subprocess.run(["promtool", "check", "config", str(tmp_path / "p.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_scrapes_are_counted_inside_the_round_only() -> None:
    values = [[99.0, "1"], [100.0, "1"], [115.0, "0"], [130.0, "1"], [145.5, "1"]]
    assert count_scrapes(values, 100.0, 145.0) == (3, 2)
    assert count_scrapes([], 0, 1) == (0, 0)


def _round(on: bool, rps: float, seconds: float, latency_ms: float, scrapes: int = 0) -> ScrapeRound:
    n = int(rps * seconds)
    return ScrapeRound(on, LoadResult([latency_ms / 1000.0] * n, [], seconds), scrapes, scrapes)


def test_scrape_summary_pools_the_off_and_on_rounds() -> None:
    rounds = [_round(False, 100, 45, 10), _round(True, 96, 45, 12, 3), _round(False, 102, 45, 10),
              _round(True, 98, 45, 11, 3)]
    s = summarise_scrape(15, rounds)
    assert s["interval_s"] == 15 and s["throughput_off"] == 101.0 and s["throughput_on"] == 97.0
    assert s["throughput_ratio"] == round(97 / 101, 3) and s["within_budget"] is True
    assert s["scrapes"] == 6 and s["scrapes_verified"] is True and s["failed"] == 0
    assert s["p99_ms_off"] == 10.0 and 11.0 <= s["p99_ms_on"] <= 12.0
    assert [r["prometheus"] for r in s["rounds"]] == [False, True, False, True] and s["rounds"][1]["scrapes"] == 3
    over = summarise_scrape(15, [_round(False, 100, 45, 10), _round(True, 90, 45, 10, 0)])
    assert over["within_budget"] is False and over["scrapes_verified"] is False
    line = render_scrape({**s, "workers": 2, "round_s": 45})
    assert "every 15 s" in line and "ratio 0.960" in line and "6 scrapes" in line and "within" in line


def test_asking_for_the_scrape_cost_without_prometheus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[object] = []
    monkeypatch.setattr(bench_serve, "find_prometheus", lambda: None)
    monkeypatch.setattr(bench_serve, "bench_serve", lambda cfg: ran.append(cfg) or {"summary": {}, "results": []})
    refused = CliRunner().invoke(app, ["bench", "serve", "--scrape-interval", "15", "--no-kit"])
    assert refused.exit_code == 2 and "/usr/bin/prometheus" in refused.output and not ran
    # Not asked for (the default): said in one line, the rest of the bench runs without it.
    skipped = CliRunner().invoke(app, ["bench", "serve", "--no-kit"])
    assert skipped.exit_code == 0, skipped.output
    assert "Scrape cost not measured" in skipped.output and ran[0].scrape_interval_s == 0  # type: ignore[attr-defined]
    assert CliRunner().invoke(app, ["bench", "serve", "--scrape-interval", "0.5"]).exit_code == 2


def test_load_slices_add_up_to_one_row_of_figures() -> None:
    from mlops_cli.loadgen import LoadResult

    total = LoadResult()
    total.add(LoadResult([0.010, 0.020], ["HTTP 503: busy"], 1.0))
    total.add(LoadResult([0.030, 0.040], [], 1.0))
    assert total.rate == 2.0
    figures = total.figures()
    assert figures == {"ok": 4, "failed": 1, "seconds": 2.0, "p50_ms": 25.0, "p99_ms": 39.7,
                       "first_errors": ["HTTP 503: busy"]}
    empty = LoadResult().figures()
    assert empty["ok"] == 0 and empty["p99_ms"] != empty["p99_ms"]  # NaN without a success
