"""The one settings source: read once by :func:`get_settings`, env prefix ``MLOPS_``.

Priority: CLI flag (applied by the caller) > environment > ``.env`` (development only) > default.
Vendor variables keep their own names (``MLFLOW_TRACKING_URI``, ``AWS_*``) and are read by
the vendor libraries themselves; :func:`mlops.tracking.load_client_env` fills them from the
file ``make up`` writes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

IsaClass = Literal["baseline", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"]
"""CPU ISA classes, lowest first (see training.cpu)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", env_file=".env", extra="ignore")

    # --- platform (written by `make up`) -------------------------------------------------
    state_dir: Path = Path(".mlops")
    """Where `make up` writes `local.env` (client variables) and `platform.json` (service map)."""
    admin_env: Path | None = None
    """The admin's login file `mlops users` uses; unset: `<state_dir>/admin.env` (`make up` on this machine;
    `make provision` writes `<state_dir>/<MLflow host>-admin.env`)."""
    client_env: Path | None = None
    """The MLflow login the CLI and notebooks load (a `local.env`-style file); unset: `<state_dir>/local.env`
    (the first person of the inventory). `make demo` uses `<state_dir>/admin.env`: it promotes, which
    only the gate and admins may."""

    # --- tracking ------------------------------------------------------------------------
    experiment_name: str = "visual-quality-inspection"
    model_name: str = "pill-quality"

    # --- training (defaults sized so the demo trains in a few minutes on 2 cores) --------
    train_epochs: int = 4
    train_batch_size: int = 32
    train_learning_rate: float = 1e-3
    train_image_size: int = 64
    train_width: float = 0.125
    """Channel multiplier of the VGG16 trunk (1.0 = real VGG16)."""
    train_n_train: int = 512
    train_n_val: int = 256
    train_seed: int = 0
    train_backend: str = "auto"
    """auto | ipex | native | none"""
    train_threads: int | None = None
    """Intra-op threads; default: the cores this process may use (divided among local DDP workers)."""
    int8_max_drop_points: float = 0.5
    """The INT8 model is refused when its validation accuracy is more than this many points below FP32."""
    int8_calibration_images: int = 256
    cpu_isa_override: IsaClass | None = None
    """Report this ISA class instead of the CPU's (tests; see training.cpu). The probes still run this host's
    kernels; limit those too with training.cpu.emulation_environment (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY)."""

    # --- monitoring store (see mlops.monitoring) -------------------------------------------
    monitoring_dsn: str = ""
    """libpq connection string without password (default: the `monitoring` entry of platform.json)."""

    # --- registry & serving --------------------------------------------------------------
    # Promotion gate (pipelines.promote): the thresholds are data, logged with every decision.
    promote_min_accuracy: float = 0.7
    """Absolute floor for any champion (also the only test when there is no champion yet)."""
    promote_min_f1: float = 0.6
    promote_accuracy_tolerance: float = 0.0
    """How far (absolute) the candidate's accuracy may be below the champion's (0 = not lower)."""
    promote_f1_tolerance: float = 0.0
    promote_min_recent_images: int = 20
    """The gate also judges on recent labelled served images held out of retraining (the candidate run's
    label window, see retrain_holdout_share) when at least this many exist; otherwise on the reference set only."""
    promote_reference_tolerance: float = 0.03
    """With a recent set, how far (absolute) accuracy and F1 on the reference set may fall below the
    champion's (the guard against forgetting); the recent set is held to the two tolerances above."""
    promote_max_latency_regression: float = 0.20
    """Batch-1 p50 latency may be at most this fraction worse than the champion's."""
    promote_eval_images: int = 256
    promote_eval_seed: int = 7_000_001
    """Seed of the held-out synthetic evaluation set (training uses seeds 0.. and 1_000_003..)."""
    promote_latency_iterations: int = 40
    promote_transition_stages: bool = True
    """Also move registry stages (candidate -> Production, old -> Archived) for MLflow UI users."""
    promote_experiment_name: str = "model-promotion"
    promote_lock_timeout_s: float = 600.0
    promote_wait_s: float = 600.0
    """How long `mlops promote` (and the retrain job) waits for the gate job to decide a promotion request,
    when its login may not promote itself."""
    promote_poll_s: float = 2.0
    """How often the asker looks whether the gate has decided."""

    # Serving (serving.app)
    serve_host: str = "127.0.0.1"
    serve_port: int = 8700
    serve_workers: int = 1
    serve_threads: int | None = None
    """Intra-op threads per worker (default: cores / workers)."""
    serve_root_path: str = ""
    """Path prefix nginx serves the app under (e.g. /serve), for the OpenAPI links."""
    serve_url: str = ""
    """Base URL clients (`mlops predict`, bench) use; default: the platform's nginx + /serve."""
    serve_alias: str = "champion"
    serve_poll_interval_s: float = 5.0
    """How often each worker checks which version the alias points to (hot swap)."""
    serve_registry_retries: int = Field(3, ge=0)
    """Retries of one registry call in serving (backoff 1 s, 2 s, 4 s): the poll repeats anyway, so a restarting
    MLflow delays the next check by seconds, not by the MLflow client's default of 7 retries (about 4 minutes)."""
    serve_max_batch: int = 64
    serve_max_image_bytes: int = 4_000_000
    serve_max_body_bytes: int = 32_000_000
    serve_variant: Literal["auto", "openvino_int8", "openvino_bf16", "openvino_fp32", "int8", "bf16", "compiled",
                           "fp32"] = "auto"
    """auto: the variant measured fastest at batch 1 among those agreeing with FP32 (``serving.models``);
    any other value forces that variant (FP32 eager where it cannot run here)."""
    serve_timing_iterations: int = 30
    """Interleaved batch-1 calls per candidate variant when a worker chooses what to serve."""
    serve_compile: bool = True
    serve_remember_choice: bool = True
    """Reuse the variant an earlier load on this host chose for the same version, CPU, software and settings
    (``variant_choices_dir``; the variant is still built and its agreement re-checked), so a restarted
    worker serves in seconds; off: every load (serving, the promotion gate) times every candidate again."""
    serve_agreement_images: int = 64
    serve_min_agreement: float = 0.98
    """A faster variant is used only if it predicts the FP32 class on this share of a fixed sample."""
    serve_monitoring: bool = True
    serve_monitoring_batch: int = 256
    serve_monitoring_flush_s: float = 1.0
    serve_monitoring_buffer_rows: int = Field(20_000, ge=1)
    """Rows kept while the monitoring store is unreachable (written when it answers); beyond it the oldest are
    dropped, counted in ``mlops_serving_monitoring_rows_dropped_total`` and logged."""
    serve_sample_rate: float = 0.1
    """Share of requests (0..1, chosen by a hash of the request id) whose images go to monitoring.samples."""
    serve_login_cache_s: float = Field(10.0, ge=0)
    """Requests nginx forwards to serving are checked with MLflow (``serving.logins``); a yes is kept this long
    per login in each worker (0: ask MLflow every time)."""
    serve_login_stale_s: float = Field(600.0, ge=0)
    """While MLflow cannot be asked, a yes up to this old still counts (predictions go on; nobody new gets in)."""
    serve_metrics_dir: Path | None = None
    """Where each ``mlops serve`` start keeps its workers' Prometheus metric files (multiprocess mode): a private
    directory per start, named by the gunicorn master's pid, removed at exit. Default: <state_dir>/serving-metrics."""

    # --- drift & retraining --------------------------------------------------------------
    drift_experiment: str = "drift-monitoring"
    """MLflow experiment of the drift runs (one per model and window)."""
    drift_window: str = "1h"
    """Length of a drift window (`30s`, `15m`, `1h`, `1d`); windows are aligned to the epoch."""
    drift_ks_alpha: float = 0.01
    """Family-wise KS alpha over the numeric features (Bonferroni: divided by their number)."""
    drift_psi_threshold: float = 0.005
    """A feature drifts only if its PSI also reaches this (a 0.1-sigma mean shift gives about 0.009)."""
    drift_psi_bins: int = 10
    drift_chi2_alpha: float = 0.01
    """Class balance (predicted classes) chi-square alpha."""
    drift_confidence_alpha: float = 0.01
    drift_confidence_psi_threshold: float = 0.05
    drift_mmd_alpha: float = 0.01
    drift_mmd_max_samples: int = 300
    drift_mmd_permutations: int = 200
    drift_min_rows: int = 30
    """A window with fewer usable rows is skipped with that reason (never reported as "no drift")."""
    drift_profile_sample: int = 100_000
    """Reference values kept (sorted, seeded subsample) per feature for KS; embeddings keep drift_mmd_max_samples."""
    retrain_windows: int = 5
    """M: the trigger looks at the last M windows ..."""
    retrain_min_drifted: int = 2
    """... and retrains when at least N of them drifted, the latest included."""
    retrain_accuracy_floor: float = 0.8
    """Labelled feedback below this accuracy (over the last M windows) also triggers a retrain."""
    retrain_min_feedback: int = 20
    """Fewer labels than this are not enough to judge accuracy."""
    retrain_lock_key: int = 5_050_505
    """PostgreSQL advisory lock key of the retrain tick (one tick at a time across hosts)."""
    retrain_holdout_share: float = Field(0.3, ge=0.0, lt=1.0)
    """Share of labelled served images (chosen by a hash of request id and item) kept out of every
    retraining for the promotion gate's recent set."""
    retrain_reference: Literal["recent", "training"] = "recent"
    """A drift-triggered retraining's reference profile: ``recent`` = the served images sampled in the
    drifted windows (what the new champion is expected to see; needs drift_min_rows of them, else the
    training data), ``training`` = its training data."""
    retrain_reference_max_images: int = Field(5000, ge=1)
    """At most this many sampled images make a ``recent`` reference profile (a fixed pseudo-random subset)."""

    # --- day-2 operations ----------------------------------------------------------------
    metrics_textfile_dir: Path | None = None
    """Where jobs leave their results for Prometheus (node exporter's textfile collector reads ``*.prom``
    here; see mlops.textfile). Unset: results are only logged (a notebook, a laptop)."""

    @property
    def client_env_file(self) -> Path:
        return self.client_env or self.state_dir / "local.env"

    @property
    def platform_file(self) -> Path:
        return self.state_dir / "platform.json"

    @property
    def admin_env_file(self) -> Path:
        """The platform admin's client settings (`make up` writes it; `mlops users` logs in with it)."""
        return self.admin_env or self.state_dir / "admin.env"

    @property
    def credentials_dir(self) -> Path:
        """Generated passwords (mode 0600), ``mlflow-<user>`` for each MLflow login."""
        return self.state_dir / "credentials"

    @property
    def variant_choices_dir(self) -> Path:
        """The variants this program chose, per version, CPU, software and settings (``serve_remember_choice``)."""
        return self.state_dir / "variant-choices"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
