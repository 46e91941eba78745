"""Response bodies of the audit API."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel


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


class AuditPage(BaseModel):
    """One page of the trail, newest first; pass `next_cursor` back as `cursor` for more."""

    events: list[AuditEventOut]
    next_cursor: str | None
