"""The ``mlops`` command line and what only it runs: status, smoke, inventory, demo, benchmarks.

The top of the layers (``mlops`` ← ``training`` ← ``pipelines`` / ``serving`` ← ``mlops_cli``): it
imports the product packages, none of them imports it.
"""
