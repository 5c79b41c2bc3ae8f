"""Request decoding and the batcher, offline: no model registry, no server, no database."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from PIL import Image

from serving.app import BadInput, Batcher, decode_images
from training.data import preprocess

SIZE = 32


def _b64(image: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def _picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 50, 3), dtype=np.uint8))


@pytest.fixture
def limits(patched_environ):  # noqa: ANN001, ANN201
    with patched_environ({"MLOPS_SERVE_MAX_BATCH": "4", "MLOPS_SERVE_MAX_IMAGE_BYTES": "200000"}):
        yield


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def test_one_image_and_a_batch_decode_like_preprocess(limits) -> None:  # noqa: ANN001
    pictures = [_picture(i) for i in range(3)]
    one = decode_images(_body({"image": _b64(pictures[0])}), SIZE)
    assert one.shape == (1, 3, SIZE, SIZE) and torch.equal(one, preprocess(pictures[0], SIZE))
    batch = decode_images(_body({"images": [_b64(p, "JPEG" if i == 1 else "PNG") for i, p in enumerate(pictures)]}),
                          SIZE)
    assert batch.shape == (3, 3, SIZE, SIZE)
    assert torch.equal(batch[2], preprocess(pictures[2], SIZE)[0])


def _truncated_png() -> str:
    buf = io.BytesIO()
    _picture(9).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()[:200]).decode()


def _huge_png() -> str:
    """A small file whose header says 5000 x 5000 pixels (over MAX_PIXELS): refused before decoding."""
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


DEEP = 100_000


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"{not json", 400, "not valid JSON"),
    (_body([1, 2]), 422, "JSON object"),
    (_body({}), 422, "neither 'image' nor 'images'"),
    (_body({"images": []}), 422, "'images' is empty"),
    (_body({"image": "a", "images": ["a"]}), 422, "not both"),
    (_body({"images": ["a"], "extra": 1}), 422, "extra"),
    (_body({"images": ["x"] * 5}), 413, "batch of 5 images is over the limit of 4"),
    (_body({"image": "not base64!"}), 422, "image is not valid base64"),
    (_body({"images": [base64.b64encode(b"\0" * 200_001).decode()]}), 413, "images[0] is 200001 bytes"),
    (_body({"image": base64.b64encode(b"plain text, not a picture").decode()}), 422, "not a readable image"),
    (_body({"image": _truncated_png()}), 422, "not a readable image"),
    (_body({"images": [_huge_png()]}), 413, "5000x5000 pixels"),
    (b"[" * DEEP + b"]" * DEEP, 400, "nested too deeply"),
    (b'{"a":' * DEEP + b"1" + b"}" * DEEP, 400, "nested too deeply"),
    (b'{"images": ' + b"[" * DEEP + b"]" * DEEP + b"}", 400, "nested too deeply"),
    (b'{"images": ' + b"[" * 50 + b"]" * 50 + b"}", 422, "images.0"),
], ids=["not-json", "not-object", "neither", "empty", "both", "extra-field", "too-many", "bad-base64", "too-big",
        "not-an-image", "truncated", "pixel-bomb", "deep-list",
        "deep-object", "deep-inside-images", "nested-images"])
def test_bad_requests_name_the_problem(limits, body: bytes, status: int, words: str) -> None:  # noqa: ANN001
    with pytest.raises(BadInput) as caught:
        decode_images(body, SIZE)
    assert caught.value.status == status and words in caught.value.detail, caught.value.detail


def test_headers_declaring_enormous_images_are_refused_before_decoding(limits, lying_png) -> None:  # noqa: ANN001
    for body, words in ((_body({"image": lying_png(60_000, 60_000)}), "image declares more than"),
                        (_body({"images": [_b64(_picture(1)), lying_png(2**31 - 1, 2**31 - 1)]}),
                         "images[1] declares more than")):
        with pytest.raises(BadInput) as caught:
            decode_images(body, SIZE)
        assert caught.value.status == 413 and words in caught.value.detail, caught.value.detail


# --- the batcher ---------------------------------------------------------------------------------


@dataclass
class FakeServed:
    image_size: int = SIZE
    version: str = "1"
    batches: list[int] = field(default_factory=list)
    fail: bool = False

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.batches.append(x.shape[0])
        if self.fail:
            raise RuntimeError("kernel exploded")
        # logits = the images' means, so each caller can check it got its own rows back
        means = x.mean(dim=(1, 2, 3))
        return means[:, None].repeat(1, 4), torch.stack([means, -means], 1)


@dataclass
class FakeHolder:
    current: FakeServed | None


def _images(n: int, value: float, size: int = SIZE) -> torch.Tensor:
    return torch.full((n, 3, size, size), value)


async def _run(holder: FakeHolder, jobs: list[torch.Tensor], max_batch: int) -> list[object]:
    batcher = Batcher(holder, max_batch)  # type: ignore[arg-type]
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(x) for x in jobs), return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    served = FakeServed()
    jobs = [_images(n, float(i)) for i, n in enumerate([3, 2, 1, 4, 2])]
    results = asyncio.run(_run(FakeHolder(served), jobs, max_batch=5))
    assert sum(served.batches) == 12 and max(served.batches) <= 5 and len(served.batches) < len(jobs)
    for i, (job, result) in enumerate(zip(jobs, results, strict=True)):
        got_served, logits, emb = result  # type: ignore[misc]
        assert got_served is served and logits.shape == (job.shape[0], 2) and emb.shape == (job.shape[0], 4)
        assert torch.all(logits[:, 0] == float(i))


def test_a_request_decoded_for_another_input_size_is_sent_back_to_redo() -> None:
    served = FakeServed()
    served_back, logits, emb = asyncio.run(_run(FakeHolder(served), [_images(2, 1.0, size=48)], 8))[0]  # type: ignore[misc]
    assert served_back is served and logits is None and emb is None and served.batches == []


def test_no_model_and_a_failing_model_fail_the_request_not_the_batcher() -> None:
    none = asyncio.run(_run(FakeHolder(None), [_images(1, 0.0)], 8))
    assert isinstance(none[0], RuntimeError) and "no model loaded" in str(none[0])
    failing = asyncio.run(_run(FakeHolder(FakeServed(fail=True)), [_images(1, 0.0), _images(2, 1.0)], 8))
    assert all(isinstance(r, RuntimeError) and "kernel exploded" in str(r) for r in failing)


def test_each_request_reports_its_wait_for_the_batch_that_runs_it() -> None:
    """Queue wait: one value per request whose batch ran; a request queued behind a running batch waited for it."""
    served, waits = FakeServed(), []

    async def run() -> None:
        batcher = Batcher(FakeHolder(served), 4, waits.append)  # type: ignore[arg-type]
        original = served.predict

        def slow(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            import time

            time.sleep(0.05)
            return original(x)

        served.predict = slow  # type: ignore[method-assign]
        batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(_images(3, float(i))) for i in range(3)))  # 3 batches of 3
        finally:
            await batcher.stop()

    asyncio.run(run())
    assert len(waits) == 3 and served.batches == [3, 3, 3]
    assert sorted(waits)[0] < 0.02 and sorted(waits)[-1] >= 0.09  # the third waited for two batches of 50 ms

    async def no_model() -> None:
        batcher = Batcher(FakeHolder(None), 4, waits.append)  # type: ignore[arg-type]
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="no model"):
                await batcher.submit(_images(1, 0.0))
        finally:
            await batcher.stop()

    asyncio.run(no_model())
    assert len(waits) == 3  # no batch ran: no wait reported


def test_an_unreachable_registry_shows_on_health_in_seconds_not_minutes(monkeypatch, free_port) -> None:  # noqa: ANN001
    """The poller's registry call gives up after ``serve_registry_retries`` short retries (the MLflow client's own
    default, 7 retries with doubling backoff, kept a serving process 'starting' for minutes after MLflow restarted)."""
    import time

    from serving.app import ModelHolder

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        # setenv first: monkeypatch then restores the variable's state from before the test (the poller sets it)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    port = free_port()  # nothing listens on it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    holder = ModelHolder("pill-quality", "champion")
    start = time.monotonic()
    holder.start()
    try:
        while holder.load_error is None and time.monotonic() - start < 60:
            time.sleep(0.2)
    finally:
        holder.stop()
    assert holder.load_error is not None and "cannot reach the registry" in holder.load_error["error"]
    assert time.monotonic() - start < 30, holder.load_error
