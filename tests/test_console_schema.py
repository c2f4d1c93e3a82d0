"""Schemathesis against the console's own OpenAPI schema: generated requests (valid and
not) to every operation, as an admin, on a real TimescaleDB; no answer is a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from reporting.console.app import create_app
from reporting.console.auth import issue_token
from store.timescale import TimescaleStore

#: The live stream never ends by itself: it has its own tests.
SKIP = {"GET /events/stream"}


@pytest.fixture(scope="module")
def console(timescaledb):
    store = TimescaleStore(timescaledb.fresh_database())
    store.migrate()
    token = issue_token(store, "fuzzer", "admin")
    app = create_app(store)
    yield app, {"Authorization": f"Bearer {token}"}
    store.close()


def _answering(auth: dict, label: str):
    def answer(case) -> None:
        response = case.call(headers=auth)
        assert response.status_code < 500, (label, case.path_parameters, case.query,
                                            response.status_code, response.text[:300])  # fmt: skip

    return answer


def test_no_generated_request_makes_a_server_error(console):
    app, auth = console
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    checked = []
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        if label in SKIP:
            continue

        run = settings(max_examples=40, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))(
            given(case=operation.as_strategy())(_answering(auth, label))
        )  # fmt: skip
        run()
        checked.append(label)
    assert len(checked) >= 10, checked
