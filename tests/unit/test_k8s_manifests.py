"""deploy/k8s: every manifest validated against the Kubernetes JSON schemas (shipped by
the kubernetes-validate package, so no cluster and no download), and wired together:
probes, selectors, the Service, Ingress and HPA targets, the ConfigMap and Secret.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes release the manifests target, and the newest with schemas here.
VERSIONS = ("1.29.0", latest_version())
NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml"}
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN$|DATABASE_URL")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for _, doc in _all()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_follows_the_kubernetes_schema(version: str) -> None:
    problems = []
    for filename, doc in _all():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{filename} {doc['kind']}: {where}: {exc.message}")
        except SchemaNotFoundError as exc:
            problems.append(f"{filename}: {exc.message}")
    assert problems == []


def test_the_schema_check_catches_mistakes() -> None:
    broken = _one("Deployment", "incidents-api")
    container = broken["spec"]["template"]["spec"]["containers"][0]
    broken_probe = {**container["readinessProbe"], "httpGet": {"path": "/readyz", "prot": 80}}
    bad = {
        **broken,
        "spec": {
            **broken["spec"],
            "template": {
                **broken["spec"]["template"],
                "spec": {
                    **broken["spec"]["template"]["spec"],
                    "containers": [{**container, "readinessProbe": broken_probe}],
                },
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[0], strict=True)


def test_the_kustomization_applies_every_manifest_but_the_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - NOT_APPLIED
    assert set(kustomization["resources"]) == files
    assert [image["name"] for image in kustomization["images"]] == ["incidents"]
    for _, doc in _all():
        for container in _containers(doc):
            assert container["image"] == "incidents"


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] in ("Deployment", "Job"):
        containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
        return containers
    return []


def _pod_labels(name: str, kind: str = "Deployment") -> dict[str, str]:
    labels: dict[str, str] = _one(kind, name)["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_api_servers_are_probed_on_healthz_and_readyz() -> None:
    pod = _one("Deployment", "incidents-api")["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["args"] == ["serve"]
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # /readyz waits up to 3 s for its checks; the probe must wait longer.
    assert api["readinessProbe"]["timeoutSeconds"] > 3
    assert [p["name"] for p in api["ports"]] == ["http"]
    # Stopping takes the preStop sleep, the open requests (5 s) and the outbox drain.
    drain = float(_one("ConfigMap")["data"]["IM_SHUTDOWN_DRAIN_SECONDS"])
    pre_stop = int(api["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + 5 + drain


def test_the_pods_run_unprivileged() -> None:
    for _, doc in _all():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"configMapRef": {"name": "incidents-config"}} in container["envFrom"]
            assert {"secretRef": {"name": "incidents-secrets"}} in container["envFrom"]


def test_the_hpa_scales_the_api_deployment_which_leaves_replicas_to_it() -> None:
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "incidents-api",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # A replica count in the Deployment would reset the HPA's on every apply.
    assert "replicas" not in _one("Deployment", "incidents-api")["spec"]


def test_the_worker_and_the_migration_job() -> None:
    (worker,) = _one("Deployment", "incidents-worker")["spec"]["template"]["spec"]["containers"]
    assert worker["args"] == ["worker"]
    job = _one("Job")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["admin", "migrate"]


def test_selectors_match_their_pods() -> None:
    api = _pod_labels("incidents-api")
    worker = _pod_labels("incidents-worker")
    for name in ("incidents-api", "incidents-worker"):
        deployment = _one("Deployment", name)
        assert _selects(deployment["spec"]["selector"]["matchLabels"], _pod_labels(name))
    assert _selects(_one("Service")["spec"]["selector"], api)
    assert not _selects(_one("Service")["spec"]["selector"], worker)
    assert _selects(_one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], api)


def test_the_ingress_serves_the_api_over_tls_and_keeps_operations_inside() -> None:
    ingress = _one("Ingress")
    service = _one("Service")
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert ingress["spec"]["tls"][0]["hosts"] == hosts
    assert ingress["spec"]["tls"][0]["secretName"]
    ports = {p["name"] for p in service["spec"]["ports"]}
    paths = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in ports
            paths.append(path["path"])
    assert paths == ["/api", "/graphql"]


def test_network_policies_deny_by_default_and_open_what_is_needed() -> None:
    policies = {doc["metadata"]["name"]: doc for _, doc in _all() if doc["kind"] == "NetworkPolicy"}
    deny = policies["incidents-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny
    job_pods = _one("Job")["spec"]["template"]["metadata"]["labels"]
    for pods in (_pod_labels("incidents-api"), _pod_labels("incidents-worker"), job_pods):
        assert _selects(deny["podSelector"]["matchLabels"], pods)
    ingress = policies["incidents-api-ingress"]["spec"]
    assert ingress["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    egress_ports = {
        port["port"]
        for rule in policies["incidents-egress"]["spec"]["egress"]
        for port in rule["ports"]
    }
    assert {53, 5432, 4222, 6379} <= egress_ports


def test_settings_are_split_between_configmap_and_secret() -> None:
    config = _one("ConfigMap")["data"]
    assert all(key.startswith("IM_") for key in config)
    assert not [key for key in config if SECRET_LIKE.search(key)]
    secret = _one("Secret")
    assert set(secret["stringData"]) == {"IM_DATABASE_URL"}
    # The example holds a placeholder, never a usable password.
    assert ":CHANGE-ME@" in secret["stringData"]["IM_DATABASE_URL"]


def test_kubectl_renders_the_kustomization() -> None:
    # `kubectl kustomize` needs no cluster; skipped where kubectl is not installed.
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed; the kustomization is checked structurally above")
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert len(rendered) == len([doc for name, doc in _all() if name not in NOT_APPLIED])
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "incidents"
        for container in _containers(doc):
            assert container["image"] == "registry.example.com/incidents:0.1.0"
        kubernetes_validate.validate(doc, VERSIONS[0], strict=True)
