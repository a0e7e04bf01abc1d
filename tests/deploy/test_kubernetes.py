"""The Kubernetes manifests, checked as far as a machine with no cluster allows: the kustomization's files,
the Kubernetes API schemas (kubernetes-validate), KubeRay's client port, token authentication, autoscaling
bounds, and NetworkPolicies whose selectors match the pods they are meant for. KubeRay's CRD schema is not
published in any Python package, so the RayCluster is checked field by field and its pod templates against the
core PodTemplate schema."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .manifests import DEPLOY, K8S, Manifest, k8s_documents, kustomization, one, pod_templates, settings_env_names

KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes these manifests claim to support (deploy/README.md)
RAY_CLIENT_PORT = 10001
RAY_DASHBOARD_PORT = 8265


def test_every_manifest_parses() -> None:
    for path in sorted(K8S.glob("*.yaml")):
        assert list(yaml.safe_load_all(path.read_text())), f"{path.name} is empty"


def test_kustomization_lists_existing_files_and_every_manifest_but_the_secret_example() -> None:
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed)), f"listed twice: {listed}"
    for resource in listed:
        assert (K8S / resource).is_file(), f"kustomization.yaml lists {resource}, which does not exist"
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk - set(listed) == {"secret.example.yaml"}


def test_apply_k_deploys_no_secret() -> None:
    assert "secret.example.yaml" not in kustomization()["resources"]
    assert [d["metadata"]["name"] for d in k8s_documents() if d["kind"] == "Secret"] == []


def test_every_secret_the_pods_read_is_one_the_example_shows_with_that_key() -> None:
    example = {d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text())}
    for where, template in pod_templates():
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in example, where
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in example[ref["name"]]["stringData"], f"{where}: {ref}"


@pytest.mark.parametrize("document", k8s_documents(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_manifest_matches_the_kubernetes_schema(document: Manifest) -> None:
    if document["kind"] == "RayCluster":  # a CRD: its pod templates are core PodTemplates
        for template in _ray_templates(document):
            wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
            kubernetes_validate.validate(wrapped, KUBERNETES_VERSION, strict=True)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def _ray_templates(cluster: Manifest) -> list[Manifest]:
    return [cluster["spec"]["headGroupSpec"]["template"]] + [g["template"] for g in cluster["spec"]["workerGroupSpecs"]]


def _ray_cluster() -> Manifest:
    (cluster,) = [d for d in k8s_documents() if d["kind"] == "RayCluster"]
    return cluster


def test_the_head_exposes_the_client_port_the_job_workers_connect_to() -> None:
    cluster = _ray_cluster()
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["containerPort"] for p in head["ports"]}
    assert {6379, RAY_CLIENT_PORT} <= ports  # KubeRay's head Service exposes exactly the ports listed here
    address = one("ConfigMap", "proctor-config")["data"]["PROCTOR_RAY_ADDRESS"]
    assert address == f"ray://{cluster['metadata']['name']}-head-svc:{RAY_CLIENT_PORT}"  # KubeRay's Service name
    assert cluster["spec"]["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


def _env(container: Manifest) -> dict[str, Any]:
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in container.get("env", [])}


def _assert_token_auth(where: str, env: dict[str, Any]) -> None:
    assert env.get("RAY_AUTH_MODE") == "token", f"{where}: RAY_AUTH_MODE is {env.get('RAY_AUTH_MODE')!r}"
    assert env.get("RAY_AUTH_TOKEN") == {"secretKeyRef": {"name": "proctor-ray-token", "key": "auth_token"}}, where


def test_token_authentication_on_every_ray_container_the_autoscaler_and_the_job_workers() -> None:
    cluster = _ray_cluster()
    for template in _ray_templates(cluster):
        for container in template["spec"]["containers"]:
            _assert_token_auth(container["name"], _env(container))
    _assert_token_auth("autoscaler", _env(cluster["spec"]["autoscalerOptions"]))
    (job_worker,) = one("Deployment", "proctor-worker")["spec"]["template"]["spec"]["containers"]
    _assert_token_auth("proctor-worker", _env(job_worker))


def test_autoscaling_within_the_bounds_the_readme_states_with_a_cpu_and_a_gpu_group() -> None:
    spec = _ray_cluster()["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    stated = re.search(r"CPU worker group from (\d+) to (\d+) replicas", (DEPLOY / "README.md").read_text())
    assert stated, "deploy/README.md no longer states the CPU group's bounds"
    assert (groups["cpu"]["minReplicas"], groups["cpu"]["maxReplicas"]) == (int(stated[1]), int(stated[2]))
    assert groups["gpu"]["minReplicas"] == 0
    for group in groups.values():
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    (gpu_container,) = groups["gpu"]["template"]["spec"]["containers"]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == 1


def _pod_labels() -> dict[str, dict[str, str]]:
    """Labels of each kind of pod, KubeRay's own labels included for the Ray pods."""
    labels = {
        name: one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for name in ("proctor-api", "proctor-worker")
    }
    cluster = _ray_cluster()["metadata"]["name"]
    labels["ray-head"] = {"ray.io/cluster": cluster, "ray.io/node-type": "head", "ray.io/group": "headgroup"}
    for group in _ray_cluster()["spec"]["workerGroupSpecs"]:
        labels[f"ray-{group['groupName']}"] = {
            "ray.io/cluster": cluster,
            "ray.io/node-type": "worker",
            "ray.io/group": group["groupName"],
        }
    return labels


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are checked here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _policies() -> list[Manifest]:
    return [d for d in k8s_documents() if d["kind"] == "NetworkPolicy"]


