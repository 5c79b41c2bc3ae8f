"""Health of each platform service, from the service map `make up` writes (platform.json)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlops.settings import get_settings


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    process: str
    probe: str
    healthy: bool


@dataclass(frozen=True)
class PlatformStatus:
    ui_url: str
    services: list[ServiceHealth]
    auth: str = ""
    """How MLflow checks logins, and whether it refused an anonymous call just now."""
    auth_ok: bool = True

    @property
    def healthy(self) -> bool:
        return bool(self.services) and all(s.healthy for s in self.services) and self.auth_ok


def _probe(spec: dict, ca_cert: str | None, timeout: float = 5.0) -> tuple[bool, str]:
    if spec["kind"] == "tcp":
        try:
            with socket.create_connection((spec["host"], spec["port"]), timeout=timeout):
                return True, f"tcp {spec['host']}:{spec['port']} open"
        except OSError as exc:
            return False, f"tcp {spec['host']}:{spec['port']}: {exc.strerror or exc}"
    url = spec["url"]
    context = ssl.create_default_context(cafile=ca_cert) if url.startswith("https") and ca_cert else None
    if context is not None:
        context.check_hostname = False  # probed on 127.0.0.1; the certificate names the public host
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
            return True, f"HTTP {response.status} from {url}"
    except urllib.error.HTTPError as exc:
        # Some services answer an anonymous probe with an error status and are still up
        # (an S3 server: 403); the service map lists the statuses that mean "up".
        return exc.code in spec.get("expect", [200]), f"HTTP {exc.code} from {url}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {getattr(exc, 'reason', exc)}"


def _process_states(platform: dict) -> dict[str, str]:
    """Process state per program as the service manager reports it."""
    names = [f"{platform['instance']}-{s['name']}" for s in platform["services"]]
    if platform["service_manager"] == "systemd":
        cmd = ["systemctl", "is-active", *(f"{n}.service" for n in names)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.split()
        return dict(zip(names, out, strict=False))
    cmd = [platform["supervisorctl"], "-c", platform["supervisor_config"], "status", *names]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    states = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            states[parts[0]] = parts[1]
    return states


def platform_status(platform_file: Path | None = None) -> PlatformStatus:
    path = platform_file or get_settings().platform_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the platform has not been provisioned here (run `make up`)")
    platform = json.loads(path.read_text())
    states = _process_states(platform)
    services = []
    for spec in platform["services"]:
        ok, detail = _probe(spec["probe"], platform.get("ca_cert"))
        state = states.get(f"{platform['instance']}-{spec['name']}", "unknown")
        running = state.lower() in {"running", "active"}
        services.append(ServiceHealth(spec["name"], state, detail, ok and running))
    auth, auth_ok = _auth_status(platform.get("auth"))
    return PlatformStatus(platform["ui_url"], services, auth, auth_ok)


def _auth_status(auth: dict | None) -> tuple[str, bool]:
    """The auth mode from the service map, checked: an anonymous API call must get 401."""
    if not auth:
        return "not described (provisioned before per-person logins: run `make up`)", True
    ok, detail = _probe({"kind": "http", "url": auth["probe_url"], "expect": [401]}, None)
    refused = ok and "HTTP 401" in detail
    answer = "refused (401)" if refused else f"NOT refused: {detail}"
    return (f"{auth['mode']}: {auth['people']} people, {auth['services']} service identities, admin "
            f"'{auth['admin']}'; anonymous API call {answer}"), refused


def render_status(report: PlatformStatus) -> str:
    lines = [f"{'service':<12} {'process':<10} {'health':<8} probe"]
    for s in report.services:
        lines.append(f"{s.name:<12} {s.process:<10} {'ok' if s.healthy else 'FAILING':<8} {s.probe}")
    if report.auth:
        lines.append(f"Logins: {report.auth}")
    lines.append(f"UI: {report.ui_url}  ({'healthy' if report.healthy else 'NOT healthy'})")
    return "\n".join(lines)
