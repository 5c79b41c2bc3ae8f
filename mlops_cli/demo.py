"""`mlops demo`: the whole loop on the running platform, narrated step by step.

train -> promote -> serve -> in-distribution traffic (no drift; nothing happens) -> shifted traffic
(darker lighting of the synthetic pills) -> drift over enough windows -> retrain -> gate -> the new
champion is served -> shifted traffic again, checked against the new champion. The demo knows the
true labels of the synthetic pills it sends: it labels the shifted predictions (as ``mlops feedback``
would), so the retraining adds the shifted images serving sampled (``MLOPS_SERVE_SAMPLE_RATE`` of
requests; shifted traffic goes one image per request so the sample spreads over it). Windows are
short (``--window``, default 20s) so the demo takes minutes; the
loop ticks are the same :func:`pipelines.retrain.tick` the scheduler runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from training.data import Shift, synthetic_arrays

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass
class DemoConfig:
    model_name: str
    window: str = "30s"
    max_images_per_window: int = 2000
    """Traffic goes on for most of each window (until ``send_margin`` of it is left), up to this many images."""
    clients: int = 4
    batch: int = 16
    shift: Shift = Shift(brightness=0.6)  # noqa: RUF009 - frozen dataclass, immutable default
    max_windows: int = 6
    label_shifted: bool = True
    serve_timeout_s: float = 900.0
    train: bool = True
    send_margin: float = 0.2


@dataclass
class DemoResult:
    """What the loop did: the first champion, the retraining tick, what serving answers with at the end."""

    first_champion: str
    in_distribution: Any = None  # pipelines.retrain.TickResult of the in-distribution window
    retrain: Any = None  # the tick that retrained
    served_version: str | None = None
    after: Any = None  # the tick on shifted traffic against the new champion


@dataclass(frozen=True)
class Traffic:
    """Where the demo's requests and labels go: the platform's serving and monitoring store (:meth:`platform`)."""

    make_client: Callable[[], tuple[Any, Any]]
    predict: Callable[..., dict[str, Any]]
    record_labels: Callable[[list[tuple[str, int, int]]], int]
    sleep: Callable[[float], None]

    @classmethod
    def platform(cls) -> Traffic:
        from serving import client

        return cls(client.make_client, client.predict, record_labels, time.sleep)


def demo_images(seed: int, chunk: int, n: int, size: int, shift: Shift | None) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``chunk`` of a window's traffic: ``n`` fresh synthetic pills (uint8 HxWx3) and their true classes."""
    images, truth, _ = synthetic_arrays(n, size, seed * 100_003 + chunk, shift=shift)
    return images, truth


