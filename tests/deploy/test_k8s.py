"""Every manifest in deploy/k8s, and what kustomize renders from them, validates against the
Kubernetes schemas; models arrive without hand-copying and pods stop without dropping requests.

Schemas come from the kubernetes-validate wheel (offline), strict mode (unknown fields are
errors, as `kubectl apply --validate=strict` would report), against a pinned API version. The
kustomize output is rendered by tests/deploy/kustomize_lite.py (no kustomize binary is
installable from PyPI or Debian here).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from tests.deploy.dockerfiles import ROOT, exec_form, final_stage, instructions
from tests.deploy.kustomize_lite import KustomizeError, render

K8S = ROOT / "deploy" / "k8s"
GCS = K8S / "gcs"
K8S_VERSION = "1.31.0"
KUSTOMIZATION = K8S / "kustomization.yaml"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path != KUSTOMIZATION)
BUNDLE = "tiered-serving-kit/bundle"


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def validation_error(resource: dict) -> str | None:
    try:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(map(str, exc.path))}: {exc.message}"
    except SchemaNotFoundError as exc:
        return exc.message
    return None


def by_key(documents: list[dict]) -> dict[tuple[str, str], dict]:
    found = {}
    for doc in documents:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in found, f"{key} defined twice"
        found[key] = doc
    return found


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict]:
    """(kind, name) -> resource, across every manifest as written."""
    return by_key([doc for path in MANIFESTS for doc in load(path)])


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict]:
    return by_key(render(K8S))


@pytest.fixture(scope="module")
def rendered_gcs() -> dict[tuple[str, str], dict]:
    return by_key(render(GCS))


def pod(resources: dict, tier: str) -> dict:
    return resources[("Deployment", tier)]["spec"]["template"]["spec"]


def container(resources: dict, tier: str) -> dict:
    return pod(resources, tier)["containers"][0]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_kubernetes_schema(manifest: Path) -> None:
    docs = load(manifest)
    assert docs, f"{manifest.name} is empty"
    errors = {
        f"{doc['kind']}/{doc['metadata']['name']}": error
        for doc in docs
        if (error := validation_error(doc))
    }
    assert errors == {}


@pytest.mark.parametrize("folder", [K8S, GCS], ids=["default", "gcs"])
def test_kustomize_output_validates_against_kubernetes_schema(folder: Path) -> None:
    documents = render(folder)
    assert documents
    errors = {
        f"{doc['kind']}/{doc['metadata']['name']}": error
        for doc in documents
        if (error := validation_error(doc))
    }
    assert errors == {}
    for doc in documents:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tiered-serving-kit"


def test_renderer_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas: [{name: x}]\n")
    with pytest.raises(KustomizeError, match="replicas"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [../k]\n".replace("../k", str(K8S))
        + "patches:\n  - target: {kind: Deployment, name: nope}\n    patch: '[]'\n"
    )
    with pytest.raises(KustomizeError, match="matches nothing"):
        render(tmp_path)


def _misspelled_probe(doc: dict) -> None:
    c = doc["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")


def _replicas_as_text(doc: dict) -> None:
    doc["spec"]["replicas"] = "two"


def _unknown_api_version(doc: dict) -> None:
    doc["apiVersion"] = "apps/v1beta7"


def _container_without_name(doc: dict) -> None:
    del doc["spec"]["template"]["spec"]["containers"][0]["name"]


def _pre_stop_as_string(doc: dict) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"] = "sleep 5"


@pytest.mark.parametrize(
    "breakage",
    [
        _misspelled_probe,
        _replicas_as_text,
        _unknown_api_version,
        _container_without_name,
        _pre_stop_as_string,
    ],
    ids=lambda f: f.__name__,
)
def test_validation_rejects_a_broken_copy(
    resources: dict, breakage: Callable[[dict], None]
) -> None:
    broken = copy.deepcopy(resources[("Deployment", "logic")])
    breakage(broken)
    assert validation_error(broken), f"{breakage.__name__} was accepted"


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert sorted(listed) == sorted(path.name for path in MANIFESTS)


def test_every_image_is_pinned_in_the_kustomization(resources: dict) -> None:
    pinned = {image["name"] for image in yaml.safe_load(KUSTOMIZATION.read_text())["images"]}
    for tier in ("graph", "logic"):
        spec = pod(resources, tier)
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["image"].rsplit(":", 1)[0] in pinned, c["name"]


def test_one_bundle_tag_feeds_both_tiers(rendered: dict) -> None:
    """The model bundle (models + pipelines) is set in one place: kustomization.yaml's images."""
    images = {
        c["image"] for tier in ("graph", "logic") for c in pod(rendered, tier)["initContainers"]
    }
    assert len(images) == 1
    assert images.pop().startswith(BUNDLE + ":")


