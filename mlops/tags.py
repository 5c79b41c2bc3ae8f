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
