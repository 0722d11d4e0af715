"""compose.yaml (and the standalone override) are valid Compose files wired prepare -> graph -> logic.

No Docker engine runs here, so validity is checked against the Compose Specification's own
JSON schema, vendored at deploy/schemas/compose-spec.json (from the compose-spec project,
Apache-2.0) so nothing is downloaded at test time. Variables are interpolated the way compose
does (`${VAR:-default}`), with the defaults and with a bring-your-own-model environment.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.dockerfiles import ROOT, exec_form, final_stage, stage_names

COMPOSE = ROOT / "compose.yaml"
STANDALONE = ROOT / "compose.standalone.yaml"
SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"
CORE = ("prepare", "graph", "logic")


def schema_errors(document: object) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def interpolate(node: object, env: dict[str, str]) -> object:
    """Compose's ${VAR}, ${VAR:-default} and $$ over every string of the document."""

    def one(text: str) -> str:
        def value(match: re.Match) -> str:
            name, default = match.group(1), match.group(3)
            found = env.get(name, "")
            return found if found else (default or "")

        text = re.sub(r"\$\{(\w+)(:-([^}]*))?\}", value, text)
        return text.replace("$$", "$")

    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    return one(node) if isinstance(node, str) else node


def merge(base: object, override: object) -> object:
    """Compose's override-file merge for the keys the standalone file uses: mappings merge,
    scalars and lists from the override win."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict) -> dict:
    return interpolate(raw, {})


@pytest.fixture(scope="module")
def standalone(raw: dict) -> dict:
    return interpolate(merge(raw, yaml.safe_load(STANDALONE.read_text())), {})


def test_compose_file_sits_at_the_root_where_docker_compose_up_finds_it() -> None:
    found = [
        name
        for name in ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
        if (ROOT / name).exists()
    ]
    assert found == ["compose.yaml"], "exactly one default compose file at the root"
    assert not (ROOT / "deploy" / "docker-compose.yml").exists()


@pytest.mark.parametrize("which", ["as written", "interpolated", "with standalone override"])
def test_compose_files_match_the_compose_specification(
    raw: dict, compose: dict, standalone: dict, which: str
) -> None:
    document = {"as written": raw, "interpolated": compose, "with standalone override": standalone}
    assert schema_errors(document[which]) == []


def test_override_file_alone_matches_the_compose_specification() -> None:
    assert schema_errors(yaml.safe_load(STANDALONE.read_text())) == []


def _typo_condition(doc: dict) -> None:
    doc["services"]["graph"]["depends_on"]["prepare"]["condition"] = "service_completed"


def _misspelled_key(doc: dict) -> None:
    doc["services"]["graph"]["healtcheck"] = doc["services"]["graph"].pop("healthcheck")


def _ports_as_mapping(doc: dict) -> None:
    doc["services"]["logic"]["ports"] = {"5000": 5000}


def _profiles_as_string(doc: dict) -> None:
    doc["services"]["grafana"]["profiles"] = "observability"


@pytest.mark.parametrize(
    "breakage",
    [_typo_condition, _misspelled_key, _ports_as_mapping, _profiles_as_string],
    ids=lambda f: f.__name__,
)
def test_schema_rejects_a_broken_copy(compose: dict, breakage: Callable[[dict], None]) -> None:
    broken = copy.deepcopy(compose)
    breakage(broken)
    assert schema_errors(broken), f"{breakage.__name__} was accepted by the schema"


def start_order(services: dict) -> list[str]:
    """A start order compose could use (depends_on is a DAG); raises on a cycle."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        assert name not in visiting, f"depends_on cycle through {name}"
        visiting.add(name)
        for dependency in services[name].get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in services:
        visit(name)
    return order


def test_prepare_then_graph_then_logic(compose: dict) -> None:
    services = compose["services"]
    order = start_order({name: services[name] for name in CORE})
    assert order == ["prepare", "graph", "logic"]
    graph_after = services["graph"]["depends_on"]
    assert graph_after == {"prepare": {"condition": "service_completed_successfully"}}
    logic_after = services["logic"]["depends_on"]
    assert logic_after["graph"] == {"condition": "service_healthy"}
    assert logic_after["prepare"] == {"condition": "service_completed_successfully"}


def test_prepare_is_one_shot_from_the_convert_image(compose: dict) -> None:
    prepare = compose["services"]["prepare"]
    assert prepare["restart"] == "no", "a failed prepare must stop the stack, not loop"
    assert prepare["build"]["dockerfile"] == "Dockerfile.convert"
    assert prepare["build"]["target"] in stage_names(ROOT / "Dockerfile.convert")
    assert "healthcheck" not in prepare and "ports" not in prepare


