"""The model contract is validated on load: unknown fields and newer versions are errors naming them."""

from __future__ import annotations

import pytest

from vessel_lightning.contract import CONTRACT_VERSION, ContractError, ModelContract

CONTRACT = ModelContract(encoder="", arch="unet_plain", dataset="masks", size=(32, 32), threshold=0.45)


def test_contract_round_trips_through_its_dict() -> None:
    assert ModelContract.from_dict(CONTRACT.to_dict()) == CONTRACT


def test_contract_without_version_reads_as_version_1() -> None:
    data = CONTRACT.to_dict()
    del data["version"]
    assert ModelContract.from_dict(data).version == 1


def test_contract_with_an_unknown_field_is_an_error_naming_it() -> None:
    with pytest.raises(ContractError, match=r"m1: .*unknown field 'colour_space'"):
        ModelContract.from_dict({**CONTRACT.to_dict(), "colour_space": "lab"}, source="m1")


def test_contract_of_a_newer_version_is_an_error_naming_the_version() -> None:
    newer = CONTRACT_VERSION + 1
    with pytest.raises(
        ContractError, match=rf"m2: model contract version {newer} is newer .*\(up to {CONTRACT_VERSION}\)"
    ):
        ModelContract.from_dict({**CONTRACT.to_dict(), "version": newer}, source="m2")


def test_contract_with_a_mistyped_field_is_an_error_naming_it() -> None:
    with pytest.raises(ContractError, match=r"field 'threshold'"):
        ModelContract.from_dict({**CONTRACT.to_dict(), "threshold": "high"}, source="m3")
    with pytest.raises(ContractError, match=r"field 'encoder' is missing"):
        ModelContract.from_dict({"size": [32, 32]}, source="m4")
