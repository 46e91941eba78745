"""HTTP route of the audit trail."""

from typing import Annotated

from fastapi import APIRouter, Query

from capps_registry.apps.endpoints import ADMIN
from capps_registry.audit import service
from capps_registry.audit.schemas import AuditPage
from capps_registry.auth import TenantAdmin
from capps_registry.errors import error_responses
from capps_registry.state import StateDep

router = APIRouter(prefix="/v1", tags=["audit"], responses=error_responses(*ADMIN))


@router.get("/audit", responses=error_responses(400, 404))
async def list_audit(
    admin: TenantAdmin,
    state: StateDep,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    """Who changed what and when, newest first: every admin action with before and after."""
    return await service.list_events(state, admin, app_id=app_id, cursor=cursor, limit=limit)
