"""Property-based API testing against the project's own OpenAPI schema (schemathesis).

Bounded: a few examples per operation, no deadline; checks that no input produces a 500 and
that every response matches the schema and content type the schema declares.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from diary_project.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def bearer(db, django_user_model, finished_entry):
    from diaries.services import api_key_create

    # The finished entry's owner: real ids exist for the detail endpoints to find.
    return {"Authorization": f"Bearer {api_key_create(user=finished_entry.owner)[1]}"}


@pytest.fixture(autouse=True)
def _wsgi_calls_in_the_test_transaction():
    """Like Django's test client: keep the test's connection open across WSGI requests; no throttling."""
    from django.core.cache import cache
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    cache.clear()
    yield
    cache.clear()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.exclude(path_regex="/audio$").parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@pytest.mark.django_db
def test_api_never_errors_and_matches_its_schema(case, bearer):
    response = case.call(headers=bearer)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance, content_type_conformance])
