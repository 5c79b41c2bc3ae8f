"""Logging is configured once, when the CLI starts; library code only calls getLogger."""

from __future__ import annotations

import logging


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # MLflow, botocore and httpx (a line per request) are chatty at INFO; keep their warnings.
    for noisy in ("botocore", "urllib3", "alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
