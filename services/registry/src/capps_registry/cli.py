"""The `registry` command: migrate, serve, bootstrap tenants, republish apps.

Each subcommand imports its heavy modules (alembic, FastAPI) itself, so `tenant create`
answers in a fraction of the time the web stack takes to import.
"""

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from pydantic import ValidationError

from capps_kit import postgres
from capps_kit.logging import configure_logging
from capps_registry.db import Pool
from capps_registry.settings import RegistrySettings
from capps_registry.tenants.service import (
    BootstrappedTenant,
    InvalidTenantNameError,
    UnknownTenantError,
    create_tenant,
    rotate_admin_secret,
)

DB_WAIT_S = 30.0
T = TypeVar("T")


class CommandError(Exception):
    """A failure to report in one line and exit non-zero."""


def _settings() -> RegistrySettings:
    try:
        return RegistrySettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise CommandError(f"invalid settings: {problems}") from None


def migrate(settings: RegistrySettings) -> None:
    """Wait for PostgreSQL, then upgrade the schema to the newest revision."""
    # alembic announces each of its plugins at INFO (on import); only the revisions matter.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from capps_registry.migrations.runner import upgrade, wait_for_database  # noqa: PLC0415

    try:
        asyncio.run(wait_for_database(settings.database_url, DB_WAIT_S))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise CommandError(f"PostgreSQL is not reachable: {exc}") from None
    from capps_registry.migrations.roles import LoginRoleError  # noqa: PLC0415

    try:
        upgrade(settings.database_url, settings.pepper, settings.registry_app_database_url)
    except LoginRoleError as exc:
        raise CommandError(str(exc)) from None


def serve(settings: RegistrySettings) -> None:
    """Run the HTTP server (uvloop, httptools) until SIGTERM/SIGINT, with its limits."""
    import uvicorn  # noqa: PLC0415

    from capps_registry.app import build_api  # noqa: PLC0415
    from capps_registry.server import HeaderTimeoutProtocol  # noqa: PLC0415

    HeaderTimeoutProtocol.header_read_timeout_s = settings.registry_header_read_timeout_seconds
    uvicorn.run(
        build_api(settings),
        host=settings.registry_host,
        port=settings.registry_port,
        loop="uvloop",
        http=HeaderTimeoutProtocol,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        # Beyond this many open connections and requests in flight, answer 503 at once.
        limit_concurrency=settings.registry_max_concurrency,
        timeout_keep_alive=settings.registry_keep_alive_seconds,
        backlog=1024,
    )


async def _on_pool(
    settings: RegistrySettings, action: Callable[[Pool], Awaitable[T]], what: str
) -> T:
    """Run `action` on a one-connection pool; a missing table or database error in one line."""
    try:
        pool = await postgres.settings_pool(settings, max_size=1)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise CommandError(f"PostgreSQL is not reachable: {exc}") from None
    try:
        return await action(pool)
    except asyncpg.UndefinedTableError:
        raise CommandError(
            "the registry tables are missing: run `registry migrate` first"
        ) from None
    except asyncpg.PostgresError as exc:
        raise CommandError(f"could not {what}: {exc}") from None
    finally:
        await pool.close()


def _credentials(tenant: BootstrappedTenant) -> dict[str, str]:
    return {
        "tenant_id": tenant.tenant_id,
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
    }


def tenant_create(settings: RegistrySettings, name: str) -> None:
    """Create a tenant and print its admin client's credentials as one JSON object."""
    try:
        created = asyncio.run(
            _on_pool(settings, lambda pool: create_tenant(pool, settings.pepper, name), "create it")
        )
    except InvalidTenantNameError as exc:
        raise CommandError(str(exc)) from None
    sys.stdout.write(json.dumps(_credentials(created)) + "\n")


def tenant_rotate_secret(settings: RegistrySettings, tenant_id: str) -> None:
    """Replace every admin secret of the tenant with a new one, revoke its admin tokens."""
    try:
        rotated = asyncio.run(
            _on_pool(
                settings,
                lambda pool: rotate_admin_secret(pool, settings.pepper, tenant_id),
                "rotate the secret",
            )
        )
    except UnknownTenantError as exc:
        raise CommandError(str(exc)) from None
    sys.stdout.write(json.dumps(_credentials(rotated)) + "\n")


def apps_republish(settings: RegistrySettings) -> None:
    """Enqueue every app's current state; the running registries' relays publish it."""
    from capps_registry.outbox.repository import enqueue_every_app  # noqa: PLC0415

    enqueued = asyncio.run(_on_pool(settings, enqueue_every_app, "enqueue the apps"))
    sys.stdout.write(json.dumps({"enqueued": enqueued}) + "\n")


def keys_rotate(settings: RegistrySettings) -> None:
    """Add a signing key that signs from now on; the old one stays published until it expires."""
    from capps_registry.oauth.service import rotate_signing_key  # noqa: PLC0415

    rotated = asyncio.run(
        _on_pool(settings, lambda pool: rotate_signing_key(pool, settings), "rotate the key")
    )
    printed = {"kid": rotated.kid, "retired": rotated.retired, "deleted": rotated.deleted}
    sys.stdout.write(json.dumps(printed) + "\n")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    root = argparse.ArgumentParser(
        prog="registry", description="OAuth 2.0 registry of connected apps."
    )
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="wait for PostgreSQL, then apply migrations")
    commands.add_parser("serve", help="run the registry HTTP server")
    tenant = commands.add_parser("tenant", help="manage tenants")
    tenant_commands = tenant.add_subparsers(dest="tenant_command", required=True)
    create = tenant_commands.add_parser(
        "create", help="create a tenant; print its admin client credentials as JSON"
    )
    create.add_argument("--name", required=True, help="the tenant's display name")
    rotate = tenant_commands.add_parser(
        "rotate-secret",
        help="break glass: give the admin client a new secret, delete its others and revoke "
        "its tokens; print the new credentials as JSON",
    )
    rotate.add_argument("--tenant-id", required=True, help="the tenant's id")
    keys = commands.add_parser("keys", help="manage the token signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_commands.add_parser(
        "rotate",
        help="add a key that signs new tokens; the old one stays in the JWKS until every token "
        'it signed has expired. Prints {"kid", "retired", "deleted"}',
    )
    apps = commands.add_parser("apps", help="operate on every tenant's apps")
    apps_commands = apps.add_subparsers(dest="apps_command", required=True)
    apps_commands.add_parser(
        "republish",
        help="enqueue every app's current state for the apps topic (e.g. after the topic was "
        'lost); a running registry publishes it. Prints {"enqueued": N}',
    )
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `registry` console script."""
    args = parser().parse_args(argv)
    try:
        settings = _settings()
        configure_logging("registry", settings.log_level)
        if args.command == "migrate":
            migrate(settings)
        elif args.command == "serve":
            serve(settings)
        elif args.command == "tenant" and args.tenant_command == "create":
            tenant_create(settings, args.name)
        elif args.command == "tenant" and args.tenant_command == "rotate-secret":
            tenant_rotate_secret(settings, args.tenant_id)
        elif args.command == "keys" and args.keys_command == "rotate":
            keys_rotate(settings)
        elif args.command == "apps" and args.apps_command == "republish":
            apps_republish(settings)
    except CommandError as exc:
        sys.stderr.write(f"registry: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
