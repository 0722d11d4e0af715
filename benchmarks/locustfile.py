"""Load-test your own logic tier with locust: POST one body to /get_score, again and again.

    make loadtest URL=http://127.0.0.1:5000 BODY=examples/credit/requests/one_applicant.json \
        [PIPELINE=credit USERS=16 DURATION=30s OUT=run/loadtest]

or directly (from .venv-bench, where locust lives):

    .venv-bench/bin/locust -f benchmarks/locustfile.py --headless --host URL \
        --body request.json [--pipeline NAME] --users 16 --spawn-rate 16 --run-time 30s \
        --csv out/locust --html out/report.html

--body is a JSON file shaped like a /get_score request ({"data": [...]}); --pipeline sets its
"model" field (which pipeline scores it). A response counts as a failure unless it is HTTP
200 with "code": 200, so a tier that answers quickly with errors does not look healthy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, events, task


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--body", default="", help="JSON file with a /get_score request body")
    parser.add_argument("--pipeline", default="", help='pipeline name: sets the body\'s "model"')
    parser.add_argument("--path", default="/get_score", help="request path (default /get_score)")


def load_body(path: str, pipeline: str = "") -> bytes:
    """The request body from `path`, with "model" set to `pipeline` when one is given."""
    if not path:
        raise ValueError('--body is required: a JSON file shaped like {"data": [...]}')
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"--body {path}: cannot read it ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"--body {path}: not JSON ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError(f'--body {path}: expected an object with a "data" list of records')
    if pipeline:
        document["model"] = pipeline
    return json.dumps(document).encode()


@events.init.add_listener
def _check_body(environment: Any, **_: Any) -> None:
    """Fail at start with one line when the body is unusable, not with a thousand errors."""
    options = environment.parsed_options
    if options is None:  # locust used as a library: the caller sets ScoreUser.body itself
        return
    try:
        ScoreUser.body = load_body(options.body, options.pipeline)
    except ValueError as exc:
        raise SystemExit(f"locustfile: {exc}") from None
    ScoreUser.path = options.path


class ScoreUser(FastHttpUser):
    """One client sending the same request back to back (no think time)."""

    wait_time = constant(0)
    body: bytes = b""
    path: str = "/get_score"

    @task
    def get_score(self) -> None:
        with self.client.post(
            self.path,
            data=self.body,
            headers={"Content-Type": "application/json"},
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                code = response.json().get("code")
            except ValueError:
                response.failure("answer is not JSON")
                return
            if code != 200:
                response.failure(f'"code" is {code!r}, not 200')
