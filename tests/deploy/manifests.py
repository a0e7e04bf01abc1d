"""Loaders for deploy/: the Kubernetes manifests as `kubectl apply -k` would take them, the Compose file, the
Dockerfile's ENV, and the environment variable names the settings object reads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from core.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
Manifest = dict[str, Any]


def kustomization() -> Manifest:
    loaded: Manifest = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def k8s_documents() -> list[Manifest]:
    """Every object the kustomization deploys, in the kustomization's namespace (no overlays or patches here)."""
    config = kustomization()
    documents = []
    for resource in config["resources"]:
        for document in yaml.safe_load_all((K8S / resource).read_text()):
            if document is not None:
                document.setdefault("metadata", {}).setdefault("namespace", config["namespace"])
                documents.append(document)
    return documents


def one(kind: str, name: str) -> Manifest:
    found = [d for d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in the kustomization, found {len(found)}"
    return found[0]


def pod_templates() -> Iterator[tuple[str, Manifest]]:
    """(where, pod template) for every pod the manifests describe, RayCluster groups included."""
    for document in k8s_documents():
        kind, name, spec = document["kind"], document["metadata"]["name"], document.get("spec", {})
        if kind == "Deployment":
            yield f"Deployment {name}", spec["template"]
        elif kind == "CronJob":
            yield f"CronJob {name}", spec["jobTemplate"]["spec"]["template"]
        elif kind == "RayCluster":
            yield f"RayCluster {name} head", spec["headGroupSpec"]["template"]
            for group in spec["workerGroupSpecs"]:
                yield f"RayCluster {name} group {group['groupName']}", group["template"]


def compose() -> Manifest:
    loaded: Manifest = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def dockerfile_env() -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions set (`ENV A=1 \\` continuation lines included)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def settings_env_names() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}
