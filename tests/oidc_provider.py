"""A real OpenID provider on loopback for the tests: panva's oidc-provider (tests/oidc/provider.mjs) under node.

    with start_provider(port, clients, accounts, workdir) as provider:
        provider.issuer  # "http://127.0.0.1:<port>", its discovery document at /.well-known/openid-configuration

`clients` are registered as given (client_id, client_secret, redirect_uris and any other client metadata
oidc-provider accepts; token_endpoint_auth_method defaults to client_secret_basic). `accounts` maps a login name
to its claims (groups, email, name); the login page of the provider (oidc-provider's development interactions)
takes one of these names and any password. See tests/oidc/provider.mjs for the details.

A test module imports this file by path (the tests are not a package and pytest runs with
--import-mode=importlib):

    spec = importlib.util.spec_from_file_location("oidc_provider", Path(__file__).parent / "oidc_provider.py")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent / "oidc"
SCRIPT = PACKAGE_DIR / "provider.mjs"
READY_TIMEOUT_S = 30.0


@dataclass
class Provider:
    issuer: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


def _log_tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def start_provider(port: int, clients: list[dict[str, Any]], accounts: dict[str, dict[str, Any]],
                   workdir: Path, **options: Any) -> Iterator[Provider]:
    """Start the provider on 127.0.0.1:`port`, yield it once it listens, stop it (SIGTERM, then kill) on exit.

    `options` go into the config as they are: auto_consent=False shows the consent page after the login,
    pkce_required=False lets authorization requests without PKCE through. The config (client secrets) is
    written to workdir/oidc-provider.json (0600), the provider's output to workdir/provider.log.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: the test OpenID provider (tests/oidc) runs under Node.js")
    if not (PACKAGE_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(f"{PACKAGE_DIR}/node_modules is missing: run `make test-deps` "
                           "(it runs `npm ci --prefix tests/oidc`)")
    workdir.mkdir(parents=True, exist_ok=True)
    issuer = f"http://127.0.0.1:{port}"
    config = workdir / "oidc-provider.json"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"issuer": issuer, "port": port, "clients": clients, "accounts": accounts, **options}, f, indent=2)
    os.chmod(config, 0o600)  # an existing file keeps its mode through os.open

    log = workdir / "provider.log"
    with log.open("wb") as out:
        process = subprocess.Popen([node, str(SCRIPT), str(config)], cwd=PACKAGE_DIR, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready = f"ready {issuer}"
        while ready not in log.read_text(errors="replace").splitlines():
            if process.poll() is not None:
                raise RuntimeError(f"the OpenID provider exited with {process.returncode} before it was ready; "
                                   f"{log}:\n{_log_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OpenID provider was not ready within {READY_TIMEOUT_S:.0f} s; "
                                   f"{log}:\n{_log_tail(log)}")
            time.sleep(0.05)
        yield Provider(issuer=issuer, port=port, process=process, log=log)
    finally:
        _stop(process)
