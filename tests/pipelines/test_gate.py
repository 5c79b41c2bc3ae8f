"""Asking the gate, offline: a request waits for the gate's verdict (or gives up and leaves it), and the
gate's job judges pending requests oldest first, keeping the ones it could not judge.

The judging itself (:func:`pipelines.promote.promote`) is replaced here; tests/pipelines/test_promote.py runs
the real gate against the platform, with a person asking and the gate's job deciding as the gate.
"""

from __future__ import annotations

import threading
import time

import pytest
from mlflow import MlflowClient

from mlops.tags import VERSION_TAG_REQUESTED_BY
from pipelines import gate
from pipelines.promote import PromotionDecision

NAME = "gate-unit"


@pytest.fixture
def client(tmp_path, monkeypatch) -> MlflowClient:  # noqa: ANN001
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLOPS_PROMOTE_POLL_S", "0.05")
    from mlops.settings import get_settings

    get_settings.cache_clear()
    c = MlflowClient()
    c.create_registered_model(NAME)
    for _ in range(3):
        c.create_model_version(NAME, str(tmp_path), run_id=None)
    yield c
    get_settings.cache_clear()


def test_a_local_store_has_no_logins_so_this_process_judges_itself(client: MlflowClient) -> None:
    assert gate.current_login() == gate.Login(None, True)


def test_a_request_waits_for_the_gates_verdict(client: MlflowClient) -> None:
    def the_gate() -> None:
        while VERSION_TAG_REQUESTED_BY not in client.get_model_version(NAME, "2").tags:
            time.sleep(0.02)
        for key, value in {"promotion_run_id": "run-1", "promotion_verdict": "promoted",
                           "promotion_champion": "none", "promotion_reason": "promoted: no champion yet"}.items():
            client.set_model_version_tag(NAME, "2", key, value)
        client.delete_model_version_tag(NAME, "2", VERSION_TAG_REQUESTED_BY)

    said: list[str] = []
    worker = threading.Thread(target=the_gate)
    worker.start()
    decision = gate.request(NAME, "2", "alice", wait_s=30, say=said.append)
    worker.join()
    assert decision is not None and decision.promoted and decision.candidate_version == "2"
    assert decision.evaluation_run_id == "run-1" and decision.champion_version is None
    assert decision.reason == "promoted: no champion yet"
    assert "as 'alice'" in said[0]


def test_an_undecided_request_stays_for_the_gate(client: MlflowClient) -> None:
    assert gate.request(NAME, "latest", "alice", wait_s=0.2, say=lambda _: None) is None
    assert client.get_model_version(NAME, "3").tags[VERSION_TAG_REQUESTED_BY] == "alice"
    assert gate.pending(client, NAME) == [("3", "alice")]


def test_asking_for_the_champion_changes_nothing(client: MlflowClient) -> None:
    client.set_registered_model_alias(NAME, "champion", "1")
    decision = gate.request(NAME, "1", "alice", wait_s=0, say=lambda _: None)
    assert decision is not None and decision.promoted and not decision.changed
    assert VERSION_TAG_REQUESTED_BY not in client.get_model_version(NAME, "1").tags


def test_the_gate_judges_oldest_first_and_keeps_what_it_could_not_judge(client: MlflowClient, monkeypatch) -> None:  # noqa: ANN001
    import pipelines.promote

    client.set_model_version_tag(NAME, "3", VERSION_TAG_REQUESTED_BY, "svc-retrain")
    client.set_model_version_tag(NAME, "1", VERSION_TAG_REQUESTED_BY, "alice")
    client.set_model_version_tag(NAME, "2", VERSION_TAG_REQUESTED_BY, "bob")
    judged = []

    def judge(name: str, candidate: str, requested_by: str | None = None) -> PromotionDecision:
        judged.append((candidate, requested_by))
        if candidate == "2":
            raise RuntimeError("the database went away")
        return PromotionDecision(promoted=candidate == "3", reason=f"v{candidate} judged", candidate_version=candidate,
                                 champion_version=None, evaluation_run_id=f"run-{candidate}", model_name=name)

    monkeypatch.setattr(pipelines.promote, "promote", judge)
    handled = gate.decide_requests(NAME)
    assert judged == [("1", "alice"), ("2", "bob"), ("3", "svc-retrain")]
    assert [(h.version, h.decision is not None) for h in handled] == [("1", True), ("2", False), ("3", True)]
    assert "database went away" in handled[1].error
    assert gate.pending(client, NAME) == [("2", "bob")]
    assert gate.decide_requests("no-such-model") == []


def test_the_rest_check_cannot_tell_without_an_http_tracking_server(client: MlflowClient) -> None:
    from mlops.rest import alias_version, pending_requests

    client.set_model_version_tag(NAME, "1", VERSION_TAG_REQUESTED_BY, "someone")
    assert pending_requests(NAME) is None  # a local store: only MLflow's client can answer
    assert alias_version(NAME, "champion") is None
