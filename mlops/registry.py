"""Model registry lookups every layer needs: aliases, versions, and the registry's errors.

Plain MLflow (no torch): ``champion`` / ``previous-champion`` / ``challenger`` aliases, a version by
alias or number, with the transient-failure retry of :mod:`mlops.tracking`.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

# The promotion aliases (only the gate moves them), re-exported for the layers above.
from mlops.access import CHAMPION as CHAMPION
from mlops.access import PREVIOUS_CHAMPION as PREVIOUS_CHAMPION
from mlops.rest import NOT_FOUND_CODES
from mlops.tracking import retry

CHALLENGER = "challenger"


class RegistryError(RuntimeError):
    """A model, version or alias the command needs does not exist (message says which)."""


class PromotionError(RuntimeError):
    """Promotion or rollback could not run (missing model, alias, lock or login); the message says why."""


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in NOT_FOUND_CODES


@retry
def _get_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    return client.get_model_version(name, version)


def _alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion:
    return client.get_model_version_by_alias(name, alias)


_get_by_alias = retry(_alias_version)


@retry
def search_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of the registered model (none when it does not exist)."""
    return list(client.search_model_versions(f"name = '{name}'"))


def version_by_alias(client: MlflowClient, name: str, alias: str, *, retried: bool = True) -> ModelVersion | None:
    """The version ``alias`` points to, or None when the alias (or the model) does not exist.

    ``retried=False``: one call (the MLflow client's own retries only), for a caller that asks again anyway.
    """
    try:
        return (_get_by_alias if retried else _alias_version)(client, name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def resolve_version(client: MlflowClient, name: str, candidate: str = "latest") -> ModelVersion:
    """``latest`` (highest version number), a version number, or an alias → the ModelVersion."""
    if candidate == "latest":
        versions = search_versions(client, name)
        if not versions:
            raise RegistryError(f"registered model {name!r} has no versions (train one with `mlops train`)")
        return max(versions, key=lambda v: int(v.version))
    if candidate.isdigit():
        try:
            return _get_version(client, name, candidate)
        except MlflowException as exc:
            if _not_found(exc):
                raise RegistryError(f"registered model {name!r} has no version {candidate}") from exc
            raise
    found = version_by_alias(client, name, candidate)
    if found is None:
        raise RegistryError(f"registered model {name!r} has no version {candidate!r} (expected a number, "
                            f"'latest' or an existing alias)")
    return found