def _served_model(config: DemoConfig) -> dict[str, str] | None:
    """The ``model`` block of a prediction's answer (version, variant, ...), or None while serving is not ready."""
    from serving.client import ServingError, predict

    try:
        return dict(predict([np.zeros((32, 32, 3), np.uint8)])["model"])
    except (ServingError, OSError) as exc:
        log.debug("serving not ready: %s", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - httpx transport errors while serving restarts
        log.debug("serving not ready: %s", exc)
        return None


def wait_until_served(config: DemoConfig, version: str, say: Say) -> None:
    deadline = time.monotonic() + config.serve_timeout_s
    while time.monotonic() < deadline:
        served = _served_model(config)
        if served is not None and str(served.get("version")) == version:
            say(f"  serving answers with {config.model_name} version {version}, variant {served.get('variant')} "
                "(the fastest that agrees with FP32 on this host: see /serve/model)")
            return
        time.sleep(5)
    raise TimeoutError(f"serving did not switch to version {version} within {config.serve_timeout_s:.0f} s")


def send_window(config: DemoConfig, length: timedelta, shift: Shift | None, seed: int, say: Say,
                label: bool = False, traffic: Traffic | None = None) -> datetime:
    """Send traffic through serving during the current window; return the time the window ended.

    ``config.clients`` concurrent clients send freshly generated images (never repeated: repeated images
    would shrink the drift tests' real sample size) until ``send_margin`` of the window is left or
    ``max_images_per_window`` are sent. ``label``: one image per request, so serving's request sample
    (MLOPS_SERVE_SAMPLE_RATE) spreads over the images, and every prediction gets its true label in
    ``monitoring.feedback`` (as ``mlops feedback`` would record it). ``traffic``: default the platform.
    """
    import itertools
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from mlops.settings import get_settings
    from pipelines.drift.windows import latest_complete_window

    traffic = traffic or Traffic.platform()
    now = datetime.now(UTC)
    end = latest_complete_window(length, now).end + length
    if (end - now) < length / 2:  # too little of this window left: use the next one whole
        end += length
        traffic.sleep(max(0.0, (end - length - datetime.now(UTC)).total_seconds()))
    stop_at = end - length * config.send_margin
    size = get_settings().train_image_size
    chunks = itertools.count()
    lock = threading.Lock()
    labels: list[tuple[str, int, int]] = []
    sent = [0]

    def take(n: int) -> int:
        with lock:
            n = min(n, config.max_images_per_window - sent[0])
            sent[0] += max(n, 0)
            return n

    def client_loop() -> None:
        client, ep = traffic.make_client()
        try:
            while datetime.now(UTC) < stop_at:
                n = take(config.batch)
                if n <= 0:
                    return
                images, truth = demo_images(seed, next(chunks), n, size, shift)
                step = 1 if label else n
                for start in range(0, n, step):
                    answer = traffic.predict(list(images[start:start + step]), client=client, ep=ep)
                    if label:
                        labels.extend((answer["request_id"], i, int(truth[start + i]))
                                      for i in range(len(answer["predictions"])))
        finally:
            client.close()

    with ThreadPoolExecutor(config.clients, thread_name_prefix="demo-traffic") as pool:
        for future in [pool.submit(client_loop) for _ in range(config.clients)]:
            future.result()
    say(f"  sent {sent[0]} {'shifted' if shift else 'in-distribution'} images; window ends {end:%H:%M:%S}")
    if label:
        say(f"  labelled {traffic.record_labels(labels)} of them with their true class (mlops feedback)")
    traffic.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 3.0)  # + the monitoring writer's flush
    return end


def record_labels(labels: list[tuple[str, int, int]]) -> int:
    """Record (request_id, item_index, label) in monitoring.feedback, as ``mlops feedback`` does."""
    from mlops import monitoring
    from pipelines.feedback import Label, record_feedback

    conn = monitoring.connect("mlops-demo")
    try:
        monitoring.ensure_schema(conn)
        return record_feedback(conn, [Label(r, i, y) for r, i, y in labels])
    finally:
        conn.close()


