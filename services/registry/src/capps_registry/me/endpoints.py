"""HTTP route of the partner self-view."""

from fastapi import APIRouter

from capps_registry.auth import AppCaller
from capps_registry.errors import error_responses
from capps_registry.me import service
from capps_registry.me.schemas import MeOut
from capps_registry.state import StateDep

router = APIRouter(prefix="/v1", tags=["partner"])


@router.get("/me", responses=error_responses(401, 403, 404, 413, 503))
async def me(caller: AppCaller, state: StateDep) -> MeOut:
    """The calling app's name, permissions, rate limits and headroom, and its usage."""
    return await service.me(state, caller)
