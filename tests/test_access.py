"""The platform's roles and its MLflow app's rules, offline: what they name exists in the MLflow the
project pins, and the failed-login window counts as it says."""

from __future__ import annotations

import pytest

from mlops.access import PROMOTION_ALIASES, ROLES, AccessError, check_role
from mlops.mlflow_auth import _RULES, CAPABILITIES, FailedLogins, Memory


def test_every_grant_is_one_mlflow_accepts() -> None:
    from mlflow.server.auth.permissions import RESOURCE_GRANTABLE_PERMISSIONS, TYPE

    for role in ROLES.values():
        for kind, pattern, permission in role.mlflow_grants("some-model"):
            assert kind in TYPE and permission in RESOURCE_GRANTABLE_PERMISSIONS, (role.name, kind, permission)
            assert pattern == "*" or kind in {"experiment", "registered_model"}, (role.name, kind, pattern)


def test_roles_keep_the_separation_the_platform_promises() -> None:
    promoters = {name for name, role in ROLES.items() if role.promote}
    assert promoters == {"model-gate"}
    assert not any(role.create or role.predict for role in (ROLES["viewer"], ROLES["serving"], ROLES["monitor"]))
    assert ROLES["serving"].mlflow_grants("pill-quality") >= {("registered_model", "pill-quality", "READ")}
    assert all(permission == "READ" for _, _, permission in ROLES["viewer"].grants)
    assert set(PROMOTION_ALIASES) == {"champion", "previous-champion"}
    assert set(CAPABILITIES) == {"create", "promote", "predict", "monitor"}


def test_an_unknown_role_is_refused_by_name() -> None:
    with pytest.raises(AccessError, match="unknown role 'wizard'"):
        check_role("wizard")


def test_the_rules_match_routes_mlflow_serves() -> None:
    """Each rule of the platform's app matches a route of the installed MLflow (a rename upstream would
    otherwise silently turn a rule off)."""
    from mlflow.server import app

    routes = {(rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods}
    for pattern, methods, kind in _RULES:
        hits = {(path, m) for path, m in routes if m in methods and pattern.search(path)}
        assert {m for _, m in hits} == methods, (kind, pattern.pattern)
        prefixes = {path.split("/")[1] for path, _ in hits}
        assert prefixes >= {"api", "ajax-api"}, (kind, prefixes)


def test_failed_logins_are_limited_per_user_and_per_address() -> None:
    limits = FailedLogins(per_user=3, window_s=60)
    for t in range(3):
        assert limits.retry_after("10.0.0.1", "ann", now=t) == 0
        limits.record("10.0.0.1", "ann", now=t)
    assert limits.retry_after("10.0.0.1", "ann", now=3) == pytest.approx(57)
    assert limits.retry_after("10.0.0.1", "bob", now=3) == 0  # another user from there: not yet
    assert limits.retry_after("10.0.0.2", "ann", now=3) == 0  # the same user from elsewhere
    assert limits.retry_after("10.0.0.1", "ann", now=61) == 0  # the window moved on
    for t in range(15):
        limits.record("10.0.0.3", f"user{t}", now=100 + t)
    assert limits.retry_after("10.0.0.3", "anyone", now=115) > 0  # credential stuffing from one address
    assert FailedLogins(per_user=0).retry_after("10.0.0.1", "ann") == 0  # off


def test_the_failed_login_memory_is_bounded() -> None:
    limits = FailedLogins(per_user=5, max_keys=100)
    for i in range(1000):
        limits.record(f"10.0.{i // 250}.{i % 250}", "ann", now=1.0)
    assert len(limits._seen) <= 100


def test_trusted_proxies_are_addresses_networks_or_any() -> None:
    from mlops.mlflow_auth import trusted_proxies

    assert trusted_proxies("any") is None
    nets = trusted_proxies("127.0.0.1, ::1, 10.0.0.0/8")
    assert [str(n) for n in nets] == ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]
    with pytest.raises(ValueError):
        trusted_proxies("not-an-address")


