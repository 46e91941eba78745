"""The admin app: liveness, readiness with each dependency's reason, metrics, JSON 404."""

import orjson
from prometheus_client import CollectorRegistry, Counter

from capps_kit.asgi import Message
from capps_kit.health import AdminApp, run_checks


async def _ok() -> None:
    return None


async def _down() -> None:
    raise ConnectionRefusedError("redis refused the connection")


async def _silent() -> None:
    raise TimeoutError


async def _get(app: AdminApp, path: str) -> tuple[int, dict[str, str], bytes]:
    """Call the ASGI app once, as a server would, and collect its answer."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    await app(scope, receive, send)
    start, body = sent
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, body["body"]


async def test_readiness_names_each_failing_dependency_and_its_reason() -> None:
    results = await run_checks({"postgres": _ok, "redis": _down, "kafka": _silent})
    assert results == {
        "postgres": "ok",
        "redis": "ConnectionRefusedError: redis refused the connection",
        "kafka": "TimeoutError",
    }


async def test_readyz_is_503_while_a_dependency_is_down_and_200_when_all_answer() -> None:
    status, _, body = await _get(AdminApp({"postgres": _ok, "redis": _down}), "/readyz")
    assert status == 503
    assert orjson.loads(body) == {
        "ready": False,
        "checks": {
            "postgres": "ok",
            "redis": "ConnectionRefusedError: redis refused the connection",
        },
    }
    status, _, body = await _get(AdminApp({"postgres": _ok}), "/readyz")
    assert (status, orjson.loads(body)) == (200, {"ready": True, "checks": {"postgres": "ok"}})


async def test_healthz_answers_even_when_dependencies_are_down() -> None:
    status, headers, body = await _get(AdminApp({"redis": _down}), "/healthz")
    assert (status, orjson.loads(body)) == (200, {"status": "ok"})
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))


async def test_metrics_serve_the_given_registry_with_current_values() -> None:
    registry = CollectorRegistry()
    calls = Counter("capps_test_calls_total", "Calls.", registry=registry)
    calls.inc(3)
    status, headers, body = await _get(AdminApp({}, registry), "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert "capps_test_calls_total 3.0" in body.decode().splitlines()


async def test_unknown_path_is_a_json_404_naming_it() -> None:
    status, _, body = await _get(AdminApp({}), "/nope")
    assert status == 404
    assert orjson.loads(body) == {
        "error": {"code": "not_found", "message": "no route /nope", "target": None}
    }
