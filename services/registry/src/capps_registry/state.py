"""The typed state the lifespan yields: pools, clients, keys and the catalog, no globals."""

from dataclasses import dataclass, field
from typing import Annotated

import redis.asyncio as redis
from fastapi import Depends, Request

from capps_catalog import Catalog
from capps_registry.db import Pool
from capps_registry.oauth.keys import SigningKeys
from capps_registry.refreshes import BackgroundRefreshes
from capps_registry.settings import RegistrySettings

STATE_KEY = "registry"


@dataclass(frozen=True, slots=True)
class RegistryState:
    """Everything a request handler needs, opened once at start and closed at shutdown."""

    settings: RegistrySettings
    pool: Pool
    redis: "redis.Redis"
    keys: SigningKeys
    catalog: Catalog
    refreshes: BackgroundRefreshes = field(default_factory=BackgroundRefreshes)
    """Background refreshes of caches (the sort snapshots), cancelled when the state closes."""


def registry_state(request: Request) -> RegistryState:
    """The state the lifespan put in the request scope."""
    state = (request.scope.get("state") or {}).get(STATE_KEY)
    if isinstance(state, RegistryState):
        return state
    raise RuntimeError("the registry lifespan has not run")


StateDep = Annotated[RegistryState, Depends(registry_state)]
