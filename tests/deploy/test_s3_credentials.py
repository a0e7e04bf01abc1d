"""The job workers' own S3 keys in deploy/: SeaweedFS's worker identity and the worker service's keys in Compose, the
worker pods' Secret in Kubernetes, and the MinIO policy. Each grants what the embedded server's worker identity
grants (`storage.embedded_s3.worker_actions`), which tests/storage/test_worker_identity.py runs against SeaweedFS:
read and list the bucket, write only under a session's `results/` and `derived/`, administer nothing."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from storage.embedded_s3 import WORKER_WRITTEN_FOLDERS, S3Identity, worker_actions

from .manifests import DEPLOY, K8S, Manifest, compose, one, pod_templates

WORKER_SECRET = "proctor-worker-s3"
FULL_SECRET = "proctor-secrets"


def _variable(value: str) -> str:
    """The variable a Compose value interpolates, `${NAME}` or `${NAME:?message}`."""
    found = re.fullmatch(r"\$\{(\w+)(:\?[^}]*)?\}", value)
    assert found, f"expected one ${{VARIABLE}}, found {value!r}"
    return found[1]


def _seaweedfs_identities() -> dict[str, Manifest]:
    content = compose()["configs"]["s3-identities"]["content"]
    filled = re.sub(r"\$\{(\w+)\}", r"$\1", content)  # JSON-safe stand-ins that still name the variable
    return {identity["name"]: identity for identity in json.loads(filled)["identities"]}


def test_compose_gives_seaweedfs_a_worker_identity_scoped_as_the_embedded_one() -> None:
    bucket = compose()["services"]["api"]["environment"]["PROCTOR_S3_BUCKET"]
    identities = _seaweedfs_identities()
    assert set(identities) == {S3Identity.SERVICE, S3Identity.WORKER}
    assert identities[S3Identity.WORKER]["actions"] == worker_actions(bucket)
    assert "Admin" in identities[S3Identity.SERVICE]["actions"]


def test_compose_gives_the_worker_the_worker_identitys_keys_and_the_other_services_the_full_ones() -> None:
    identities = _seaweedfs_identities()
    keys = {name: identity["credentials"][0] for name, identity in identities.items()}
    users = {
        name: s["environment"]
        for name, s in compose()["services"].items()
        if "PROCTOR_S3_ENDPOINT" in s.get("environment", {})
    }
    assert {"api", "worker", "migrate"} <= set(users)
    for name, environment in users.items():
        identity = S3Identity.WORKER if name == "worker" else S3Identity.SERVICE
        assert "$" + _variable(environment["PROCTOR_S3_ACCESS_KEY"]) == keys[identity]["accessKey"], name
        assert "$" + _variable(environment["PROCTOR_S3_SECRET_KEY"]) == keys[identity]["secretKey"], name
    depends = compose()["services"]["worker"]["depends_on"]
    assert depends["api"] == {"condition": "service_healthy"}, "the API creates the bucket; the worker's keys cannot"


def test_env_example_sets_every_variable_compose_requires() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "compose.yaml").read_text()))
    example = (DEPLOY / ".env.example").read_text()
    assigned = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert {"S3_WORKER_ACCESS_KEY", "S3_WORKER_SECRET_KEY"} <= required
    assert required - assigned == set(), "add them to deploy/.env.example"


def _secret_refs(container: Manifest) -> tuple[list[str], dict[str, set[str]]]:
    """(the Secrets a container takes whole, {Secret: the keys it takes one by one})."""
    whole = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
    keys: dict[str, set[str]] = {}
    for variable in container.get("env", []):
        ref: dict[str, Any] | None = variable.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            keys.setdefault(ref["name"], set()).add(ref["key"])
    return whole, keys


def test_the_job_workers_take_s3_keys_from_their_own_secret_and_only_the_database_url_from_the_full_one() -> None:
    spec = one("Deployment", "proctor-worker")["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        whole, keys = _secret_refs(container)
        assert whole == [WORKER_SECRET], container["name"]
        assert keys.get(FULL_SECRET) == {"PROCTOR_DATABASE_URL"}, container["name"]
        assert not any(v["name"].startswith("PROCTOR_S3_") for v in container.get("env", [])), container["name"]
    example = {d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text())}
    assert set(example[WORKER_SECRET]["stringData"]) == {"PROCTOR_S3_ACCESS_KEY", "PROCTOR_S3_SECRET_KEY"}
    (api,) = one("Deployment", "proctor-api")["spec"]["template"]["spec"]["containers"]
    assert _secret_refs(api)[0] == [FULL_SECRET], "the API keeps the keys that create the bucket and erase"


def test_no_ray_pod_holds_s3_keys() -> None:
    for where, template in pod_templates():
        if where.startswith("RayCluster"):
            for container in template["spec"]["containers"]:
                whole, keys = _secret_refs(container)
                assert not {FULL_SECRET, WORKER_SECRET} & (set(whole) | set(keys)), where


def test_the_minio_policy_grants_what_the_worker_identity_does() -> None:
    policy = json.loads((DEPLOY / "minio" / "proctor-worker-policy.json").read_text())
    bucket = one("ConfigMap", "proctor-config")["data"]["PROCTOR_S3_BUCKET"]
    granted: dict[str, list[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and "Condition" not in statement
        for action in statement["Action"]:
            granted[action] = statement["Resource"]
    arn = f"arn:aws:s3:::{bucket}"
    writes = [f"{arn}/*/*/*/{folder}/*" for folder in WORKER_WRITTEN_FOLDERS]
    assert granted == {
        "s3:ListBucket": [arn],
        "s3:ListBucketVersions": [arn],
        "s3:ListBucketMultipartUploads": [arn],
        "s3:GetObject": [f"{arn}/*"],
        "s3:PutObject": writes,
        "s3:DeleteObject": writes,
        "s3:DeleteObjectVersion": writes,
        "s3:AbortMultipartUpload": writes,
        "s3:ListMultipartUploadParts": writes,
    }
