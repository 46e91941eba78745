"""Reading the audit trail, newest first, one page per call."""

from capps_registry.apps import repository as apps
from capps_registry.audit import repository
from capps_registry.audit.schemas import AuditEventOut, AuditPage
from capps_registry.errors import ApiError, app_not_found
from capps_registry.models import Principal
from capps_registry.oauth.credentials import looks_like_client_id
from capps_registry.pagination import BadCursorError, decode_cursor, encode_cursor
from capps_registry.state import RegistryState

CURSOR_KIND = "audit"


def _before_id(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        key = decode_cursor(CURSOR_KIND, cursor)
    except BadCursorError as exc:
        raise ApiError(400, "bad_cursor", str(exc)) from None
    if len(key) != 1 or not isinstance(key[0], int) or isinstance(key[0], bool):
        raise ApiError(400, "bad_cursor", "cursor is malformed")
    return key[0]


async def list_events(
    state: RegistryState,
    actor: Principal,
    *,
    app_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> AuditPage:
    """One page of the tenant's trail (of one app if given); 404 for an app never the tenant's."""
    if app_id is not None and not looks_like_client_id(app_id):
        raise app_not_found(app_id)
    before_id = _before_id(cursor)
    found = await repository.page(
        state.pool, actor.tenant_id, app_id=app_id, before_id=before_id, limit=limit + 1
    )
    page = found[:limit]
    # A deleted app keeps its trail; an id that never was this tenant's app is not found.
    if (
        app_id is not None
        and not page
        and before_id is None
        and await apps.get_app(state.pool, actor.tenant_id, app_id) is None
    ):
        raise app_not_found(app_id)
    return AuditPage(
        events=[
            AuditEventOut(
                id=event.id,
                at=event.at,
                actor=event.actor,
                action=event.action,
                app_id=event.app_id,
                before=event.before,
                after=event.after,
                request_id=event.request_id,
                via=event.via,
            )
            for event in page
        ],
        next_cursor=encode_cursor(CURSOR_KIND, [page[-1].id]) if len(found) > limit else None,
    )
