"""Tracking: every piece of MLflow code of the project, one stage above training and below inference.

``store`` (where the store is), ``runs`` (run logging, sweep parent runs, the Hydra callback that prepares the
store), ``callbacks`` (the Lightning callback logging a run's files and model), ``registry`` (registered models,
aliases, ``vessel-promote``/``vessel-runs``), ``models`` (loading a logged model by URI), ``offline``
(``vessel-import-run``), ``sweep_summary``, ``warm_start`` (``init_from``) and ``train`` (the tracked
``vessel-train`` entry point). mlflow itself is imported only inside the functions that need it.
"""
