"""Call the served champion over HTTPS through nginx (used by `mlops predict`, bench and the demo traffic).

The endpoint is ``MLOPS_SERVE_URL`` or, by default, the platform's nginx (the origin of
``MLFLOW_TRACKING_URI`` from ``.mlops/local.env``) plus ``/serve``; credentials and the CA are the
MLflow client's (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``SERVER_CERT_PATH``).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image

from mlops.settings import get_settings
from mlops.tracking import load_client_env

ImageLike = Path | str | bytes | np.ndarray | Image.Image


class ServingError(RuntimeError):
    """The endpoint answered with an error (message has the status and the server's reason)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Endpoint:
    url: str
    auth: tuple[str, str] | None
    verify: str | bool


def endpoint(url: str | None = None) -> Endpoint:
    """Where and how to call serving: ``url`` (e.g. ``mlops predict --url``), else ``MLOPS_SERVE_URL``, else the
    platform's nginx; credentials and CA from the MLflow client's variables."""
    load_client_env()
    url = url or get_settings().serve_url
    if not url:
        tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
        parts = urlsplit(tracking)
        if parts.scheme not in ("http", "https"):
            raise ServingError(0, "no serving URL: set MLOPS_SERVE_URL or run `make up` (writes .mlops/local.env)")
        url = f"{parts.scheme}://{parts.netloc}/serve"
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    verify: str | bool = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    return Endpoint(url.rstrip("/"), (user, password) if user and password else None, verify)


def encode(image: ImageLike) -> str:
    """A file path, encoded file bytes, ``uint8 HxWx3`` array or PIL image → base64 of an image file."""
    if isinstance(image, (str, Path)):
        data = Path(image).read_bytes()
    elif isinstance(image, bytes):
        data = image
    else:
        pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        data = buf.getvalue()
    return base64.b64encode(data).decode("ascii")


def make_client(ep: Endpoint | None = None, timeout: float = 60.0) -> tuple[httpx.Client, Endpoint]:
    ep = ep or endpoint()
    return httpx.Client(auth=ep.auth, verify=ep.verify, timeout=timeout), ep


def predict(images: Sequence[ImageLike] | ImageLike, client: httpx.Client | None = None,
            ep: Endpoint | None = None) -> dict[str, Any]:
    """POST the images to ``/predict``; returns the JSON (request_id, model, predictions)."""
    batch = list(images) if isinstance(images, (list, tuple)) else [images]
    own = client is None
    if client is None:
        client, ep = make_client(ep)
    elif ep is None:
        ep = endpoint()
    try:
        resp = client.post(f"{ep.url}/predict", json={"images": [encode(i) for i in batch]})
    finally:
        if own:
            client.close()
    if resp.status_code != 200:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text[:300]
        raise ServingError(resp.status_code, str(detail))
    return resp.json()
