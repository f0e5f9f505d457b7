"""Hydra sweeper plugin: an Optuna search driven from ``vessel-train -m hparams_search=<name>``."""
