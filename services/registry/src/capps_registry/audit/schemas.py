"""Response bodies of the audit API."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from capps_registry.models import Channel


class AuditEventOut(BaseModel):
    """One admin action: who (client id, or `registry-cli`), what, when, before and after."""

    id: int
    at: datetime
    actor: str
    action: str
    app_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    via: Channel | None = None
    """How: `api` (the admin API), `page` (the Connected applications page) or `cli` (the
    platform's `registry` command); null for events recorded before the trail kept it."""


class AuditPage(BaseModel):
    """One page of the trail, newest first; pass `next_cursor` back as `cursor` for more."""

    events: list[AuditEventOut]
    next_cursor: str | None
