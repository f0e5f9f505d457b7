"""FastAPI dependencies: what a route takes from the application's shared state (``app.state``).

``create_app`` puts the settings, the model manager and the worker pools on ``app.state``; routes declare what
they need (``settings: SettingsDep``), so they hold no closures and tests can build the state as they like.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from app.errors import Refusal
from app.model_manager import LoadedModel, ModelManager
from app.pool import Pools
from app.redact import public_text
from app.settings import Settings

API_KEY_HEADER = "X-API-Key"

# Documents the key in /docs ("Authorize"); the check itself is require_api_key's, so a server without a key
# (the default) lets every request through.
_api_key = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The server's VESSEL_API_KEY, when it has one (then every POST needs it).",
)


def get_settings(request: Request) -> Settings:
    """The application's :class:`Settings`."""
    return request.app.state.settings


def get_manager(request: Request) -> ModelManager:
    """The application's :class:`ModelManager`."""
    return request.app.state.manager


def get_pools(request: Request) -> Pools:
    """The application's worker pools."""
    return request.app.state.pools


SettingsDep = Annotated[Settings, Depends(get_settings)]
ManagerDep = Annotated[ModelManager, Depends(get_manager)]
PoolsDep = Annotated[Pools, Depends(get_pools)]


async def require_api_key(
    settings: SettingsDep, given: Annotated[str | None, Security(_api_key)] = None
) -> None:
    """401 unless the request carries the server's API key (nothing to check when it has none)."""
    if settings.api_key is None:
        return
    if not hmac.compare_digest((given or "").encode(), settings.api_key.encode()):
        raise HTTPException(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")


def current_model(manager: ModelManager) -> LoadedModel:
    """The model now served; 503 with the reason (and ``Retry-After``) while none is loaded."""
    model = manager.current
    if model is None:
        error = manager.error
        reason = "the model is still loading" if error is None else f"no model: {public_text(error)}"
        raise Refusal(503, reason, "no model", headers={"Retry-After": "5"})
    return model


def loaded_model(manager: ManagerDep) -> LoadedModel:
    """:func:`current_model` as a dependency."""
    return current_model(manager)


LoadedModelDep = Annotated[LoadedModel, Depends(loaded_model)]
