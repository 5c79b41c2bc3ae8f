"""Every tag name the platform writes to MLflow runs and model versions, in one place.

Runs carry ``mlops.``-prefixed tags. The promotion gate's tags on model *versions* keep the
unprefixed names they were first released with (``promotion_run_id`` ...): the README and
existing registries use them.
"""

# Drift runs (experiment `drift_experiment`): one per model and window.
TAG_KIND = "mlops.kind"
TAG_MODEL = "mlops.model"
TAG_VERSION = "mlops.model_version"
TAG_WINDOW = "mlops.window"
TAG_WINDOW_START = "mlops.window_start"
TAG_VERDICT = "mlops.verdict"
TAG_REASON = "mlops.reason"

# Retraining: the training run a tick starts, and the drift run that triggered it.
TAG_RETRAIN_WINDOW = "mlops.retrain_window"
TAG_RETRAIN_MODEL = "mlops.retrain_model"
TAG_DRIFT_RUN = "mlops.drift_run_id"
TAG_TRIGGER = "mlops.trigger"
TAG_PROMOTION = "mlops.promotion"
TAG_PROMOTION_RUN = "mlops.promotion_run_id"
TAG_RETRAIN_RUN = "mlops.retrain_run_id"

# Model versions judged by the promotion gate.
VERSION_TAG_PROMOTION_RUN = "promotion_run_id"
VERSION_TAG_VERDICT = "promotion_verdict"
VERSION_TAG_CHAMPION = "promotion_champion"
VERSION_TAG_REASON = "promotion_reason"
VERSION_TAG_REQUESTED_BY = "promotion_requested_by"
"""A pending promotion request: the login that asked (MLflow's auth app lets a login set only its own
name here, and only the gate remove it); the gate removes it once it has decided (pipelines.gate)."""
VERSION_TAG_PREFIX = "promotion_"
"""The gate's records on a version: only a login that may promote sets or deletes these (the request
tag above excepted)."""
TAG_REQUESTED_BY = "mlops.requested_by"
"""On a promotion run: the person or job that asked for it."""
