"""Facades that let users of older orchestration libraries move to flowcore with small changes.

- :mod:`flowcore.compat.py_orchestrate`: py-orchestrate's ``Orchestrator``, ``@workflow`` and
  ``@activity`` on sync functions.
- pyorchestration's numbered steps live in :mod:`flowcore.steps`.
"""
