"""The deployment files: Kubernetes manifests valid against the Kubernetes schemas (the
kubernetes-validate package, strict), HAProxy configs that HAProxy itself accepts, and every
value in them consistent with what the relay does and what the loopback topology ran."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bench.topology import HAPROXY_CFG, find_haproxy, haproxy_config
from relay.settings import Settings
from tests.conftest import require_debian_package

ROOT = Path(__file__).resolve().parent.parent
K8S = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
SHARED_CFG = HAPROXY_CFG.read_text()


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _all_docs() -> list[dict[str, Any]]:
    return [d for path in K8S for d in _docs(path)]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _all_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    for doc in _docs(path):
        kubernetes_validate.validate(doc, "1.30", strict=True)  # raises with the path at fault


def test_the_balancers_config_in_kubernetes_and_compose_is_the_tested_file_verbatim() -> None:
    k8s_cfg = _one("ConfigMap", "haproxy-config")["data"]["haproxy.cfg"]
    assert k8s_cfg.startswith(SHARED_CFG)
    compose_cfg = (ROOT / "deploy" / "haproxy" / "compose.cfg").read_text()
    assert compose_cfg.split("\n", 1)[1].startswith(SHARED_CFG)


@pytest.mark.parametrize("variant", ["topology", "compose", "kubernetes"])
def test_haproxy_accepts_each_config(variant: str, tmp_path: Path) -> None:
    binary = find_haproxy()
    require_debian_package(binary, "haproxy", "HAProxy", "the manifests are still checked")
    assert binary is not None
    text = {
        "topology": haproxy_config([("relay1", 18081), ("relay2", 18082)], 18099),
        "compose": (ROOT / "deploy" / "haproxy" / "compose.cfg").read_text(),
        "kubernetes": _one("ConfigMap", "haproxy-config")["data"]["haproxy.cfg"],
    }[variant]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    env = {"PATH": os.environ.get("PATH", ""), "RELAY_LB_BIND": "127.0.0.1:18080"}
    checked = subprocess.run([binary, "-c", "-f", str(cfg)], env=env, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


def test_the_relay_deployment_matches_what_the_relay_does(monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = _one("Deployment", "relay")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = _one("ConfigMap", "relay-config")["data"]
    # Every setting in the ConfigMap is one the relay reads (and accepts).
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.redis_url is not None and settings.max_calls == int(config["RELAY_MAX_CALLS"])
    # Probes on the relay's own endpoints and port.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == Settings.model_fields["port"].default
    # SIGTERM comes after the preStop pause; the drain, then the flush and the wrap-up, must
    # all fit before Kubernetes kills the pod.
    pause = 5
    needed = pause + settings.drain_deadline_s + settings.sync_flush_deadline_s + settings.summary_deadline_s
    assert pod["terminationGracePeriodSeconds"] > needed
    assert "sleep(5)" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    # The replica id is the pod's name (the takeover channel and the logs use it).
    (replica,) = [e for e in container["env"] if e["name"] == "RELAY_REPLICA_ID"]
    assert replica["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_autoscaler_scales_on_a_metric_the_relay_exports() -> None:
    from relay.web.metrics import RelayCollector  # noqa: F401 - the metric's home

    hpa = _one("HorizontalPodAutoscaler", "relay")
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    assert name == "relay_active_calls"
    assert f'"{name}"' in (ROOT / "relay" / "web" / "metrics.py").read_text()
    # The target sits under the per-pod ceiling the balancer and the relay enforce.
    ceiling = int(_one("ConfigMap", "relay-config")["data"]["RELAY_MAX_CALLS"])
    assert int(metric["pods"]["target"]["averageValue"]) < ceiling
    assert _one("PodDisruptionBudget", "relay")["spec"]["maxUnavailable"] == 1


def test_the_compose_file_runs_the_same_pieces() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "relay", "haproxy"}
    relay = services["relay"]
    assert relay["environment"]["RELAY_REDIS_URL"].startswith("redis://redis:")
    assert int(relay["stop_grace_period"].rstrip("s")) > int(relay["environment"]["RELAY_DRAIN_DEADLINE_S"])
    (volume,) = services["haproxy"]["volumes"]
    assert (ROOT / "deploy" / volume.split(":")[0]).exists()
