"""Mitogen's linear strategy, loaded from the installed ``mitogen`` package (pinned in pyproject.toml).

ansible.cfg names this directory in ``strategy_plugins``, so the strategy is found wherever the
project's environment is, without a path into its site-packages.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