def test_default_stack_has_no_profiles_and_extras_have_theirs(compose: dict) -> None:
    services = compose["services"]
    for name in CORE:
        assert "profiles" not in services[name], f"{name} must start on a plain `up`"
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    assert set(services) == {*CORE, "prometheus", "grafana"}


def test_graph_health_means_every_configured_model_is_available(compose: dict) -> None:
    test = compose["services"]["graph"]["healthcheck"]["test"]
    assert test == ["CMD", "model-available"]
    assert compose["services"]["graph"]["healthcheck"]["start_period"]
    dockerfile = ROOT / compose["services"]["graph"]["build"]["dockerfile"]
    copies = [args for keyword, args in final_stage(dockerfile) if keyword == "COPY"]
    assert any(args.endswith("/usr/local/bin/model-available") for args in copies)


def test_logic_health_means_it_can_score(compose: dict) -> None:
    check = compose["services"]["logic"]["healthcheck"]
    assert "127.0.0.1:5000/ready" in " ".join(check["test"])
    assert check["start_period"]


def mounts(service: dict) -> dict[str, str]:
    """container path -> source (a named volume, or a host path relative to the root)."""
    result = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        result[target] = source
    return result


@pytest.mark.parametrize(
    "env",
    [{}, {"KIT_MODELS": "./my-models", "KIT_PIPELINES": "./my-pipelines"}],
    ids=["example volumes", "bring your own"],
)
def test_prepare_fills_the_volumes_graph_and_logic_read(raw: dict, env: dict[str, str]) -> None:
    compose = interpolate(raw, env)
    services = compose["services"]
    prepare, graph, logic = (mounts(services[name]) for name in CORE)
    assert graph["/models"] == prepare["/models"]
    assert logic["/srv/pipelines"] == prepare["/srv/pipelines"]
    readonly = [v for name in ("graph", "logic") for v in services[name]["volumes"]]
    assert all(volume.endswith(":ro") for volume in readonly), "serving tiers only read"
    for source in (prepare["/models"], prepare["/srv/pipelines"]):
        if env:
            assert source.startswith("./"), "a path is a bind mount of the user's folder"
        else:
            assert source in compose["volumes"], f"named volume {source} is not declared"
    # prepare learns whether the pipeline folder is the user's (never fill it with the example).
    assert services["prepare"]["environment"]["KIT_PIPELINES"] == env.get("KIT_PIPELINES", "")


def test_logic_config_path_is_inside_the_pipelines_mount(compose: dict) -> None:
    argv = exec_form(dict(final_stage(ROOT / "Dockerfile.logic"))["CMD"])
    config = Path(argv[argv.index("--config") + 1])
    assert str(config.parent) in mounts(compose["services"]["logic"])


def published_ports(service: dict) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        host_part = str(entry).rsplit(":", 1)[0]
        ports.add(int(host_part.rsplit(":", 1)[-1]))
    return ports


@pytest.mark.parametrize("variant", ["tf serving", "standalone"])
def test_ports_5000_8501_8500_are_published(compose: dict, standalone: dict, variant: str) -> None:
    services = (compose if variant == "tf serving" else standalone)["services"]
    assert published_ports(services["logic"]) == {5000}
    assert published_ports(services["graph"]) == {8500, 8501}


def test_logic_calls_the_graph_service_by_its_compose_name(compose: dict) -> None:
    environment = compose["services"]["logic"]["environment"]
    assert environment["GRAPH_SERVICE_URL"] == "http://graph:8501"


def test_logic_gets_time_to_drain_on_stop(compose: dict) -> None:
    """docker stop waits stop_grace_period before SIGKILL; gunicorn drains for up to
    LOGIC_GRACEFUL_TIMEOUT (20 s) after SIGTERM."""
    grace = compose["services"]["logic"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) >= 25
    assert compose["services"]["logic"]["restart"].startswith("on-failure:")


def test_builds_point_at_existing_dockerfiles(compose: dict, standalone: dict) -> None:
    for document in (compose, standalone):
        for name, service in document["services"].items():
            if "build" not in service:
                continue
            assert (ROOT / service["build"]["context"]).resolve() == ROOT, name
            assert (ROOT / service["build"]["dockerfile"]).exists(), name


def test_standalone_replaces_only_the_graph_image(raw: dict, standalone: dict) -> None:
    override = yaml.safe_load(STANDALONE.read_text())
    assert set(override["services"]) == {"graph"}
    graph = standalone["services"]["graph"]
    assert graph["build"]["dockerfile"] == "deploy/graph-service.Dockerfile"
    assert "graph-service" in graph["image"]
    original = interpolate(raw, {})["services"]["graph"]
    for key in ("volumes", "ports", "depends_on", "healthcheck"):
        assert graph[key] == original[key], key


def test_observability_mounts_exist(compose: dict) -> None:
    for name in ("prometheus", "grafana"):
        for source in mounts(compose["services"][name]).values():
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
