"""Fixtures for the day-2 operations tests: clients of the session platform and its jobs."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import psycopg2
import pytest

from mlops_cli import jobs

# The random delay in front of a job's command in its cron entry (see roles/mlops_timer).
DELAY = re.compile(r"^sleep \$\(shuf -n 1 -i 0-[0-9]+\); ")


@pytest.fixture(scope="session")
def s3(platform):
    """The platform's S3-compatible store (s3rver's fixed development key pair)."""
    return boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{platform.ports['s3server_port']}",
        aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER", region_name="us-east-1",
    )


@pytest.fixture(scope="session")
def bucket_keys(s3) -> Callable[[str], dict[str, int]]:
    def keys(prefix: str = "") -> dict[str, int]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow-artifacts", Prefix=prefix)
        return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}

    return keys


@pytest.fixture
def client(platform) -> Iterator:
    """An MLflow client through nginx (TLS) as the platform admin (operations move the champion)."""
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        env = platform.env_as("admin")
        for key, value in env.items():
            mp.setenv(key, value)
        yield mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


@pytest.fixture
def mlflow_db(platform) -> Iterator:
    """A connection to MLflow's backend store as its own role (autocommit)."""
    conn = psycopg2.connect(
        host="127.0.0.1", port=platform.ports["postgresql_port"], dbname="mlflow",
        user="mlflow", password=platform.db_password,
    )
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="session")
def psql_admin(platform) -> Callable[[str], str]:
    """Run one SQL statement as the postgres superuser over the instance's socket."""

    def run(sql: str, dbname: str = "postgres") -> str:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
             "-h", str(platform.path("run") / "postgresql"), "-p", str(platform.ports["postgresql_port"]),
             "-d", dbname, "-c", sql],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


@pytest.fixture(scope="session")
def run_job(platform, _remove_cron_entries_of_the_test_instance) -> Callable[[str], jobs.JobResult]:
    """Run a scheduled job the way cron runs it (:func:`mlops_cli.jobs.run_job`: its entry's command line, as
    its user, with cron's environment, minus only the random delay). Its output is in its log file."""
    info = jobs.load_platform(platform.state_dir / "platform.json")

    def run(name: str, timeout: int = 600) -> jobs.JobResult:
        _, _, command = jobs.cron_entry(platform.instance, name)
        script = platform.path("home") / "bin" / f"job-{name}"
        assert DELAY.sub("", command).startswith(f"{script} >> "), command
        return jobs.run_job(info, name, timeout)

    return run


@pytest.fixture(scope="session")
def job_log(platform) -> Callable[[str], str]:
    def read(name: str) -> str:
        path = platform.path("log") / f"job-{name}.log"
        return path.read_text() if path.exists() else ""

    return read


@pytest.fixture(scope="session")
def _remove_cron_entries_of_the_test_instance(platform) -> Iterator[None]:
    """The instance lives under a temporary root that goes away: so must its cron entries."""
    yield
    for path in Path("/etc/cron.d").glob(f"{platform.instance}-*"):
        path.unlink()
