"""The OpenAPI document tells the truth: each operation documents what it answers, and does."""

import uuid
from typing import Any

import httpx
import pytest

from tests.integration.registry.conftest import Running, Tenant, token_for

pytestmark = pytest.mark.integration

METHODS = ("get", "post", "patch", "put", "delete")
ERROR_REF = "#/components/schemas/ErrorBody"
OAUTH_ERROR_REF = "#/components/schemas/OAuthErrorBody"


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (path, method, operation) of the document."""
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def schema_of(document: dict[str, Any], operation: dict[str, Any], status: int) -> dict[str, Any]:
    """The JSON schema documented for one status, with a top-level $ref resolved."""
    content = operation["responses"][str(status)].get("content", {})
    schema: dict[str, Any] = content.get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def assert_conforms(
    document: dict[str, Any], operation: dict[str, Any], response: httpx.Response, where: str
) -> None:
    """The status is documented, and a JSON body has the documented required fields."""
    documented = {int(code) for code in operation["responses"] if code.isdigit()}
    assert response.status_code in documented, f"{where}: {response.status_code} undocumented"
    if response.headers.get("content-type", "").startswith("application/json"):
        schema = schema_of(document, operation, response.status_code)
        body = response.json()
        missing = [name for name in schema.get("required", []) if name not in body]
        assert not missing, f"{where}: {response.status_code} body lacks {missing}"


async def call(client: httpx.AsyncClient, path: str, method: str) -> httpx.Response:
    """Call an operation with made-up path ids and an empty (or no) body."""
    filled = path
    for name in ("app_id", "secret_id"):
        filled = filled.replace("{" + name + "}", str(uuid.uuid4()))
    if method in ("post", "patch", "put"):
        return await client.request(method.upper(), filled, json={})
    return await client.request(method.upper(), filled)


async def test_every_admin_operation_documents_its_errors(registry: Running) -> None:
    document = (await registry.client.get("/openapi.json")).json()
    admin_ops = [op for op in operations(document) if op[0].startswith("/v1/")]
    assert len(admin_ops) >= 14
    for path, method, operation in admin_ops:
        responses = operation["responses"]
        # /v1/me takes no parameters or body to fail validation.
        expected = {"401", "403", "413"} | ({"404"} if path == "/v1/me" else {"422"})
        if "{app_id}" in path or "{secret_id}" in path:
            expected.add("404")
        assert expected <= set(responses), f"{method} {path} lacks {expected - set(responses)}"
        for code, response in responses.items():
            if int(code) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema["$ref"] == ERROR_REF, f"{method} {path} {code}"
    for path in ("/oauth2/token", "/oauth2/introspect"):
        token_op = document["paths"][path]["post"]
        assert {"200", "400", "401", "413", "429"} <= set(token_op["responses"])
        assert (
            schema_of(document, token_op, 401)
            == document["components"]["schemas"][OAUTH_ERROR_REF.rsplit("/", 1)[-1]]
        )
        assert "application/x-www-form-urlencoded" in token_op["requestBody"]["content"]


async def test_every_answer_conforms_to_the_document(
    registry: Running, tenant: Tenant, admin: httpx.AsyncClient
) -> None:
    document = (await registry.client.get("/openapi.json")).json()
    app = (await admin.post("/v1/apps", json={"name": "Walker", "permissions": []})).json()
    app_token = await token_for(registry, app["id"], app["client_secret"])
    async with registry.new_client(Authorization=f"Bearer {app_token}") as partner:
        for path, method, operation in operations(document):
            for who, client in (("anonymous", registry.client), ("admin", admin), ("app", partner)):
                if path == "/v1/admin-client/secrets" and who == "admin":
                    continue  # would add a real secret to the tenant's admin client
                response = await call(client, path, method)
                assert_conforms(document, operation, response, f"{who} {method} {path}")
    # And with real ids, the successful answers conform too.
    for path in (f"/v1/apps/{app['id']}", f"/v1/apps/{app['id']}/usage", "/v1/audit", "/v1/apps"):
        template = path.replace(app["id"], "{app_id}")
        response = await admin.get(path)
        assert response.status_code == 200
        assert_conforms(document, document["paths"][template]["get"], response, path)


async def test_the_docs_page_renders(registry: Running) -> None:
    docs = await registry.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert "/openapi.json" in docs.text