def _peers_allowed(pod: str, port: int) -> list[Manifest]:
    """The `from` peers of every ingress rule, over all policies selecting `pod`, that lets `port` in; an empty
    peer ({}) stands for a rule with no `from` (any source)."""
    labels = _pod_labels()[pod]
    peers: list[Manifest] = []
    for policy in _policies():
        if not _selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if not ports or port in ports or (pod == "proctor-api" and "http" in ports and port == 8000):
                peers.extend(rule.get("from", [{}]))
    return peers


def test_ingress_is_denied_by_default_in_the_namespace() -> None:
    assert any(
        p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"] and not p["spec"].get("ingress")
        for p in _policies()
    )


def test_only_the_job_workers_and_ray_pods_reach_the_head() -> None:
    labels = _pod_labels()
    for port in (RAY_CLIENT_PORT, 6379, RAY_DASHBOARD_PORT):
        peers = _peers_allowed("ray-head", port)
        assert peers, f"nothing may reach the head's port {port}"
        for peer in peers:
            assert set(peer) == {"podSelector"}, f"port {port} is open to {peer}: only pods of this namespace"
            allowed = {pod for pod, pod_labels in labels.items() if _selects(peer["podSelector"], pod_labels)}
            expected = {"proctor-worker"} if port == RAY_CLIENT_PORT else set()
            assert allowed <= {"ray-head", "ray-cpu", "ray-gpu"} | expected, f"port {port} reachable by {allowed}"
    client_peers = _peers_allowed("ray-head", RAY_CLIENT_PORT)
    assert any(_selects(p["podSelector"], labels["proctor-worker"]) for p in client_peers)
    assert not any(_selects(p["podSelector"], labels["proctor-api"]) for p in _peers_allowed("ray-head", 6379))


def test_ray_workers_are_reached_by_ray_pods_only() -> None:
    labels = _pod_labels()
    for pod in ("ray-cpu", "ray-gpu"):
        peers = _peers_allowed(pod, 10002)
        assert peers
        for peer in peers:
            assert set(peer) == {"podSelector"}
            allowed = {p for p, pod_labels in labels.items() if _selects(peer["podSelector"], pod_labels)}
            assert allowed <= {"ray-head", "ray-cpu", "ray-gpu"}, allowed


def test_the_api_is_reachable_from_the_ingress_controller_on_its_http_port() -> None:
    (container,) = one("Deployment", "proctor-api")["spec"]["template"]["spec"]["containers"]
    assert {"containerPort": 8000, "name": "http"} in container["ports"]
    peers = _peers_allowed("proctor-api", 8000)
    assert peers and all(set(p) == {"namespaceSelector"} for p in peers), peers


def test_every_proctor_variable_set_is_a_setting() -> None:
    known = settings_env_names()
    seen = set(one("ConfigMap", "proctor-config")["data"])
    for document in yaml.safe_load_all((K8S / "secret.example.yaml").read_text()):
        seen |= set(document["stringData"])
    for _, template in pod_templates():
        for container in template["spec"]["containers"]:
            seen |= {v["name"] for v in container.get("env", [])}
    proctor = {name for name in seen if name.startswith("PROCTOR_")}
    assert proctor, "no PROCTOR_ variable found: the loader is broken"
    assert proctor - known == set(), f"set in deploy/k8s but unknown to core.settings.Settings: {proctor - known}"


def _deployment(name: str) -> Manifest:
    spec: Manifest = one("Deployment", name)["spec"]["template"]["spec"]
    return spec


def test_pods_migrate_in_an_init_container_and_do_not_migrate_at_start() -> None:
    assert one("ConfigMap", "proctor-config")["data"]["PROCTOR_MIGRATE_ON_START"] == "false"
    for name in ("proctor-api", "proctor-worker"):
        (init,) = _deployment(name)["initContainers"]
        (main,) = _deployment(name)["containers"]
        assert init["args"] == ["migrate"], name
        assert init["image"] == main["image"] and init["envFrom"] == main["envFrom"], name


def test_the_job_workers_are_probed_on_their_ops_port() -> None:
    (worker,) = _deployment("proctor-worker")["containers"]
    env = _env(worker)
    (port,) = [p for p in worker["ports"] if p["name"] == "ops"]
    assert int(env["PROCTOR_WORKER_METRICS_PORT"]) == port["containerPort"]
    assert env["PROCTOR_WORKER_METRICS_HOST"] == "0.0.0.0"  # the kubelet probes the pod's address
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
