"""``python -m mlops_cli``: the ``mlops`` command (torchrun workers and tests start it this way)."""

from mlops_cli.cli import run

run()
