"""schemathesis against the logic tier's own GET /openapi.json, on a real process.

Every operation the document lists is exercised with requests generated from it: valid ones
(positive: they must be accepted) and ones that break it (negative: they must be refused with
a 4xx). Every answer must be JSON whose `code` equals the HTTP status, never a 5xx, with a
status the document lists and a body matching its schema; the process serves on afterwards.
"""

from __future__ import annotations

from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from tests.faults.conftest import FULL, record

pytestmark = pytest.mark.fault

EXAMPLES = 500 if FULL else 50  # per operation and generation mode
# A request the document forbids must be refused with one of the 4xx the document lists for
# refusals (schemathesis's default list has no 413: too many rows is one).
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 404, 413, 415]}}}
)


def _settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not FULL,  # the CI slice is reproducible; the full run explores
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def json_code_is_status(ctx, response, case) -> bool | None:
    """The service's own rule: every answer is JSON whose `code` repeats the HTTP status."""
    assert response.headers["content-type"][0].startswith("application/json"), response.headers
    payload = response.json()
    assert isinstance(payload, dict) and payload.get("code") == response.status_code, payload
    return None


def _expressible(case) -> bool:
    """False for columns of different lengths: the one rule of the document JSON Schema cannot
    state (the service answers it with a 400 naming it), so positive cases must not break it."""
    data = case.body.get("data") if isinstance(case.body, dict) else None
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(v, list) for v in data.values())
    ):
        return True
    return len({len(values) for values in data.values()}) == 1


def _exercise(operation, mode: GenerationMode, url: str, session, seen: Counter[str]) -> None:
    """EXAMPLES generated requests for one operation; every schemathesis check plus ours."""
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:
        strategy = strategy.filter(_expressible)

    @_settings()
    @given(case=strategy)
    def check(case) -> None:
        response = case.call_and_validate(
            base_url=url, session=session, timeout=30, additional_checks=[json_code_is_status]
        )
        seen[f"{operation.method.upper()} {mode.value} {response.status_code}"] += 1

    check()


def test_logic_service_conforms_to_its_openapi_document(fault_bed, logic) -> None:
    schema = schemathesis.openapi.from_url(logic.url + "/openapi.json", config=CONFIG, timeout=30)
    session = requests.Session()
    seen: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.body or operation.query or operation.headers:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            _exercise(operation, mode, logic.url, session, seen)

    # Methods the document does not list for a path: JSON 405 naming the allowed ones.
    for path, item in schema.raw_schema["paths"].items():
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - {m.upper() for m in item}:
            response = session.request(method, logic.url + path, timeout=30)
            seen[f"undocumented method {response.status_code}"] += 1
            assert response.status_code == 405, (method, path, response.text[:200])
            assert response.json()["code"] == 405
            allowed = {m.strip() for m in response.headers["Allow"].split(",")}
            assert {m.upper() for m in item} <= allowed, (path, allowed)

    good = requests.post(logic.url + "/get_score", json={"data": fault_bed.records(2)}, timeout=30)
    record(
        "schemathesis against /openapi.json",
        requests=sum(seen.values()),
        outcomes=dict(sorted(seen.items())),
    )
    assert logic.alive()
    assert good.status_code == 200, good.text