def _mount(spec: dict, c: dict, path: str) -> dict:
    mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
    return next(v for v in spec["volumes"] if v["name"] == mount["name"])


def _bundle_layout() -> dict[str, str]:
    """What the bundle image holds: /bundle/models and /bundle/pipelines, filled by prepare."""
    build = final_stage(ROOT / "Dockerfile.convert", "bundle-build")
    run = " ".join(args for keyword, args in build if keyword == "RUN")
    return {
        "models": re.search(r"--models (\S+)", run).group(1),
        "pipelines": re.search(r"--pipelines (\S+)", run).group(1),
    }


@pytest.mark.parametrize(
    ("tier", "what", "mount_path"),
    [("graph", "models", "/models"), ("logic", "pipelines", "/srv/pipelines")],
)
def test_init_container_copies_the_bundle_into_the_pod_volume(
    resources: dict, tier: str, what: str, mount_path: str
) -> None:
    spec = pod(resources, tier)
    (init,) = spec["initContainers"]
    assert init["command"] == ["cp", "-R", f"{_bundle_layout()[what]}/.", f"{mount_path}/"]
    init_volume = _mount(spec, init, mount_path + "/x")
    served_volume = _mount(spec, spec["containers"][0], mount_path + "/x")
    assert init_volume is served_volume
    assert "emptyDir" in init_volume, "each pod gets its own copy, no shared volume to fill"
    served = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == mount_path)
    assert served["readOnly"] is True


def test_no_persistent_volume_to_fill_by_hand(resources: dict) -> None:
    assert not [key for key in resources if key[0] == "PersistentVolumeClaim"]
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert not [doc.name for doc in docs if "kubectl cp" in doc.read_text()]


