from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from lyssna.common.auth import FASTAPI_NO_PUBLIC_DOCS, add_protected_openapi, api_key_dependency


def make_app(keys):
    app = FastAPI(**FASTAPI_NO_PUBLIC_DOCS)
    require_key = api_key_dependency(keys, "test")
    add_protected_openapi(app, require_key)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/v1/thing", dependencies=[Depends(require_key)])
    def thing():
        return {"ok": True}

    return TestClient(app)


def test_every_key_works_and_others_are_refused():
    client = make_app(["k1", "k2"])
    assert client.get("/v1/thing", headers={"Authorization": "Bearer k2"}).status_code == 200
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k1"}):
        r = client.get("/v1/thing", headers=headers)
        assert r.status_code == 401 and "Bearer" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200


def test_openapi_needs_the_key_and_there_is_no_public_docs_page():
    client = make_app(["k1"])
    assert client.get("/openapi.json").status_code == 401
    doc = client.get("/openapi.json", headers={"Authorization": "Bearer k1"}).json()
    assert "/v1/thing" in doc["paths"]
    assert client.get("/docs").status_code == 404


def test_without_configured_keys_everything_is_refused_with_the_fix():
    r = make_app([]).get("/v1/thing", headers={"Authorization": "Bearer "})
    assert r.status_code == 401 and "set LYSSNA_API_KEY for the test service" in r.json()["detail"]
