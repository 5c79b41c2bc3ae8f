"""Mitogen's linear strategy, loaded from the installed ``mitogen`` package (pinned in pyproject.toml).

ansible.cfg names this directory in ``strategy_plugins``, so the strategy is found wherever the
project's environment is, without a path into its site-packages.

Mitogen pins its own processes to CPUs, and every process it starts on a host (the host's Python, so
every command a task runs and every daemon it starts: supervisord and the platform's services) to
all CPUs but the first one (two on 4+ CPUs). A platform service would inherit that mask for life: on
a 2-core host MLflow, serving and PostgreSQL shared one core, and two installs running in parallel
took twice as long. Its policy that pins nothing is used instead (tests/platform/test_platform.py
checks the services' CPU masks).
"""

import ansible_mitogen.affinity
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

__all__ = ["StrategyModule"]
