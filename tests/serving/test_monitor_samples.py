"""Serving keeps a deterministic sample of its input images (``monitoring.samples``) for retraining.

Unit tests (offline): which request ids are sampled, and that the stored PNG is exactly the decoded
picture. Integration: the real writer thread against a private PostgreSQL cluster (no platform),
then :func:`pipelines.feedback.labelled_examples` turns feedback joined with those samples back
into model-input tensors and labels, and says clearly when labels have no sampled image.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from serving.monitor import MonitoringWriter, Record, png_bytes, sampled, to_uint8
from training.data import preprocess, synthetic_arrays

# --- unit --------------------------------------------------------------------------------


def test_sampling_is_deterministic_and_follows_the_rate() -> None:
    ids = [f"req-{i}" for i in range(4000)]
    share = sum(sampled(r, 0.1) for r in ids) / len(ids)
    assert 0.08 < share < 0.12, share
    assert [sampled(r, 0.1) for r in ids[:200]] == [sampled(r, 0.1) for r in ids[:200]]
    # Nested: an id kept at 10% is kept at any higher rate.
    assert all(sampled(r, 0.5) for r in ids if sampled(r, 0.1))
    assert all(sampled(r, 1.0) for r in ids) and not any(sampled(r, 0.0) for r in ids)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_rate_outside_0_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="outside 0..1"):
        sampled("r", rate)
    with pytest.raises(ValueError, match="MLOPS_SERVE_SAMPLE_RATE"):
        MonitoringWriter(sample_rate=rate)


def test_the_png_is_the_decoded_picture() -> None:
    pictures, _, _ = synthetic_arrays(6, 32, seed=5)
    x = torch.cat([preprocess(p, 32) for p in pictures])
    back = to_uint8(x)
    assert back.dtype == np.uint8 and np.array_equal(back, pictures)
    with Image.open(io.BytesIO(png_bytes(back[0]))) as img:
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), pictures[0])
        assert torch.equal(preprocess(img, 32), x[:1])


# --- integration: a private PostgreSQL ------------------------------------------------------


@pytest.fixture(scope="module")
def monitoring_db(private_postgres, patched_environ) -> Iterator[str]:  # noqa: ANN001
    """A private PostgreSQL cluster as the monitoring store (MLOPS_MONITORING_DSN)."""
    with private_postgres("mlops-samples-", 25632) as pg, patched_environ({"MLOPS_MONITORING_DSN": pg.dsn}):
        yield pg.dsn


class _Embedder(torch.nn.Module):
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@pytest.mark.integration
def test_the_writer_stores_sampled_images_and_feedback_turns_them_into_examples(monitoring_db: str) -> None:
    from mlops import monitoring
    from pipelines.feedback import Label, NoLabelledSamples, labelled_examples, record_feedback

    model = f"samples-{uuid.uuid4().hex[:6]}"
    rate = 0.5
    requests = [f"{model}-{i}" for i in range(24)]
    kept = [r for r in requests if sampled(r, rate)]
    assert 0 < len(kept) < len(requests)  # the ids exercise both branches
    pictures, labels, _ = synthetic_arrays(len(requests) * 2, 32, seed=11)
    start = dt.datetime.now(dt.UTC)
    writer = MonitoringWriter(batch_rows=16, flush_s=0.2, sample_rate=rate)
    writer.start()
    for k, r in enumerate(requests):
        x = torch.cat([preprocess(p, 32) for p in pictures[2 * k:2 * k + 2]])
        writer.put(Record(r, dt.datetime.now(dt.UTC), model, "1", "fp32", x, [0, 1], [0.9, 0.8], None, _Embedder()))
    writer.close()
    end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert writer.last_error is None and writer.dropped == 0
    assert writer.written == 2 * len(requests) and writer.samples_written == 2 * len(kept)

    conn = monitoring.connect("test-samples")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT request_id, item_index, image FROM monitoring.samples WHERE request_id LIKE %s",
                        (f"{model}-%",))
            rows = cur.fetchall()
        conn.rollback()
        assert sorted((r, i) for r, i, _ in rows) == sorted((r, i) for r in kept for i in (0, 1))
        for r, i, png in rows:
            with Image.open(io.BytesIO(bytes(png))) as img:
                assert np.array_equal(np.asarray(img), pictures[2 * requests.index(r) + i])

        # No labels yet: nothing, and no error.
        assert len(labelled_examples(conn, model, start, end, 32)) == 0
        # Labels only on requests serving did not sample: a clear error with the count.
        unsampled = [r for r in requests if r not in kept][:3]
        record_feedback(conn, [Label(r, 0, 1) for r in unsampled])
        with pytest.raises(NoLabelledSamples, match="3 labelled predictions of .* none has a sampled image"):
            labelled_examples(conn, model, start, end, 32)
        # Labels on every item: the sampled ones come back as tensors with their labels; the rest are counted.
        truth = {(r, i): int(labels[2 * k + i]) for k, r in enumerate(requests) for i in (0, 1)}
        record_feedback(conn, [Label(r, i, y) for (r, i), y in truth.items()])
        found = labelled_examples(conn, model, start, end, 32)
        assert len(found) == 2 * len(kept) and found.missing == 2 * (len(requests) - len(kept))
        assert found.images.shape == (len(found), 3, 32, 32)
        for j, key in enumerate(found.keys):
            r, i = key.rsplit(":", 1)
            k = requests.index(r)
            assert int(found.labels[j]) == truth[(r, int(i))]
            assert torch.equal(found.images[j:j + 1], preprocess(pictures[2 * k + int(i)], 32))
        # Another input size: resized by the same preprocessing as training.
        assert labelled_examples(conn, model, start, end, 48).images.shape[2:] == (48, 48)
        # Outside the time range: nothing.
        assert len(labelled_examples(conn, model, end, end + dt.timedelta(hours=1), 32)) == 0
    finally:
        conn.close()


def _pg_ctl(pg, action: str) -> None:  # noqa: ANN001 - conftest's PrivatePostgres
    import os
    import subprocess

    as_postgres = ["su", "postgres", "-s", "/bin/sh", "-c"] if os.geteuid() == 0 else ["sh", "-c"]
    opts = f"-o '-p {pg.port} -k {pg.root} -c listen_addresses=127.0.0.1'" if action == "start" else "-m immediate"
    subprocess.run([*as_postgres, f"/usr/lib/postgresql/15/bin/pg_ctl -w -D {pg.root}/pg -l {pg.root}/pg.log "
                    f"{opts} {action} >/dev/null"], check=True)


def _until(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.integration
def test_rows_are_buffered_while_postgresql_is_down_then_written_or_counted_as_dropped(
        private_postgres, patched_environ, caplog) -> None:  # noqa: ANN001
    from mlops import monitoring

    model = f"outage-{uuid.uuid4().hex[:6]}"
    x = torch.zeros(2, 3, 8, 8)
    sent = 0

    def put(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            writer.put(Record(f"{model}-{sent}", dt.datetime.now(dt.UTC), model, "1", "fp32", x, [0, 1], [0.9, 0.8],
                              torch.zeros(2, 4), _Embedder()))
            sent += 1

    with private_postgres("mlops-outage-", 25732) as pg, patched_environ({"MLOPS_MONITORING_DSN": pg.dsn}):
        _pg_ctl(pg, "stop")  # serving starts while its store is down: no error, rows wait
        writer = MonitoringWriter(batch_rows=8, flush_s=0.1, max_buffered_rows=40, max_backoff_s=0.5)
        writer.start()
        put(5)
        _until(lambda: writer.buffered_rows == 10)
        assert writer.written == 0 and writer.dropped == 0 and writer.last_error
        _pg_ctl(pg, "start")
        _until(lambda: writer.written == 10 and writer.buffered_rows == 0)
        assert writer.last_error is None

        _pg_ctl(pg, "stop")  # down again: beyond the bound the oldest rows are dropped, counted and logged
        put(30)
        _until(lambda: writer.pending == 0 and writer.dropped + writer.buffered_rows == 60)
        assert writer.buffered_rows <= 40 and writer.dropped >= 20
        assert "Monitoring rows dropped" in caplog.text
        _pg_ctl(pg, "start")
        writer.close()
        assert writer.written + writer.dropped == 2 * sent and writer.buffered_rows == 0
        conn = monitoring.connect("test-outage")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM monitoring.predictions WHERE model_name = %s", (model,))
                assert cur.fetchone()[0] == writer.written
        finally:
            conn.close()
