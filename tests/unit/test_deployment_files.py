"""The deployment files name only things that exist: Dockerfile, docker-compose.yml and the Prometheus and
Grafana files of deploy/ it mounts, .dockerignore, `make run`.

Docker is not needed: the files are parsed and every command, module, path and URL they name is checked
against the project. No database either.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import pytest
import yaml
from django.conf import settings
from django.urls import resolve

ROOT = Path(__file__).resolve().parent.parent.parent
APP_SERVICES = ("web", "web-async", "worker", "beat")
ENV_HELPERS = {"env_str", "env_bool", "env_number", "env_choice", "env_rate"}


# --- readers -----------------------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service(name: str) -> dict:
    return compose()["services"][name]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def instructions(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile() if kw == keyword]


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    return steps[last_from:]


def command(value: str | list[str]) -> list[str]:
    """A Dockerfile or compose command as argv; exec form (JSON or YAML list) or shell form."""
    if isinstance(value, list):
        return [str(part) for part in value]
    value = value.strip()
    if value.startswith("["):
        return [str(part) for part in yaml.safe_load(value)]
    return shlex.split(value)


def shell_words(argv: list[str]) -> list[str]:
    """`sh -c "exec gunicorn …"` read as the command it runs."""
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2])
    return argv[1:] if argv and argv[0] == "exec" else argv


def image_command() -> list[str]:
    return shell_words(command(instructions("CMD")[-1]))


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    return any(
        fnmatch.fnmatch(path, pattern)
        or fnmatch.fnmatch(path, pattern.removeprefix("**/"))
        or path.startswith(pattern.rstrip("/") + "/")
        for pattern in dockerignore()
    )


def local_apps() -> list[str]:
    return [app for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()]


def environment_variables_read_by_settings() -> set[str]:
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        func = node.func
        is_helper = isinstance(func, ast.Name) and func.id in ENV_HELPERS
        is_environ = (
            isinstance(func, ast.Attribute)
            and func.attr in {"get", "getenv"}
            and (ast.unparse(func.value) in {"os.environ", "os"})
        )
        if is_helper or is_environ:
            names.add(node.args[0].value)
    return names


# --- the Celery, WSGI and manage.py entry points -------------------------------------------------------------


def assert_celery_command(argv: list[str], subcommand: str) -> None:
    from celery.app.utils import find_app
    from celery.bin.celery import celery as celery_cli

    assert argv[0] == "celery", argv
    app_index = argv.index("-A") + 1
    app = find_app(argv[app_index])
    assert app.main == "sagaflow"
    assert argv[app_index + 1] == subcommand
    assert subcommand in celery_cli.commands


def assert_application_module(module: str) -> None:
    name, _, attribute = module.partition(":")
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, f"no module {name}"
    # Read, not imported: importing config.wsgi starts the embedded transport.
    tree = ast.parse(Path(spec.origin).read_text())
    assigned = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert (attribute or "application") in assigned


def test_the_image_serves_config_wsgi_with_gunicorn_on_port():
    argv = image_command()
    assert argv[0] == "gunicorn"
    assert_application_module(argv[1])
    assert argv[argv.index("--bind") + 1] == "0.0.0.0:${PORT:-8000}"


def test_worker_and_beat_run_the_celery_app_of_config():
    assert_celery_command(command(service("worker")["command"]), "worker")
    assert_celery_command(command(service("beat")["command"]), "beat")


def test_migrate_runs_manage_py_migrate():
    argv = command(service("migrate")["command"])
    assert argv[:3] == ["python", "manage.py", "migrate"]
    assert (ROOT / "manage.py").is_file()


def test_web_runs_the_image_command_and_serves_the_port_it_publishes():
    web = service("web")
    assert "command" not in web
    published = {str(port).split(":")[-1] for port in web["ports"]}
    assert str(web["environment"].get("PORT", 8000)) in published


def test_web_async_serves_config_asgi_with_uvicorn_on_the_port_it_publishes_and_checks():
    web_async = service("web-async")
    argv = command(web_async["command"])
    assert argv[:2] == ["uvicorn", "config.asgi:application"]
    assert importlib.util.find_spec("uvicorn") is not None, "requirements.txt installs uvicorn"
    assert_application_module(argv[1])  # the module assigns the application it names
    assert argv[argv.index("--lifespan") + 1] == "off", "Django's ASGI handler takes HTTP only"
    port = argv[argv.index("--port") + 1]
    assert {str(p).split(":")[-1] for p in web_async["ports"]} == {port}
    assert f"127.0.0.1:{port}/health/live" in " ".join(command(web_async["healthcheck"]["test"]))


# --- Dockerfile ----------------------------------------------------------------------------------------------


def test_the_image_is_built_in_two_stages_on_python_3_11_slim():
    stages = instructions("FROM")
    assert len(stages) >= 2
    builder = stages[0].split()
    assert builder[-2].upper() == "AS"
    assert stages[-1].split()[0] == "python:3.11-slim"
    copies_from_builder = [c for kw, c in final_stage() if kw == "COPY" and c.startswith(f"--from={builder[-1]}")]
    assert copies_from_builder, "the final stage takes the venv from the builder"


def test_the_builder_installs_requirements_txt_into_a_venv():
    runs = " ".join(instructions("RUN"))
    assert "python -m venv" in runs
    assert "pip install -r" in runs and "requirements.txt" in runs
    assert (ROOT / "requirements.txt").is_file()


def test_every_path_the_dockerfile_copies_exists_and_is_not_ignored():
    for arguments in instructions("COPY"):
        words = [w for w in shlex.split(arguments) if not w.startswith("--")]
        if arguments.startswith("--from="):
            continue
        for source in words[:-1]:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such path"
            if source != ".":
                assert not ignored(source), f"COPY {source}, but .dockerignore leaves it out"


def test_the_image_runs_as_a_user_that_is_not_root():
    users = [rest for kw, rest in final_stage() if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    steps = final_stage()
    user_at = max(i for i, (kw, _) in enumerate(steps) if kw == "USER")
    cmd_at = max(i for i, (kw, _) in enumerate(steps) if kw == "CMD")
    assert user_at < cmd_at


def test_static_files_are_collected_at_build_time_with_a_throwaway_secret_key():
    collect = [run for run in instructions("RUN") if "collectstatic" in run]
    assert collect and "manage.py collectstatic --noinput" in collect[0]
    assert "SECRET_KEY=" in collect[0], "a build-only key, set for this step only"
    assert not any("SECRET_KEY" in env for env in instructions("ENV")), "no key baked into the image"


def test_the_healthcheck_asks_readiness_with_urllib_and_the_path_is_served():
    # Readiness (database and broker), not /health: a stopped worker must not mark the web container unhealthy.
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "urllib.request" in healthcheck and "curl" not in healthcheck
    url = re.search(r"https?://[^'\"\s]+", healthcheck).group(0)
    path = urlsplit(url.replace("%s", "8000")).path
    assert path == "/health/ready"
    assert resolve(path).url_name == "health-ready"


# --- .dockerignore -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [".venv", ".git", "db.sqlite3", "db.sqlite3-wal", "orders/__pycache__"])
def test_dockerignore_leaves_out_local_state(path):
    assert ignored(path)


def test_dockerignore_keeps_everything_the_application_needs():
    needed = ["manage.py", "requirements.txt", "gunicorn.conf.py", "config", *local_apps()]
    assert not [path for path in needed if ignored(path)]


# --- docker-compose.yml --------------------------------------------------------------------------------------


def test_postgres_and_rabbitmq_report_their_health():
    postgres, rabbitmq = service("postgres"), service("rabbitmq")
    assert "pg_isready" in command(postgres["healthcheck"]["test"])
    assert rabbitmq["image"] == "rabbitmq:3-management"
    assert command(rabbitmq["healthcheck"]["test"])[1:2] == ["rabbitmq-diagnostics"]
    assert "ping" in command(rabbitmq["healthcheck"]["test"])
    assert any(str(port).endswith("15672") for port in rabbitmq["ports"])


def test_migrate_waits_for_a_healthy_postgres_and_runs_once():
    migrate = service("migrate")
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_web_worker_and_beat_start_after_healthy_services_and_a_finished_migrate(name):
    depends_on = service(name)["depends_on"]
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["rabbitmq"]["condition"] == "service_healthy"
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", ("migrate", *APP_SERVICES))
def test_every_application_service_builds_this_dockerfile_and_has_its_settings(name):
    spec = service(name)
    assert (ROOT / spec["build"] / "Dockerfile").is_file()
    assert {"DATABASE_URL", "BROKER_URL", "SECRET_KEY"} <= set(spec["environment"])


def test_the_urls_point_at_the_compose_postgres_and_rabbitmq_with_their_credentials():
    env = service("web")["environment"]
    postgres = service("postgres")["environment"]
    database = dj_database_url.parse(env["DATABASE_URL"])
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["USER"], database["PASSWORD"], database["NAME"]) == (
        "postgres",
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    broker = urlsplit(env["BROKER_URL"])
    rabbitmq = service("rabbitmq")["environment"]
    assert (broker.scheme, broker.hostname) == ("amqp", "rabbitmq")
    assert (broker.username, broker.password) == (rabbitmq["RABBITMQ_DEFAULT_USER"], rabbitmq["RABBITMQ_DEFAULT_PASS"])
    assert broker.username != "guest", "RabbitMQ refuses guest from any host but localhost"


# --- make run and the README ---------------------------------------------------------------------------------


def test_make_run_calls_the_run_script():
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/run.py" in makefile
    assert (ROOT / "scripts" / "run.py").is_file()


@pytest.mark.parametrize("given", ["DATABASE_URL", "BROKER_URL"])
def test_make_run_refuses_one_url_without_the_other(given):
    env = {"PATH": "/usr/bin:/bin", given: "postgres://nowhere/x" if given == "DATABASE_URL" else "amqp://nowhere"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run.py")], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert given in result.stderr and "is not" in result.stderr


def test_the_readme_lists_every_setting_the_settings_read():
    readme = (ROOT / "README.md").read_text()
    missing = sorted(name for name in environment_variables_read_by_settings() if f"`{name}`" not in readme)
    assert not missing, f"README.md does not list {missing}"


# --- the web's process model (gunicorn.conf.py) ------------------------------------------------------------


def gunicorn_config(env: dict[str, str], *flags: str) -> tuple[dict[str, str], str]:
    """What `gunicorn config.wsgi` resolves with this environment (gunicorn's own --print-config), and its
    stderr."""
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "BROKER_URL", "WEB_CONCURRENCY", "WEB_THREADS", "GUNICORN_CMD_ARGS"}
    }
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", *flags, "config.wsgi"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    resolved = dict(line.split(" = ", 1) for line in done.stdout.splitlines() if " = " in line)
    return {key.strip(): value.strip() for key, value in resolved.items()}, done.stderr


PRODUCTION = {
    "DATABASE_URL": "postgres://sagaflow@db-host:5432/sagaflow",
    "BROKER_URL": "amqp://mq-host//",
    "SECRET_KEY": "k3y-" + "abcdefghij" * 6,
}


def test_the_production_web_serves_from_two_processes_of_four_threads_unless_told_otherwise():
    config, _ = gunicorn_config(PRODUCTION)
    assert (config["workers"], config["threads"]) == ("2", "4")

    config, _ = gunicorn_config({**PRODUCTION, "WEB_CONCURRENCY": "5", "WEB_THREADS": "2"})
    assert (config["workers"], config["threads"]) == ("5", "2")

    config, _ = gunicorn_config({**PRODUCTION, "WEB_CONCURRENCY": "5"}, "--workers", "3", "--threads", "1")
    assert (config["workers"], config["threads"]) == ("3", "1")


def test_the_embedded_web_is_one_process_whatever_web_concurrency_says():
    config, stderr = gunicorn_config({})
    assert (config["workers"], config["threads"]) == ("1", "8")
    assert "WEB_CONCURRENCY" not in stderr

    config, stderr = gunicorn_config({"WEB_CONCURRENCY": "4", "WEB_THREADS": "3"})
    assert (config["workers"], config["threads"]) == ("1", "3")
    assert "WEB_CONCURRENCY is ignored in the embedded mode" in stderr


def test_a_malformed_process_count_stops_gunicorn_with_the_variable_named():
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "config.wsgi"],
        cwd=ROOT,
        env={**PRODUCTION, "PATH": "/usr/bin:/bin", "WEB_THREADS": "many"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "WEB_THREADS must be a int, got 'many'" in done.stderr


# --- Prometheus and Grafana (docker-compose.yml and deploy/) ---------------------------------------------------

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"


def bind_mounts(name: str) -> dict[str, Path]:
    """{path in the container: path here} of a service's bind mounts (`./host:/container[:ro]`)."""
    mounts = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def host_path(name: str, container_path: str) -> Path:
    """Where a path inside a service's container comes from here, through its bind mounts."""
    for target, source in bind_mounts(name).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / os.path.relpath(container_path, target)
    raise AssertionError(f"{container_path} is not mounted into {name}")


def interpolated(value: str) -> str:
    """A compose value as compose gives it when the variables are not set: `${NAME:-default}` is the default."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)


def scrape_config() -> dict[str, dict]:
    return {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}


def published(name: str) -> dict[int, str]:
    """{container port: host address} of a service's published ports (`[address:]host:container`)."""
    ports = {}
    for port in service(name)["ports"]:
        *address, _host, container = str(port).split(":")
        ports[int(container)] = address[0] if address else "0.0.0.0"
    return ports


@pytest.mark.parametrize("name, image", [("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")])
def test_prometheus_and_grafana_run_official_images_at_a_pinned_version(name, image):
    repository, _, tag = service(name)["image"].partition(":")
    assert repository == image
    assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a version, not {tag or 'latest'}"


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_every_monitoring_volume_is_a_path_of_the_project_or_a_declared_volume(name):
    declared = set(compose()["volumes"])
    for volume in service(name)["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        else:
            assert source in declared, f"{name} uses the volume {source}, which is not declared"


def test_prometheus_runs_the_config_and_the_rules_of_deploy():
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in service("prometheus")["command"])
    config_in_container = flags["config.file"]
    assert host_path("prometheus", config_in_container) == PROMETHEUS_CONFIG
    for rules in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]:
        in_container = os.path.join(os.path.dirname(config_in_container), rules)
        assert host_path("prometheus", in_container) == ROOT / "deploy" / "prometheus" / "alerts.yml"


