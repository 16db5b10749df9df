"""The monitoring that ships in deploy/: Prometheus's config and alert rules, and the Grafana dashboard.

promtool (Debian's `prometheus` package) checks the rules and the config and runs the rules' unit tests. Without
it these tests skip with the install line, except in CI (CI=true), where they fail: CI installs it. The queries
are read with a real PromQL parser. That every metric they name is one the code exports is
tests/integration/test_monitoring.py (it needs the database); the helpers that read the queries are here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import promql_parser
import pytest
import yaml
from django.contrib import admin
from django.urls import Resolver404, resolve
from django.utils.text import capfirst

ROOT = Path(__file__).resolve().parent.parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "sagaflow.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Grafana's own variables, replaced by a duration of the right kind so that the query parses.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "6h"}
# Series that Prometheus itself writes for each target, with the labels it gives them.
PROMETHEUS_SERIES = {"up": {"job", "instance"}}
TARGET_LABELS = {"job", "instance"}
INSTALL_HINT = "promtool is not installed; to run the Prometheus rule tests: apt-get install -y prometheus"


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def rule_tests() -> list[dict]:
    return yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def scrape_jobs() -> set[str]:
    return {job["job_name"] for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}


# --- reading the queries -------------------------------------------------------------------------------------


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every query that ships: the alert rules, the dashboard's panels and its variables."""
    found = [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    for panel in panels():
        found += [(f"panel {panel['title']!r}", target["expr"]) for target in panel["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label): the metric is a query of its own, the label one of its labels.
            metric, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"]).groups()
            found.append((f"variable {variable['name']}", f"count by ({label}) ({metric})"))
    return found


def parse(query: str) -> promql_parser.Expr:
    for variable, duration in GRAFANA_INTERVALS.items():
        query = query.replace(variable, duration)
    return promql_parser.parse(query)


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: dict[str, str]  # label -> the value or pattern it is compared with


def selectors(query: str) -> list[Selector]:
    """The series a query selects, by metric name."""
    found: list[Selector] = []

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = [*node.matchers.matchers, *(m for group in node.matchers.or_matchers for m in group)]
            names = [node.name] if node.name else [m.value for m in matchers if m.name == "__name__"]
            assert len(names) == 1, f"a selector without one metric name: {node}"
            found.append(Selector(names[0], {m.name: m.value for m in matchers if m.name != "__name__"}))

    promql_parser.walk(parse(query), visit)
    return found


def labels_used(query: str) -> set[str]:
    """Every label a query names: in matchers, `by`/`without`, `on`/`ignoring` and `group_left`/`group_right`."""
    used = {label for selector in selectors(query) for label in selector.matchers}

    def visit(node) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            used.update(node.modifier.labels)
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                used.update(node.modifier.matching.labels)
            used.update(node.modifier.group_labels or ())

    promql_parser.walk(parse(query), visit)
    return used


def test_the_query_reader_finds_names_and_labels_wherever_promql_puts_them():
    query = (
        'sum by (reason) (rate(a_total{job="w"}[$__rate_interval])) / ignoring(reason) group_left '
        'sum(rate({__name__="b_total", status=~"open|x"}[5m])) > 0 or absent(up{instance="i"})'
    )
    assert [s.name for s in selectors(query)] == ["a_total", "b_total", "up"]
    assert selectors(query)[1].matchers == {"status": "open|x"}
    assert labels_used(query) == {"reason", "job", "status", "instance"}
    assert labels_used("sum without (le) (x) * on (consumer) group_right (outcome) y") == {"le", "consumer", "outcome"}


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
        assert any(case["alertname"] == name and not case["exp_alerts"] for case in cases), (
            f"{name} is never shown silent"
        )


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


@pytest.mark.parametrize(
    "rule, setting",
    [("SagaflowOutboxLag", "HEALTH_OUTBOX_LAG_MAX_S"), ("SagaflowWorkerSilent", "HEALTH_WORKER_MAX_SILENCE_S")],
)
def test_an_alert_and_the_health_check_of_the_same_condition_share_a_threshold(rule, setting):
    from django.conf import settings

    (expr,) = [r["expr"] for r in alert_rules() if r["alert"] == rule]
    comparison = parse(expr)
    assert isinstance(comparison.rhs, promql_parser.NumberLiteral)
    assert comparison.rhs.val == getattr(settings, setting)


# --- the queries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where, query", queries(), ids=[where for where, _ in queries()])
def test_every_query_parses_and_names_only_the_jobs_that_are_scraped(where, query):
    for selector in selectors(query):
        if "job" in selector.matchers:
            jobs = set(selector.matchers["job"].split("|"))
            assert jobs <= scrape_jobs(), f"{where} names jobs {sorted(jobs - scrape_jobs())}"


def test_the_dashboard_uses_only_variables_it_defines():
    defined = {variable["name"] for variable in dashboard()["templating"]["list"]}
    for where, query in queries():
        used = {name for name in re.findall(r"\$\{?(\w+)", query) if not name.startswith("__")}  # $__: Grafana's
        assert used <= defined, f"{where} uses {sorted(used - defined)}"


# --- the dashboard -------------------------------------------------------------------------------------------


def test_the_dashboard_is_of_the_current_schema_and_imports_anywhere():
    board = dashboard()
    assert board["schemaVersion"] == 42  # Grafana 12.1 and later
    assert board["uid"] == "sagaflow-overview" and board["id"] is None
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    source = variables["DS_PROMETHEUS"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")


def test_every_panel_and_query_reads_the_chosen_prometheus():
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE


def test_the_panels_have_their_own_ids_and_places_on_the_grid():
    board = dashboard()["panels"]
    assert len({panel["id"] for panel in board}) == len(board)
    cells = set()
    for panel in board:
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]
        covered = {
            (x, y)
            for x in range(place["x"], place["x"] + place["w"])
            for y in range(place["y"], place["y"] + place["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered


def test_every_panel_says_what_it_shows():
    assert all(len(panel.get("description", "")) > 20 for panel in panels())
