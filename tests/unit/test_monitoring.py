"""The monitoring that ships in deploy/: Prometheus's config and alert rules, and the Grafana dashboard.

promtool (Debian's `prometheus` package) checks the rules and the config and runs the rules' unit tests. Without
it these tests skip with the install line, except in CI (CI=true), where they fail: CI installs it. That every
metric named here is one the code exports is tests/integration/test_monitoring.py (it needs the database).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.contrib import admin
from django.urls import Resolver404, resolve
from django.utils.text import capfirst

ROOT = Path(__file__).resolve().parent.parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
INSTALL_HINT = "promtool is not installed; to run the Prometheus rule tests: apt-get install -y prometheus"


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def rule_tests() -> list[dict]:
    return yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{INSTALL_HINT}; CI must run the rule tests")
        pytest.skip(INSTALL_HINT)
    return path


def run_promtool(promtool: str, *args: str) -> str:
    done = subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


# --- promtool ------------------------------------------------------------------------------------------------


def test_promtool_accepts_every_alert_rule(promtool):
    output = run_promtool(promtool, "check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_the_alert_rules_pass_their_unit_tests(promtool):
    output = run_promtool(promtool, "test", "rules", "alerts_test.yml")
    assert "SUCCESS" in output


def test_promtool_accepts_the_prometheus_config_and_the_rule_files_it_loads(promtool):
    output = run_promtool(promtool, "check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in output


# --- what the rules say --------------------------------------------------------------------------------------


def test_every_alert_is_tested_where_it_fires_and_where_it_must_not():
    cases = [case for test in rule_tests() for case in test["alert_rule_test"]]
    for rule in alert_rules():
        name = rule["alert"]
        assert any(case["alertname"] == name and case["exp_alerts"] for case in cases), f"{name} never fires"
        assert any(case["alertname"] == name and not case["exp_alerts"] for case in cases), \
            f"{name} is never shown silent"


def test_the_rule_tests_load_the_rules_that_ship():
    assert yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["rule_files"] == ["alerts.yml"]
    assert yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["rule_files"] == ["alerts.yml"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_waits_has_a_severity_and_says_what_happened(rule):
    assert re.fullmatch(r"\d+[smh]", rule["for"]), "a blip must not page anyone"
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["description"]) > 80


def admin_pages() -> set[str]:
    """The names of the admin's lists, as its index shows them: 'Dead letters', 'Worker heartbeats'."""
    return {str(capfirst(model._meta.verbose_name_plural)) for model in admin.site._registry}


def named_places(description: str) -> list[str]:
    """The admin pages ('Admin → Dead letters') and endpoints ('GET /health') a description sends one to."""
    pages = admin_pages()
    places = []
    for mention in description.split("Admin → ")[1:]:
        page = next((page for page in sorted(pages, key=len, reverse=True) if mention.startswith(page)), None)
        assert page, f"no admin page called {mention[:30]!r}…"
        places.append(page)
    for path in re.findall(r"GET (/[\w/]*)", description):
        try:
            resolve(path)
        except Resolver404:
            pytest.fail(f"the description names GET {path}, which is not served")
        places.append(path)
    return places


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_tells_the_operator_where_to_look(rule):
    assert named_places(rule["annotations"]["description"])


def test_the_check_of_where_to_look_knows_a_page_that_does_not_exist():
    with pytest.raises(AssertionError, match="no admin page"):
        named_places("Look at Admin → Sagas, then Admin → Saga heartbeats.")
    assert named_places("Look at Admin → Dead letters and GET /health.") == ["Dead letters", "/health"]
