"""The deployment files start what they say, checked without Docker or a cluster.

Reproduced first (issue #14): docker-compose 1.29 refused ``dockerfile_inline``; the image's
user could not create its data directory in root-owned /app (PermissionError); the kubelet
refuses ``runAsNonRoot`` with a non-numeric user; the chart's example destinations needed
``${env:EXAMPLE_CRM_API_KEY}`` that nothing set, so the pod exited 2."""

from __future__ import annotations

import re
from pathlib import Path

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
    assert (
        (templates / "service.yaml")
        .read_text()
        .startswith("{{- if .Values.metrics.serviceMonitor.enabled }}")
    )
    rules = (templates / "prometheusrule.yaml").read_text()
    assert rules.startswith("{{- if .Values.metrics.prometheusRule.enabled }}")
    alerts = set(re.findall(r"alert: (\w+)", rules))
    assert {
        "LeadCourierDeliveryErrors",
        "LeadCourierAuthFailures",
        "LeadCourierConsumerLag",
        "LeadCourierWorkerStalled",
    } == alerts
    documented = (ROOT / "docs" / "operations.md").read_text()
    for metric in set(re.findall(r"\b(courier_[a-z_]+)\b", rules)):
        assert f"`{metric}`" in documented, metric


def test_probes_ask_the_health_endpoints_the_worker_serves() -> None:
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    app = (ROOT / "streams" / "app.py").read_text()
    for path in re.findall(r"httpGet: \{path: (/\w+)", deployment):
        assert f'app.page("{path}")' in app
