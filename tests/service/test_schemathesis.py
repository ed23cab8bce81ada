"""The API against its own OpenAPI document: requests generated from the schema (schemathesis)
must never crash the server, and every answer must match what the document declares."""

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from preftune.service.app import create_app

PAIRS = json.dumps({"prompt": "q", "chosen": "yes", "rejected": "no"}).encode() + b"\n"


@pytest.fixture
def app(db, store):
    # No rate limit: the generated requests come faster than any real client's.
    return create_app(db, store, rate_limit_per_minute=0)


@pytest.fixture
def api_schema(app, keys):
    """The schema, with half the generated file and job ids replaced by real ones of alice's:
    random ids alone would only ever reach the 404 paths.

    Loading it starts the app's lifespan (its validator thread moves the job on meanwhile);
    schemathesis keeps that running until told to stop it.
    """
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {keys.alice}"}
    file_id = client.post("/v1/files", headers=headers, data={"purpose": "fine-tune"},
                          files={"file": ("a.jsonl", PAIRS)}).json()["id"]
    job_id = client.post("/v1/fine_tuning/jobs", headers=headers,
                         json={"model": "tiny", "training_file": file_id}).json()["id"]
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)

    @loaded.hook
    def flatmap_path_parameters(context, path_parameters):
        if not path_parameters:
            return st.just(path_parameters)
        real = {"file_id": file_id, "job_id": job_id}
        return st.sampled_from([path_parameters, {k: real.get(k, v)
                                                  for k, v in path_parameters.items()}])

    yield loaded
    shutdown_lifespans()  # before the database goes away under the validator


# Each operation gets its own Hypothesis run through the public ``as_strategy`` API, not
# schemathesis' pytest plugin, which breaks with newer pytest releases.
def _run(strategy, headers):
    @given(case=strategy)
    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def check(case):
        case.call_and_validate(
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance, status_code_conformance])

    check()


def test_the_api_keeps_to_its_schema(api_schema, keys):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15  # every route is in the document
    headers = {"Authorization": f"Bearer {keys.alice}"}
    for operation in operations:
        try:
            _run(operation.as_strategy(), headers)
        except Exception as e:
            raise AssertionError(f"{operation.label}: {e}") from e


def test_the_schema_declares_bearer_auth_and_openai_errors(app):
    document = TestClient(app).get("/openapi.json").json()
    assert document["info"]["title"] == "preftune"
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    create = document["paths"]["/v1/fine_tuning/jobs"]["post"]
    assert create["security"] == [{"HTTPBearer": []}]
    for status in ("400", "401", "413", "422", "429"):
        assert create["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"}
    assert "security" not in document["paths"]["/healthz"]["get"]
