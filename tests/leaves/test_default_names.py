"""The default model name, alias, model URI and experiment are spelled once (vessel_lightning.config) and reach
every config, CLI and the service from there."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from app.settings import Settings
from tests.helpers.data import compose
from vessel_lightning.config import DEFAULT_ALIAS, DEFAULT_EXPERIMENT, DEFAULT_MODEL_NAME, DEFAULT_MODEL_URI


def test_configs_take_the_default_names_from_python() -> None:
    train = compose("train", ["experiment=demo_cpu", "logger=mlflow"])
    assert train.registry.name == DEFAULT_MODEL_NAME
    assert train.registry.alias == DEFAULT_ALIAS
    assert train.logger.mlflow.experiment_name == DEFAULT_EXPERIMENT
    assert compose("train", ["experiment=chase_b0_warm"]).init_from == DEFAULT_MODEL_URI
    assert compose("eval", []).model_uri == DEFAULT_MODEL_URI
    assert f"models:/{DEFAULT_MODEL_NAME}@{DEFAULT_ALIAS}" == DEFAULT_MODEL_URI
    assert Settings().model_uri == DEFAULT_MODEL_URI


def test_an_unknown_default_is_an_error_naming_it() -> None:
    with pytest.raises(Exception, match=r"vessel_default:model\b.*no such default"):
        OmegaConf.to_container(OmegaConf.create({"x": "${vessel_default:model}"}), resolve=True)
