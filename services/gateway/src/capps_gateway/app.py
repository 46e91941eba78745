"""The gateway's handler of one call: authenticate, match, authorise, proxy, emit one event.

No framework on the per-request path: the edge (edge.py) hands over a parsed `Call`, routing
is one dict lookup, a token is verified once and then cached, and the event is journaled just
before the answer's last bytes go out.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from capps_catalog import Catalog
from capps_events import AppState, new_event_id
from capps_gateway import errors, metrics
from capps_gateway.access import Verdict, decide
from capps_gateway.auth import (
    InvalidTokenError,
    KeysUnavailableError,
    Principal,
    TokenVerifier,
)
from capps_gateway.auth.external import IssuerRouter
from capps_gateway.auth.issuers import load_issuers
from capps_gateway.call import MAX_BODY_BYTES, BodyTooLargeError, Call, ClientGoneError
from capps_gateway.errors import GatewayError
from capps_gateway.events import build_event
from capps_gateway.headers import bearer_token, sane_request_id
from capps_gateway.proxy import UpstreamError
from capps_gateway.routes import (
    UNMATCHED,
    RouteMatch,
    RouteTable,
    path_refusal,
)
from capps_gateway.runtime import Runtime, open_runtime
from capps_gateway.settings import GatewaySettings
from capps_gateway.tracing import traced_calls
from capps_kit.health import AdminApp, Degraded
from capps_kit.tracing import open_tracing

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499
"""Status recorded (nginx's convention) when the caller hung up before sending its body."""


def send_error(
    call: Call, error: GatewayError, extra: list[tuple[bytes, bytes]] | None = None
) -> int:
    """Answer with the error's JSON body (and any `extra` headers); return its status."""
    headers, body = errors.render(error, call.request_id)
    if extra:
        headers += extra
    call.respond(error.status, headers, body)
    return error.status


class GatewayApp:
    """The proxy's call handler; `admin` is the matching health/readiness/metrics ASGI app."""

    def __init__(self, settings: GatewaySettings, catalog: Catalog) -> None:
        self._settings = settings
        self._routes = RouteTable(catalog.routes)
        self._metrics = metrics.RequestMetrics()
        self._runtime: Runtime | None = None
        self._in_flight = 0
        self._max_in_flight = settings.gateway_max_in_flight
        # Read before serving, so a wrong issuers file stops the gateway at start.
        self._issuers = (
            load_issuers(settings.gateway_issuers_file, registry_issuer=settings.token_issuer)
            if settings.gateway_issuers_file is not None
            else []
        )
        self._all_permissions = frozenset(catalog.permissions)
        # Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; then each call runs in its span.
        self._tracing = open_tracing(settings, "capps-gateway", "capps_gateway")
        self._serve = (
            self._http if self._tracing is None else traced_calls(self._tracing.tracer, self._http)
        )
        self.admin = AdminApp(
            {
                "jwks": self._check_jwks,
                "kafka": self._check_kafka,
                "apps": self._check_apps,
                "ratelimit": self._check_ratelimit,
            }
        )

    async def __call__(self, call: Call) -> None:
        """Serve one call, or refuse it at once past the in-flight limit."""
        if self._in_flight >= self._max_in_flight:
            # Refused before any work, and before the app is known: metrics only.
            call.request_id = new_event_id()
            send_error(call, errors.overloaded(self._max_in_flight))
            self._metrics.observe_refused(UNMATCHED, 503, "overloaded", 0.0)
            return
        self._in_flight += 1
        try:
            await self._serve(call)
        finally:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """Calls being served now."""
        return self._in_flight

    async def _check_jwks(self) -> None:
        if self._runtime is None or not self._runtime.keys.loaded:
            raise RuntimeError("JWKS not loaded")

    async def _check_kafka(self) -> None:
        # Ready while Kafka is down or hung too: events spool to disk, and serving calls is the
        # point; not ready once the spool cannot take them.
        if self._runtime is None:
            raise RuntimeError("request event publisher not running")
        ready, detail = self._runtime.publisher.readiness()
        if not ready:
            raise RuntimeError(detail)
        if detail != "ok":
            raise Degraded(detail)

    async def _check_ratelimit(self) -> None:
        # Ready without Redis too: each process then limits alone at its share of the limit.
        if self._runtime is None:
            raise RuntimeError("rate limiter not running")
        error = self._runtime.limiter.redis_error
        if error is not None:
            share = self._settings.gateway_ratelimit_fallback_processes
            raise Degraded(f"Redis not answering ({error}); local limits of limit / {share}")

    async def _check_apps(self) -> None:
        if self._runtime is None or not self._runtime.apps.loaded:
            raise RuntimeError("app state view not loaded yet")

    async def start(self) -> None:
        """Open the runtime (verifier, views, producer, limiter, upstream pool)."""
        self._runtime = open_runtime(
            self._settings,
            issuers=self._issuers,
            all_permissions=self._all_permissions,
            tracer=self._tracing.tracer if self._tracing is not None else None,
        )

    async def stop(self) -> None:
        """Close the runtime (its events flushed or spooled) and the tracer."""
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.close()
        if self._tracing is not None:
            await asyncio.to_thread(self._tracing.shutdown)

    async def _http(self, call: Call) -> None:
        started = time.perf_counter()
        authorization = request_id_header = None
        for name, value in call.headers:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id_header = value
        request_id = call.request_id = sane_request_id(request_id_header) or new_event_id()
        method = call.method
        raw_path = call.path
        refusal = path_refusal(raw_path)
        if refusal is not None:
            send_error(call, errors.invalid_path(refusal))
            self._metrics.observe_refused(
                UNMATCHED, 400, "invalid_path", time.perf_counter() - started
            )
            return
        match = self._routes.match(method, raw_path)
        if match is None:
            route = UNMATCHED
        else:
            route = call.route = match.route.template
        runtime = self._runtime
        if runtime is None:
            send_error(call, errors.keys_unavailable())
            return

        principal = await _authenticate(runtime.verifier, bearer_token(authorization))
        if isinstance(principal, _Refusal):
            # No app identified: the call counts in metrics only, never as an event.
            send_error(call, principal.error)
            self._metrics.observe_refused(
                route, principal.error.status, principal.reason, time.perf_counter() - started
            )
            return

        # One dict lookup when the app is known; a wait only for an app created a moment ago.
        state = runtime.apps.get(principal.app_id)
        if state is None:
            state = await runtime.apps.wait_for(principal.app_id, self._settings.gateway_app_wait_s)
        verdict = decide(state, principal, match.route.permission if match is not None else None)
        if verdict is Verdict.UNKNOWN_APP or verdict is Verdict.TOKEN_REVOKED:
            # The token is no longer valid for any app: metrics only, never an event.
            error = errors.invalid_token(
                "the app is unknown or deleted"
                if verdict is Verdict.UNKNOWN_APP
                else "issued before the app's tokens were revoked"
            )
            send_error(call, error)
            self._metrics.observe_refused(
                route, error.status, verdict.value, time.perf_counter() - started
            )
            return

        publisher = runtime.publisher
        gateway_id = self._settings.instance_id

        def emit(status: int, bytes_out: int) -> None:
            publisher.publish(
                build_event(
                    principal=principal,
                    method=method,
                    route=route,
                    status=status,
                    latency_ms=(time.perf_counter() - started) * 1000.0,
                    bytes_in=call.bytes_in,
                    bytes_out=bytes_out,
                    request_id=request_id,
                    gateway=gateway_id,
                )
            )

        # The event is published just before the answer's last bytes are written, so it is
        # in the journal before the caller has its whole answer: a process killed at any
        # moment loses no answered call.
        call.on_last_write = emit
        status = await self._authorised(
            call,
            match=match,
            verdict=verdict,
            state=state,
            principal=principal,
        )
        if not call.complete:
            # No complete answer went out (caller gone, upstream failed mid-body).
            call.on_last_write = None
            emit(status, call.bytes_out)
        self._metrics.observe(route, status, time.perf_counter() - started)

    async def _authorised(
        self,
        call: Call,
        *,
        match: RouteMatch | None,
        verdict: Verdict,
        state: AppState | None,
        principal: Principal,
    ) -> int:
        """Answer a call from a known app; return its status.

        Every call of an enabled app takes one from its rate limit (404 and 403 too: they are
        counted calls), and every answer carries the RateLimit headers.
        """
        if verdict is Verdict.APP_DISABLED or state is None or self._runtime is None:
            return send_error(call, errors.app_disabled())
        decision = await self._runtime.limiter.check(principal.app_id, state.rate_limit)
        limits = decision.headers()
        if not decision.allowed:
            return send_error(call, errors.rate_limited(limits))
        if match is None:
            return send_error(call, errors.not_found(call.method, call.path[:200]), limits)
        if verdict is Verdict.INSUFFICIENT_SCOPE:
            error = errors.insufficient_scope(match.route.permission)
            return send_error(call, error, limits)
        return await self._proxy(call, principal=principal, extra_headers=limits)

    async def _proxy(
        self,
        call: Call,
        *,
        principal: Principal,
        extra_headers: list[tuple[bytes, bytes]],
    ) -> int:
        """Read the body and relay the call; return the status."""
        assert self._runtime is not None
        try:
            body = await call.body()
        except BodyTooLargeError:
            error = errors.payload_too_large(MAX_BODY_BYTES)
            return send_error(call, error, extra_headers)
        except ClientGoneError:
            metrics.UPSTREAM_ERRORS.labels("client_gone").inc()
            return CLIENT_CLOSED_REQUEST
        try:
            return await self._runtime.proxy.forward(
                call,
                body=body,
                principal=principal,
                extra_headers=extra_headers,
            )
        except UpstreamError as exc:
            metrics.UPSTREAM_ERRORS.labels("timeout" if exc.timeout else "connect").inc()
            error = (
                errors.gateway_timeout(self._settings.gateway_upstream_timeout_s)
                if exc.timeout
                else errors.bad_gateway()
            )
            if exc.response_started:
                # Too late for an error answer: the edge drops the connection mid-body.
                return error.status
            return send_error(call, error, extra_headers)


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A call refused before any app was identified, and the metric reason."""

    error: GatewayError
    reason: str


async def _authenticate(
    verifier: TokenVerifier | IssuerRouter, token: str | None
) -> Principal | _Refusal:
    """The caller behind the bearer token, or why it is refused."""
    if token is None:
        return _Refusal(errors.missing_token(), "missing")
    try:
        return await verifier.verify(token)
    except InvalidTokenError as exc:
        return _Refusal(errors.invalid_token(str(exc)), "invalid")
    except KeysUnavailableError:
        return _Refusal(errors.keys_unavailable(), "keys_unavailable")
