"""The TF Serving release that serves the models matches the TensorFlow that wrote them.

One place holds the tag: `ARG TF_SERVING_VERSION` in graph_service/Dockerfile (compose builds
that file, Kubernetes runs the image built from it, docs/deployment.md names it). The
converters' TensorFlow pin lives in pyproject.toml and requirements.txt. The minor versions must
agree, unless the Versions section of docs/deployment.md records an explicit exception line:
    TF Serving exception: tensorflow/serving:X.Y.Z with TensorFlow A.B (why)
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.deploy.dockerfiles import ROOT, instructions, tracked_files

DOCKERFILE = ROOT / "graph_service" / "Dockerfile"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"


def tf_serving_version() -> str:
    steps = instructions(DOCKERFILE)
    args = [rest for keyword, rest in steps if keyword == "ARG"]
    (version,) = [a.split("=", 1)[1] for a in args if a.startswith("TF_SERVING_VERSION=")]
    return version


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def pinned_minor(requirement: str) -> str:
    match = re.fullmatch(r"[\w-]+==(\d+\.\d+)(\.\*|\.\d+)?", requirement.replace(" ", ""))
    assert match, f"{requirement!r} must pin an exact minor version (==X.Y.* or ==X.Y.Z)"
    return match.group(1)


def converter_pins() -> dict[str, str]:
    """Where the TensorFlow minor that writes SavedModels is pinned -> that minor."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    found = {}
    for group in ("convert", "graph"):
        for dep in extras[group]:
            name = re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower()
            if name in {"tensorflow", "tensorflow-serving-api"}:
                found[f"pyproject [{group}] {name}"] = pinned_minor(dep)
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("==")[0].strip().lower()
        if name in {"tensorflow", "tensorflow-serving-api"}:
            found[f"requirements.txt {name}"] = pinned_minor(line.strip())
    return found


def drift_problems(serving: str, pins: dict[str, str], doc: str) -> list[str]:
    """Pins whose minor differs from the image's, unless docs/deployment.md documents it."""
    problems = []
    for where, tf_minor in pins.items():
        if tf_minor == minor(serving):
            continue
        exception = f"TF Serving exception: tensorflow/serving:{serving} with TensorFlow {tf_minor}"
        if exception not in doc:
            problems.append(
                f"{where} is {tf_minor}.x but graph_service/Dockerfile serves with "
                f"tensorflow/serving:{serving}; align them or add '{exception} (why)' to "
                f"docs/deployment.md (Versions)"
            )
    return problems


def test_graph_image_is_built_from_the_version_argument() -> None:
    froms = [rest for keyword, rest in instructions(DOCKERFILE) if keyword == "FROM"]
    assert froms == ["tensorflow/serving:${TF_SERVING_VERSION}"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", tf_serving_version())


def test_converters_pin_the_tensorflow_minor_they_write_savedmodels_with() -> None:
    pins = converter_pins()
    assert {
        "pyproject [convert] tensorflow",
        "requirements.txt tensorflow",
        "requirements.txt tensorflow-serving-api",
    } <= set(pins)


def test_tf_serving_minor_matches_the_converters_tensorflow() -> None:
    versions = DEPLOYMENT_DOC.read_text()
    versions = versions[versions.index("\n## Versions\n") :]
    versions = versions[: versions.find("\n## ", 1)]
    assert drift_problems(tf_serving_version(), converter_pins(), versions) == []


@pytest.mark.parametrize("documented", [False, True])
def test_a_drift_fails_unless_documented(documented: bool) -> None:
    pins = {"pyproject [convert] tensorflow": "2.22"}
    doc = "TF Serving exception: tensorflow/serving:2.21.0 with TensorFlow 2.22 (no image)"
    problems = drift_problems("2.21.0", pins, doc if documented else "")
    assert bool(problems) is not documented
    if problems:
        assert "tensorflow/serving:2.21.0" in problems[0] and "2.22" in problems[0]


def test_every_mention_of_the_image_names_the_same_tag() -> None:
    """README, docs, compose and Kubernetes never name another tensorflow/serving tag."""
    expected = tf_serving_version()
    mentions = {}
    for name in tracked_files():
        path = ROOT / name
        if (
            name.startswith("tests/")
            or path.suffix in {".json", ".pkl", ".h5"}
            or not path.is_file()
        ):
            continue
        text = path.read_text(errors="ignore")
        for tag in re.findall(r"tensorflow/serving:(\d[\w.-]*)", text):
            if tag != expected:
                mentions[name] = tag
    assert mentions == {}
    assert f"tensorflow/serving:{expected}" in DEPLOYMENT_DOC.read_text()
