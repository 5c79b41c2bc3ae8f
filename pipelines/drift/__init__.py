"""Drift of serving traffic against the champion's reference profile, one module per concern.

- :mod:`pipelines.drift.stats`: two-sample statistics (KS, PSI, chi-square, MMD), pure numpy/scipy;
- :mod:`pipelines.drift.windows`: aligned time windows (``30s``, ``1h`` ...);
- :mod:`pipelines.drift.data`: one window of ``monitoring.predictions`` (SQL);
- :mod:`pipelines.drift.check`: the verdict of a window against a profile (no I/O);
- :mod:`pipelines.drift.plots`: the figures logged with each check;
- :mod:`pipelines.drift.runs`: checks as MLflow runs (profile in, one run per model and window out).

The profile's format and builder belong to training (:mod:`training.profile`).
"""