def test_prometheus_scrapes_the_web_by_its_service_name_on_the_port_it_serves_metrics():
    job = scrape_config()["sagaflow-web"]
    (target,) = [target for group in job["static_configs"] for target in group["targets"]]
    host, port = target.split(":")
    assert host == "web" and int(port) == int(service("web")["environment"]["PORT"])
    assert resolve(job.get("metrics_path", "/metrics")).url_name == "metrics"
    allowed = interpolated(service("web")["environment"]["ALLOWED_HOSTS"]).split(",")
    assert host in allowed, "Django would answer Prometheus 400: the host it scrapes by is not allowed"


def test_prometheus_scrapes_the_asgi_server_by_its_service_name_on_the_port_it_serves():
    job = scrape_config()["sagaflow-web-async"]
    (target,) = [target for group in job["static_configs"] for target in group["targets"]]
    host, port = target.split(":")
    command = service("web-async")["command"]
    assert host == "web-async" and command[command.index("--port") + 1] == port
    assert resolve(job.get("metrics_path", "/metrics")).url_name == "metrics"
    allowed = interpolated(service("web-async")["environment"]["ALLOWED_HOSTS"]).split(",")
    assert host in allowed, "Django would answer Prometheus 400: the host it scrapes by is not allowed"


def test_prometheus_scrapes_every_worker_replica_on_its_metrics_port():
    worker = service("worker")
    port = int(worker["environment"]["METRICS_WORKER_PORT"])
    assert port > 0, "a worker serves no metrics without METRICS_WORKER_PORT"
    assert str(port) in [str(exposed) for exposed in worker.get("expose", [])]
    (discovery,) = scrape_config()["sagaflow-worker"]["dns_sd_configs"]
    # The service name resolves to every container of the service: each replica is one target.
    assert (discovery["names"], discovery["type"], discovery["port"]) == (["worker"], "A", port)
    serving = {
        name
        for name, spec in compose()["services"].items()
        if int(spec.get("environment", {}).get("METRICS_WORKER_PORT", 0) or 0)
    }
    assert serving == {"worker"}, "every service with a metrics port is scraped"


