"""PostgreSQL backups of the platform's databases in the artifact store (S3 API).

Installed by the `backup` role as <mlops_home>/bin/pg_backup.py and run with the MLflow
environment's Python (it has boto3). Settings come from a JSON file the role renders (no
secrets in it): bucket, prefix, how many backups to keep, the S3 endpoint (empty on AWS) and the
databases (host, port, name, user, pgpass file). Passwords stay in the pgpass files; pg_dump
reads them through PGPASSFILE, never from a command line.

A backup is a set of objects under <prefix><name>/ (name = UTC timestamp):
    <db>.dump        pg_dump --format=custom of each database
    MANIFEST.json    written last: a set without it is incomplete and is never restored

  pg_backup.py --config FILE backup            dump, upload, then keep only the newest N sets
  pg_backup.py --config FILE list              complete sets, newest first
  pg_backup.py --config FILE fetch NAME|latest --dest DIR
                                               download a set, check each dump with pg_restore
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

log = logging.getLogger("pg_backup")

MANIFEST = "MANIFEST.json"
# The host's Python runs this (3.10 on Ubuntu 22.04: no datetime.UTC).
UTC = dt.timezone.utc  # noqa: UP017


class BackupError(RuntimeError):
    """A failure with a sentence for the operator."""


def load_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read the backup settings {path}: {exc}") from exc
    for key in ("bucket", "prefix", "keep", "databases"):
        if key not in config:
            raise BackupError(f"{path} has no '{key}'")
    if int(config["keep"]) < 1:
        raise BackupError(f"{path}: keep must be at least 1 (got {config['keep']})")
    if not config["prefix"].endswith("/"):
        config["prefix"] += "/"
    return config


def s3_client(config: dict):
    return boto3.client("s3", endpoint_url=config.get("endpoint_url") or None)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def list_sets(s3, config: dict) -> dict[str, dict[str, int]]:
    """Every backup set under the prefix: name -> {object file name: size}."""
    sets: dict[str, dict[str, int]] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=config["bucket"], Prefix=config["prefix"]):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(config["prefix"]) :]
            name, _, filename = rest.partition("/")
            if name and filename:
                sets.setdefault(name, {})[filename] = obj["Size"]
    return sets


def complete_sets(sets: dict[str, dict[str, int]]) -> list[str]:
    """Names of the sets with a manifest, newest first (names are UTC timestamps)."""
    return sorted((name for name, files in sets.items() if MANIFEST in files), reverse=True)


def dump_database(db: dict, dest: Path, pg_dump: str) -> None:
    env = dict(os.environ, PGPASSFILE=db["passfile"], PGCONNECT_TIMEOUT="10")
    argv = [
        pg_dump, "--format=custom", "--no-password", f"--file={dest}",
        f"--host={db['host']}", f"--port={db['port']}", f"--username={db['user']}", f"--dbname={db['name']}",
    ]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_dump of database {db['name']} failed: {result.stderr.strip()}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def backup(config: dict) -> str:
    s3 = s3_client(config)
    name = dt.datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
    base = f"{config['prefix']}{name}/"
    manifest = {"name": name, "created": dt.datetime.now(UTC).isoformat(), "databases": {}}
    log.info("backup %s of %d database(s) to s3://%s/%s", name, len(config["databases"]), config["bucket"], base)
    with tempfile.TemporaryDirectory(prefix="pg-backup-") as tmp:
        for db in config["databases"]:
            path = Path(tmp) / f"{db['name']}.dump"
            started = time.monotonic()
            log.info("dumping database %s from %s:%s", db["name"], db["host"], db["port"])
            dump_database(db, path, config.get("pg_dump", "pg_dump"))
            size = path.stat().st_size
            log.info("dumped %s in %s (%.1f s); uploading", db["name"], _mb(size), time.monotonic() - started)
            s3.upload_file(str(path), config["bucket"], f"{base}{path.name}")
            manifest["databases"][db["name"]] = {"file": path.name, "size": size, "sha256": sha256(path)}
            path.unlink()
    s3.put_object(Bucket=config["bucket"], Key=f"{base}{MANIFEST}", Body=json.dumps(manifest, indent=2).encode())
    log.info("backup %s complete", name)
    prune(s3, config)
    return name


def prune(s3, config: dict) -> None:
    """Keep the newest `keep` complete sets; drop older sets and incomplete ones older than those."""
    sets = list_sets(s3, config)
    complete = complete_sets(sets)
    keep = int(config["keep"])
    kept = complete[:keep]
    oldest_kept = min(kept) if kept else ""
    doomed = [n for n in sets if n not in kept and (n in complete or n < oldest_kept)]
    for name in sorted(doomed):
        keys = [{"Key": f"{config['prefix']}{name}/{f}"} for f in sets[name]]
        s3.delete_objects(Bucket=config["bucket"], Delete={"Objects": keys, "Quiet": True})
        log.info("retention: deleted backup %s (keeping the newest %d)", name, keep)
    log.info("retention: %d backup(s) kept: %s", len(kept), ", ".join(kept) or "none")


def fetch(config: dict, wanted: str, dest: Path) -> str:
    s3 = s3_client(config)
    sets = list_sets(s3, config)
    complete = complete_sets(sets)
    if not complete:
        raise BackupError(f"no complete backup under s3://{config['bucket']}/{config['prefix']}")
    name = complete[0] if wanted in ("", "latest") else wanted
    if name not in complete:
        raise BackupError(
            f"no complete backup named '{wanted}' under s3://{config['bucket']}/{config['prefix']}; "
            f"available (newest first): {', '.join(complete)}"
        )
    base = f"{config['prefix']}{name}/"
    manifest = json.loads(s3.get_object(Bucket=config["bucket"], Key=f"{base}{MANIFEST}")["Body"].read())
    dest.mkdir(parents=True, exist_ok=True)
    for db_name, entry in manifest["databases"].items():
        path = dest / entry["file"]
        log.info("downloading %s (%s) of backup %s", entry["file"], _mb(entry["size"]), name)
        s3.download_file(config["bucket"], f"{base}{entry['file']}", str(path))
        if sha256(path) != entry["sha256"]:
            raise BackupError(f"{entry['file']} of backup {name} does not match its checksum in the manifest")
        check = subprocess.run(
            [config.get("pg_restore", "pg_restore"), "--list", str(path)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise BackupError(f"{entry['file']} of backup {name} is not a readable dump: {check.stderr.strip()}")
        log.info("checked dump of database %s", db_name)
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup", help="dump every database to the store, then apply retention")
    sub.add_parser("list", help="complete backups, newest first")
    p_fetch = sub.add_parser("fetch", help="download and check one backup")
    p_fetch.add_argument("name", help="backup name, or 'latest'")
    p_fetch.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
        if args.command == "backup":
            print(backup(config))
        elif args.command == "list":
            for name in complete_sets(list_sets(s3_client(config), config)):
                print(name)
        else:
            print(fetch(config, args.name, args.dest))
    except BackupError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
