"""``/health``, ``/ready``, ``/model`` and ``/model/reload``: is the service up, which model serves, reload it."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse

from app.dependencies import LoadedModelDep, ManagerDep, require_api_key
from app.redact import public, public_text
from app.schemas import Health, ModelInfo, NotReady, Ready, errors
from vessel_lightning.inference.backends import describe_device

router = APIRouter(tags=["model"])


@router.get("/health", response_model=Health, responses=errors())
async def health(manager: ManagerDep) -> dict[str, Any]:
    """Liveness: answers while the model loads and under load; says what the model runs on."""
    model = manager.current
    return public(
        {
            "status": "ok",
            "ready": model is not None,
            "model": model.summary() if model else None,
            "device": describe_device(manager.device, manager.settings.threads),
        }
    )


@router.get(
    "/ready",
    response_model=Ready,
    responses={503: {"model": NotReady, "description": "No model yet: still loading, or the load failed."}},
)
async def ready(manager: ManagerDep) -> JSONResponse:
    """200 when a model is loaded, else 503 with the reason."""
    model = manager.current
    if model is None:
        error = public_text(manager.error) if manager.error is not None else None
        detail = "the model is still loading" if error is None else f"no model: {error}"
        return JSONResponse({"ready": False, "detail": detail, "error": error}, status_code=503)
    return JSONResponse(
        public({"ready": True, "model": model.summary(), "registry": manager.registry_status()})
    )


@router.get("/model", response_model=ModelInfo, responses=errors(503))
async def model_info(model: LoadedModelDep, manager: ManagerDep) -> dict[str, Any]:
    """Name, version, alias, run id, backend, load time, metrics and contract of the served model, and whether
    the registry answers."""
    # Its files by name, size and digest, never by where they lie.
    return public(model.describe() | {"registry": manager.registry_status()})


@router.post(
    "/model/reload",
    dependencies=[Depends(require_api_key)],
    response_model=ModelInfo,
    responses=errors(401, 503),
)
async def reload_model(manager: ManagerDep) -> dict[str, Any]:
    """Re-resolve the alias now and load its version if it moved; returns the ``/model`` JSON."""
    try:
        model = await asyncio.to_thread(manager.reload)
    except Exception as exc:
        raise HTTPException(503, public_text(f"reload failed: {manager.error or exc}")) from exc
    return public(model.describe() | {"registry": manager.registry_status()})