def test_grafana_reads_the_compose_prometheus_and_loads_the_dashboard_by_itself():
    provisioning = host_path("grafana", "/etc/grafana/provisioning/datasources")
    (datasource,) = yaml.safe_load((provisioning / "prometheus.yml").read_text())["datasources"]
    url = urlsplit(datasource["url"])
    assert (datasource["type"], url.hostname, url.port) == ("prometheus", "prometheus", 9090)
    assert datasource["isDefault"], "the dashboard's data source variable picks the default"
    scrape_interval = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape_interval

    providers = host_path("grafana", "/etc/grafana/provisioning/dashboards") / "sagaflow.yml"
    (provider,) = yaml.safe_load(providers.read_text())["providers"]
    assert provider["type"] == "file"
    assert host_path("grafana", provider["options"]["path"]) == GRAFANA / "dashboards"
    assert (GRAFANA / "dashboards" / "sagaflow.json").is_file()
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home) == GRAFANA / "dashboards" / "sagaflow.json"


def test_grafana_and_prometheus_listen_on_3000_and_9090_of_this_machine_only():
    # Prometheus has no login, and Grafana's anonymous viewer sees every figure.
    assert published("grafana") == {3000: "127.0.0.1"}
    assert published("prometheus") == {9090: "127.0.0.1"}
    assert service("grafana")["depends_on"]["prometheus"]


def test_grafana_shows_the_dashboards_to_anyone_and_takes_its_admin_password_from_the_environment():
    env = service("grafana")["environment"]
    assert (env["GF_AUTH_ANONYMOUS_ENABLED"], env["GF_AUTH_ANONYMOUS_ORG_ROLE"]) == ("true", "Viewer")
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


# --- the lint in the test run ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["test", "test-fast"])
def test_the_test_targets_run_the_lint_before_any_test(target):
    # A dry run (`make -n`) prints the commands in the order make would run them, and runs none of them.
    commands = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()
    steps = ("ruff check .", "ruff format --check .", "/mypy", "-m pytest")
    order = [next((i for i, command in enumerate(commands) if step in command), None) for step in steps]
    assert None not in order, f"`make {target}` does not run {steps[order.index(None)]!r}: {commands}"
    assert order == sorted(order), f"`make {target}` runs them out of order: {commands}"


def test_the_lint_tools_are_pinned_in_requirements():
    pinned = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line)
    for tool in ("ruff", "mypy", "django-stubs", "djangorestframework-stubs"):
        assert re.fullmatch(r"\d+(\.\d+)+", pinned.get(tool, "")), f"{tool} is not pinned in requirements.txt"