def test_memory_answers_fresh_then_only_while_the_store_is_down() -> None:
    memory = Memory(fresh_s=10, stale_s=600)
    calls = []

    def store(answer: bool):  # noqa: ANN202
        def compute() -> bool:
            calls.append(answer)
            return answer
        return compute

    def down() -> bool:
        raise ConnectionError("PostgreSQL is down")

    assert memory.decide("ann", "predict", store(True), now=0) is True
    assert memory.decide("ann", "predict", store(False), now=5) is True and calls == [True]  # fresh: no query
    assert memory.decide("ann", "predict", store(False), now=20) is False  # asked again: the store changed its mind
    assert memory.decide("ann", "predict", down, now=300) is False  # store down: the last answer, 280 s old
    with pytest.raises(ConnectionError):
        memory.decide("ann", "predict", down, now=700)  # too old to stand in
    with pytest.raises(ConnectionError):
        memory.decide("bob", "predict", down, now=30)  # never asked: nothing to fall back on
    memory.verified("ann", "s3cret", now=0)
    assert memory.stale_login("ann", "s3cret", now=599) and not memory.stale_login("ann", "s3cret", now=601)
    assert not memory.stale_login("ann", "wrong", now=1) and not memory.stale_login("bob", "s3cret", now=1)
    assert all(b"s3cret" not in key[1] for key in memory._logins)  # a salted digest, not the password


def test_the_store_memo_keeps_reads_while_fresh_and_runs_for_good() -> None:
    from mlops.mlflow_auth import StoreMemo

    memo, calls = StoreMemo(fresh_s=10), []

    def read(value: str) -> str:
        calls.append(value)
        return value

    assert memo.read(("user", "ann"), lambda: read("a"), now=0) == "a"
    assert memo.read(("user", "ann"), lambda: read("b"), now=9) == "a"  # fresh: the store is not asked
    assert memo.read(("user", "ann"), lambda: read("c"), now=10) == "c"  # stale: asked again
    memo.forget_users()
    assert memo.read(("user", "ann"), lambda: read("d"), now=11) == "d"  # a change to users: asked at once
    with pytest.raises(RuntimeError):
        memo.read(("user", "bob"), lambda: (_ for _ in ()).throw(RuntimeError("store down")), now=12)
    assert memo.read(("user", "bob"), lambda: read("e"), now=12) == "e"  # an error is not kept
    assert calls == ["a", "c", "d", "e"]

    class Run:
        def __init__(self, experiment_id: str) -> None:
            self.info = type("Info", (), {"experiment_id": experiment_id})()

    fetched: list[str] = []
    assert memo.experiment_of("r1", lambda: fetched.append("r1") or Run("7")) == "7"
    assert memo.experiment_of("r1", lambda: fetched.append("again") or Run("8")) == "7"  # a run never moves
    assert memo.experiment_of("nope", lambda: None) is None
    assert memo.experiment_of("nope", lambda: Run("9")) == "9"  # "no such run" was not kept
    assert fetched == ["r1"]
    assert StoreMemo(fresh_s=0).read(("user", "x"), lambda: read("f")) == "f"
    assert StoreMemo(fresh_s=0).read(("user", "x"), lambda: read("g")) == "g"  # off: always asked


def test_the_memo_is_in_front_of_mlflows_auth_store_seams() -> None:
    """The seams :func:`mlops.mlflow_auth._memoise_auth_store` wraps exist in the pinned MLflow."""
    import inspect

    from mlflow.server import auth
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    assert "get_run" in inspect.getsource(auth._run_requirement)
    assert "_fetch_or_none" in inspect.getsource(auth._run_requirement)
    assert list(inspect.signature(SqlAlchemyStore.list_grants).parameters)[1:] == ["user_id", "workspace",
                                                                                  "resource_types"]
    assert list(inspect.signature(SqlAlchemyStore.get_user).parameters)[1:] == ["username"]


