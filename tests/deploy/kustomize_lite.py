"""Render a kustomization offline: the subset of kustomize this project uses.

No kustomize binary is installable from PyPI or Debian, and `kubectl apply -k` needs a cluster,
so the tests render deploy/k8s themselves: `resources` (files or folders with their own
kustomization, recursively), `images` (newName/newTag/digest on every container and init
container), `labels` (pairs added to metadata.labels; includeSelectors/includeTemplates as
kustomize does) and `patches` with inline JSON 6902 operations (add, replace, remove) and a
kind/name target. Anything else in a kustomization is an error, so a field this renderer does
not know cannot be silently ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

KNOWN = {"apiVersion", "kind", "resources", "images", "labels", "patches"}


class KustomizeError(Exception):
    pass


def _pointer(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for raw in path.strip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        parts.append(int(part) if part.isdigit() else part)
    return parts


def _apply_op(document: dict, op: dict) -> None:
    *parents, last = _pointer(op["path"])
    node = document
    for part in parents:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise KustomizeError(f"patch path {op['path']} does not exist") from None
    kind = op["op"]
    if kind == "remove":
        try:
            del node[last]
        except (KeyError, IndexError, TypeError):
            raise KustomizeError(f"cannot remove {op['path']}: not there") from None
    elif kind == "replace":
        if isinstance(node, dict) and last not in node:
            raise KustomizeError(f"cannot replace {op['path']}: not there")
        node[last] = copy.deepcopy(op["value"])
    elif kind == "add":
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            node.insert(index, copy.deepcopy(op["value"]))
        else:
            node[last] = copy.deepcopy(op["value"])
    else:
        raise KustomizeError(f"unsupported patch op {kind!r}")


def _set_image(container: dict, images: list[dict]) -> None:
    reference = container.get("image", "")
    name, _, tag = reference.partition(":")
    for image in images:
        if image["name"] == name:
            new_name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new_name}@{image['digest']}"
            else:
                container["image"] = f"{new_name}:{image.get('newTag', tag)}"


def _pod_spec(resource: dict) -> dict | None:
    spec = resource.get("spec", {})
    if resource["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return spec["template"]["spec"]
    if resource["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    if resource["kind"] == "Pod":
        return spec
    return None


def render(folder: Path) -> list[dict]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise KustomizeError(f"{folder}: kustomize-lite does not know {sorted(unknown)}")
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            resources += render(path)
        elif path.exists():
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        else:
            raise KustomizeError(f"{folder}: resource {entry} does not exist")
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        operations = yaml.safe_load(patch["patch"])
        matched = [
            resource
            for resource in resources
            if resource["kind"] == target.get("kind", resource["kind"])
            and resource["metadata"]["name"] == target.get("name", resource["metadata"]["name"])
        ]
        if not matched:
            raise KustomizeError(f"{folder}: patch target {target} matches nothing")
        for resource in matched:
            for operation in operations:
                _apply_op(resource, operation)
    for resource in resources:
        pod = _pod_spec(resource)
        if pod is not None:
            for container in pod.get("initContainers", []) + pod.get("containers", []):
                _set_image(container, kustomization.get("images", []))
        for label_set in kustomization.get("labels", []):
            pairs = label_set["pairs"]
            resource["metadata"].setdefault("labels", {}).update(pairs)
            if label_set.get("includeSelectors"):
                raise KustomizeError("includeSelectors is not supported by kustomize-lite")
            if label_set.get("includeTemplates") and pod is not None:
                resource["spec"]["template"]["metadata"].setdefault("labels", {}).update(pairs)
    return resources