@pytest.mark.parametrize("tier", ["graph", "logic"])
def test_rolling_update_never_drops_below_serving_capacity(resources: dict, tier: str) -> None:
    strategy = resources[("Deployment", tier)]["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] not in (0, "0%")


@pytest.mark.parametrize("tier", ["graph", "logic"])
def test_containers_have_probes_and_resources(resources: dict, tier: str) -> None:
    spec = pod(resources, tier)
    for c in spec["containers"]:
        assert "readinessProbe" in c
        assert "livenessProbe" in c
    for c in spec["containers"] + spec["initContainers"]:
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{c['name']}: {kind}"


def test_logic_readiness_is_ready_and_liveness_is_health(resources: dict) -> None:
    c = container(resources, "logic")
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_graph_readiness_follows_models_config_not_a_name_in_the_manifest(
    resources: dict,
) -> None:
    """The probe asks for every model listed in /models/models.config, so adding a model never
    means editing this Deployment; no model name is written in it."""
    c = container(resources, "graph")
    assert c["readinessProbe"]["exec"]["command"] == ["model-available"]
    copies = [
        args
        for keyword, args in instructions(ROOT / "graph_service/Dockerfile")
        if keyword == "COPY"
    ]
    assert any(args.endswith("/usr/local/bin/model-available") for args in copies)
    assert "credit" not in json.dumps(resources[("Deployment", "graph")])
    assert c["volumeMounts"][0]["mountPath"] == "/models"


def _dockerfile_command(dockerfile: str) -> list[str]:
    stage = dict(final_stage(ROOT / dockerfile))
    return exec_form(stage["ENTRYPOINT"]) + exec_form(stage.get("CMD", "[]"))


def test_graph_container_keeps_the_image_entrypoint_that_serves_models_config(
    resources: dict,
) -> None:
    """The Deployment only appends flags; ports and models.config come from the image."""
    c = container(resources, "graph")
    assert "command" not in c
    flags = _dockerfile_command("graph_service/Dockerfile")
    for flag in (
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/models/models.config",
        "--allow_version_labels_for_unavailable_models=true",  # the canary step needs it
    ):
        assert flag in flags
    given = {arg.split("=")[0] for arg in c.get("args", [])}
    assert not given & {flag.split("=")[0] for flag in flags}, "args repeat an ENTRYPOINT flag"


def test_batching_parameters_are_never_passed_without_enabling_batching(
    resources: dict,
) -> None:
    """TF Serving exits at start-up when --batching_parameters_file is set but
    --enable_batching is not true (model_servers/server.cc), so the image's command line and
    the Deployment's args must carry both flags or neither."""
    command = _dockerfile_command("graph_service/Dockerfile")
    command += container(resources, "graph").get("args", [])
    if any(arg.startswith("--batching_parameters_file") for arg in command):
        assert "--enable_batching=true" in command, command


def test_logic_drains_before_kubernetes_kills_it(resources: dict) -> None:
    """preStop pause (endpoints removed), then SIGTERM: /ready 503 and gunicorn finishes
    in-flight requests within LOGIC_GRACEFUL_TIMEOUT; the grace period covers both plus margin."""
    spec = pod(resources, "logic")
    c = spec["containers"][0]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    env = {item["name"]: item["value"] for item in c["env"]}
    graceful = int(env["LOGIC_GRACEFUL_TIMEOUT"])
    conf = (ROOT / "logic_service" / "http" / "gunicorn.conf.py").read_text()
    assert "LOGIC_GRACEFUL_TIMEOUT" in conf, "gunicorn must read the variable the pod sets"
    assert spec["terminationGracePeriodSeconds"] >= 5 + graceful + 5
    assert spec["terminationGracePeriodSeconds"] >= 30


def test_graph_pods_leave_the_service_before_tf_serving_stops(resources: dict) -> None:
    spec = pod(resources, "graph")
    assert spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert spec["terminationGracePeriodSeconds"] > 5


def test_graph_service_exposes_grpc_and_rest(resources: dict) -> None:
    ports = {p["name"]: p["port"] for p in resources[("Service", "graph")]["spec"]["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}


@pytest.mark.parametrize("tier", ["graph", "logic"])
def test_each_tier_scales_on_cpu_on_its_own(resources: dict, tier: str) -> None:
    hpa = resources[("HorizontalPodAutoscaler", tier)]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": tier}
    assert hpa["minReplicas"] >= 2
    assert hpa["maxReplicas"] > hpa["minReplicas"]
    metric = hpa["metrics"][0]["resource"]
    assert metric["name"] == "cpu"
    assert metric["target"]["type"] == "Utilization"


@pytest.mark.parametrize("tier", ["graph", "logic"])
def test_disruption_budget_and_service_select_the_tier_pods(resources: dict, tier: str) -> None:
    pod_labels = resources[("Deployment", tier)]["spec"]["template"]["metadata"]["labels"]
    pdb = resources[("PodDisruptionBudget", tier)]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb.get("minAvailable", 0) >= 1 or "maxUnavailable" in pdb
    service = resources[("Service", tier)]["spec"]
    assert service["selector"].items() <= pod_labels.items()
    container_ports = {
        port["name"] for c in pod(resources, tier)["containers"] for port in c["ports"]
    }
    assert {port["targetPort"] for port in service["ports"]} <= container_ports


def test_logic_reads_the_bundle_pipeline_file_and_calls_the_graph_service(
    resources: dict,
) -> None:
    spec = pod(resources, "logic")
    c = spec["containers"][0]
    config_path = c["args"][c["args"].index("--config") + 1]
    assert config_path == "/srv/pipelines/pipelines.yaml"
    assert "emptyDir" in _mount(spec, c, config_path)
    env = {item["name"]: item["value"] for item in c["env"]}
    assert env["GRAPH_SERVICE_URL"] == "http://graph:8501"


def test_gcs_overlay_serves_gs_base_paths_without_the_bundle_models(rendered_gcs: dict) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    graph = pod(rendered_gcs, "graph")
    assert "initContainers" not in graph
    volume = _mount(graph, graph["containers"][0], "/models/models.config")
    config_map = rendered_gcs[("ConfigMap", volume["configMap"]["name"])]
    parsed = text_format.Parse(
        config_map["data"]["models.config"], model_server_config_pb2.ModelServerConfig()
    )
    paths = [entry.base_path for entry in parsed.model_config_list.config]
    assert paths and all(path.startswith("gs://") for path in paths)
    # The logic tier still takes pipelines.yaml and transformers from the bundle.
    assert pod(rendered_gcs, "logic")["initContainers"][0]["image"].startswith(BUNDLE)