def test_a_bounded_table_lets_the_oldest_go_first() -> None:
    from mlops.memo import BoundedTable

    table: BoundedTable[str, int] = BoundedTable(max_entries=2)
    table.put("a", 1)
    table.put("b", 2)
    table.put("a", 3)  # put again: the newest now
    table.put("c", 4)
    assert list(table) == ["a", "c"] and table.get("b") is None and table.get("a") == 3 and len(table) == 2
    table.clear()
    assert len(table) == 0


@pytest.mark.parametrize(("who", "method", "path", "body", "allowed"), [
    # Anyone who may edit a version asks for its promotion, in their own name only.
    ("alice", "POST", "set-tag", {"key": "promotion_requested_by", "value": "alice"}, True),
    ("alice", "POST", "set-tag", {"key": "promotion_requested_by", "value": "svc-gate"}, False),
    ("alice", "DELETE", "delete-tag", {"key": "promotion_requested_by"}, False),
    # The gate's records are the gate's.
    ("alice", "POST", "set-tag", {"key": "promotion_verdict", "value": "promoted"}, False),
    ("alice", "DELETE", "delete-tag", {"key": "promotion_run_id"}, False),
    ("alice", "POST", "create", {"name": "m", "source": "s3://b/x", "tags": [{"key": "promotion_verdict",
                                                                              "value": "promoted"}]}, False),
    ("gate", "POST", "set-tag", {"key": "promotion_verdict", "value": "promoted"}, True),
    ("gate", "DELETE", "delete-tag", {"key": "promotion_requested_by"}, True),
    ("gate", "POST", "set-tag", {"key": "promotion_requested_by", "value": "alice"}, True),
    # Every other tag is left to MLflow's own permissions.
    ("alice", "POST", "set-tag", {"key": "notes", "value": "x"}, True),
    ("alice", "POST", "create", {"name": "m", "source": "s3://b/x", "tags": [{"key": "team", "value": "x"}]}, True),
])
def test_only_the_gate_writes_its_records_on_versions(monkeypatch, who, method, path, body, allowed) -> None:  # noqa: ANN001
    from flask import Flask

    from mlops import mlflow_auth

    monkeypatch.setattr(mlflow_auth, "user_may", lambda user, capability: user == "gate" and capability == "promote")
    with Flask(__name__).test_request_context(f"/api/2.0/mlflow/model-versions/{path}", method=method, json=body):
        monkeypatch.setattr(mlflow_auth, "_username", lambda: who)
        answer = mlflow_auth._platform_rules()
    assert (answer is None) == allowed, answer and answer.get_data(as_text=True)
    if answer is not None:
        assert answer.status_code == 403 and b"PERMISSION_DENIED" in answer.get_data()


@pytest.mark.parametrize(("body", "rewritten"), [
    (None, True),  # the auth app's own refusal (MLflow's make_forbidden_response): JSON error, naming the user
    ("Invalid Host header - possible DNS rebinding attack detected", False),  # MLflow's security middleware
    ("Cross-origin request blocked", False),
])
def test_only_the_auth_apps_refusal_is_reworded(body, rewritten) -> None:  # noqa: ANN001
    from flask import Flask, Response, g
    from mlflow.server import auth

    from mlops import mlflow_auth

    with Flask(__name__).test_request_context("/api/2.0/mlflow/experiments/search", method="GET"):
        g.mlflow_authenticated_user = "rita"
        refusal = auth.make_forbidden_response() if body is None else Response(body, status=403)
        body = refusal.get_data(as_text=True)
        answer = mlflow_auth._after(refusal)
    assert answer.status_code == 403
    text = answer.get_data(as_text=True)
    assert (("PERMISSION_DENIED" in text and "'rita'" in text) if rewritten else text == body), text
