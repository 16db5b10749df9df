"""schemathesis against the live /api/schema, as an operator, as a customer and with no token.

It must find no 5xx and no answer outside the schema: every status, content type, header and body an
operation answers with is one the schema declares, and an operation that declares the bearer scheme does not
answer without it. The run is bounded (FUZZ_MAX_EXAMPLES per operation and phase), about 20 s per token kind.

Known noise, tolerated by name: on CPython 3.11.7, Hypothesis sometimes fails inside `ast.parse` while it
describes one of schemathesis's own filter lambdas ("AST constructor recursion depth mismatch", a CPython bug
fixed in 3.11.8). That is an error of the fuzzer, not an answer of the API; any other error fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.core.management import call_command

from config.access.services import api_token_create

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "ignored_auth",
    ]
)
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "25")
FUZZER_BUGS = ("AST constructor recursion depth mismatch",)


def schemathesis(url: str, report: Path, *headers: str) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{url}/api/schema",
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--max-failures",
        "50",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        "--no-color",
    ]
    for header in headers:
        command += ["--header", header]
    # Its own directory: schemathesis keeps state in ./.schemathesis/.
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=report.parent)


def problems(report: Path) -> list[str]:
    """Every failure, and every error that is not a known bug of the fuzzer, from the JUnit report."""
    found = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for failure in case.findall("failure"):
            found.append(f"{case.get('name')}: {failure.get('message') or failure.text}"[:3000])
        for error in case.findall("error"):
            text = f"{error.get('message')} {error.text}"
            if not any(bug in text for bug in FUZZER_BUGS):
                found.append(f"{case.get('name')}: error {text}"[:3000])
    return found


@pytest.mark.parametrize("who", ["operator", "customer", "nobody"])
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(live_server, settings, tmp_path, who):
    # given: the demo catalogue and accounts, so that generated orders can also succeed
    call_command("seed_demo")
    settings.API_CUSTOMER_ORDER_RATE = "20/s"  # reached now and then: 429s are checked against the schema too
    settings.API_OPERATOR_ORDER_RATE = "off"
    headers = {
        "operator": [f"Authorization: Bearer {api_token_create(role='operator', by='fuzz').token}"],
        "customer": [
            f"Authorization: Bearer {api_token_create(role='customer', customer_id='alice', by='fuzz').token}"
        ],
        "nobody": [],
    }[who]
    report = tmp_path / "junit.xml"

    # when
    result = schemathesis(live_server.url, report, *headers)

    # then
    assert report.exists(), result.stdout[-5000:] + result.stderr[-3000:]
    found = problems(report)
    assert not found, "\n\n".join(found) + "\n\n" + result.stdout[-8000:]
    assert "generated" in result.stdout, result.stdout[-3000:]