def run_demo(config: DemoConfig, say: Say) -> DemoResult:
    """The loop, narrated. Raises RuntimeError when it does not end with a new champion being served."""
    import mlflow
    from mlflow import MlflowClient

    from mlops.settings import get_settings
    from mlops.tracking import load_client_env
    from pipelines.drift.windows import parse_duration
    from pipelines.gate import ask
    from pipelines.retrain import tick
    from training.train import TrainConfig, train

    load_client_env()
    s = get_settings()
    ui = mlflow.get_tracking_uri()
    length = parse_duration(config.window)
    if config.train:
        say("1. Training the first model (its reference profile is logged with it) ...")
        result = train(TrainConfig.from_settings(model_name=config.model_name, int8_required=False),
                       show_progress=True)
        say(f"   run {result.run_id}, registered version {result.registered_version}")
        say(f"2. Promotion gate for version {result.registered_version} ...")
        decision = ask(config.model_name, str(result.registered_version), say=lambda line: say(f"   {line}"))
        if decision is None:
            raise RuntimeError("the promotion gate gave no verdict in time (is its job scheduled? `mlops status`)")
        say(f"   {decision.reason}")
    client = MlflowClient()
    champion = str(client.get_model_version_by_alias(config.model_name, "champion").version)
    say(f"3. Waiting for serving to load champion version {champion} ...")
    wait_until_served(config, champion, say)
    outcome = DemoResult(champion)

    say(f"4. In-distribution traffic for one {config.window} window ({config.clients} clients) ...")
    end = send_window(config, length, None, seed=9001, say=say)
    r = outcome.in_distribution = tick(config.model_name, config.window, now=end + timedelta(seconds=1))
    say(f"   tick: [{r.action}] {r.reason}")

    say(f"5. Shifted traffic (lighting x{config.shift.brightness}) until the loop retrains "
        f"({s.retrain_min_drifted} of {s.retrain_windows} windows must drift) ...")
    if config.label_shifted:
        say(f"   the shifted predictions are labelled; serving keeps the images of {s.serve_sample_rate:.0%} of "
            f"requests (MLOPS_SERVE_SAMPLE_RATE of the serving process)")
    for i in range(config.max_windows):
        end = send_window(config, length, config.shift, seed=9100 + i, say=say, label=config.label_shifted)
        r = tick(config.model_name, config.window, now=end + timedelta(seconds=1))
        say(f"   tick: [{r.action}] {r.reason}")
        if r.training_run_id:
            break
    else:
        raise RuntimeError(f"no retraining after {config.max_windows} shifted windows")
    outcome.retrain = r
    say(f"6. Drift run {r.drift_run_id} -> training run {r.training_run_id} -> version {r.candidate_version} "
        f"-> {'promoted' if r.promoted else 'refused by the gate'}")
    params = client.get_run(r.training_run_id).data.params
    say(f"   the retraining added {params.get('labelled_examples', '0')} labelled served images to the reference "
        f"data ({params.get('labelled_holdout', '0')} held out for the gate, "
        f"{params.get('labelled_missing_images', '0')} labels had no sampled image)")
    say(f"   its reference profile: {params.get('reference_note') or params.get('reference_source', 'training')}")
    if not r.promoted:
        raise RuntimeError(f"the gate refused the retrained version {r.candidate_version}: {r.reason}")
    say(f"7. Waiting for serving to switch to version {r.candidate_version} ...")
    wait_until_served(config, r.candidate_version, say)
    outcome.served_version = r.candidate_version
    say("8. Shifted traffic again, now checked against the new champion's reference profile ...")
    end = send_window(config, length, config.shift, seed=9200, say=say)
    outcome.after = tick(config.model_name, config.window, now=end + timedelta(seconds=1))
    say(f"   tick: [{outcome.after.action}] {outcome.after.reason}")
    say(f"See it in the UI at {ui.rstrip('/')}: experiments '{s.drift_experiment}' (drift runs with plots), "
        f"'{s.experiment_name}' (training runs), 'model-promotion' (gate decisions), Models > {config.model_name}.")
    for line in login_lines(s.state_dir):
        say(line)
    return outcome


def login_lines(state_dir: Path) -> list[str]:
    """How to log in as the person, the admin and a service identity `make up` made (no password shown)."""
    from mlops.tracking import read_env_file

    lines = []
    for label, env_file in (("a person", state_dir / "local.env"), ("the admin", state_dir / "admin.env")):
        if env_file.is_file():
            user = read_env_file(env_file).get("MLFLOW_TRACKING_USERNAME", "?")
            lines.append(f"Log in as {label}: user '{user}', password in {state_dir}/credentials/mlflow-{user} "
                         f"(notebooks: `set -a; . {env_file}; set +a`).")
    services = sorted(p.name.removeprefix("mlflow-") for p in (state_dir / "credentials").glob("mlflow-svc-*"))
    if services:
        lines.append(f"Service identities (each job logs in as itself): {', '.join(services)}; see `mlops users list`.")
    return lines
