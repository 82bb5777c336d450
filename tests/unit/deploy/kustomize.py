"""A small kustomize renderer for the subset deploy/k8s uses, so the overlays are checked offline.

Supported: ``resources`` (files and kustomization folders), ``configMapGenerator`` (literals, envs;
behaviour create/merge/replace; ``options.disableNameSuffixHash``) with content-hash suffixes and
reference renames, ``patches`` (JSON 6902 only, with a kind/name target), ``namespace`` (with the
namespace of ServiceAccount subjects of role bindings), ``labels`` (metadata only), ``images``,
``replicas`` and ``configurations`` (read by kustomize only: ConfigMap references are renamed
wherever they are). Anything else in a kustomization is refused, so an overlay cannot quietly use a
feature these tests would not render. The hash differs from kustomize's (same role, not the same
digits).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "configurations",
    "patches",
    "namespace",
    "labels",
    "images",
    "replicas",
}
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
REPLICATED = {"Deployment", "StatefulSet", "ReplicaSet"}
_GENERATED = "__generated_name__"
_NO_HASH = "__no_name_suffix_hash__"
GENERATOR_OPTIONS = {"disableNameSuffixHash"}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not support, or is inconsistent."""


def load_documents(path: Path) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _env_file(path: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise KustomizeError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        data[key.strip()] = value
    return data


def _generate(root: Path, spec: Manifest) -> dict[str, str]:
    data: dict[str, str] = {}
    for literal in spec.get("literals", []):
        key, sep, value = str(literal).partition("=")
        if not sep:
            raise KustomizeError(f"{root}: literal {literal!r} is not KEY=VALUE")
        data[key] = value
    for env in spec.get("envs", []):
        data.update(_env_file(root / env))
    return data


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _apply_op(doc: Manifest, op: Manifest) -> None:
    *parents, last = _pointer(op["path"])
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    kind = op["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if kind == "add":
            node.insert(index, op["value"])
        elif kind == "replace":
            node[index] = op["value"]
        elif kind == "remove":
            del node[index]
        else:
            raise KustomizeError(f"unsupported patch op {kind!r}")
        return
    if kind == "replace" and last not in node:
        raise KustomizeError(f"replace of a missing path {op['path']!r}")
    if kind in {"add", "replace"}:
        node[last] = op["value"]
    elif kind == "remove":
        del node[last]
    else:
        raise KustomizeError(f"unsupported patch op {kind!r}")


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every mapping in a manifest, depth first."""
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def containers(doc: Manifest) -> list[Manifest]:
    """Every container and initContainer anywhere in a manifest (pods, templates, CRDs)."""
    out: list[Manifest] = []
    for mapping in _walk(doc):
        for key in ("containers", "initContainers"):
            value = mapping.get(key)
            if isinstance(value, list):
                out.extend(c for c in value if isinstance(c, dict) and "image" in c)
    return out


def _split_image(image: str) -> tuple[str, str | None]:
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    return name, tag or None


def _build(root: Path) -> list[Manifest]:
    kfile = root / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{root} has no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)}")
    docs: list[Manifest] = []
    for entry in k.get("resources", []):
        path = (root / entry).resolve()
        docs.extend(_build(path) if path.is_dir() else load_documents(path))

    for spec in k.get("configMapGenerator", []):
        name, behavior = spec["name"], spec.get("behavior", "create")
        data = _generate(root, spec)
        options = spec.get("options", {})
        if set(options) - GENERATOR_OPTIONS:
            raise KustomizeError(f"{kfile}: unsupported generator options {sorted(options)}")
        existing = [d for d in docs if d.get(_GENERATED) == name]
        if behavior == "create":
            if existing:
                raise KustomizeError(f"{kfile}: ConfigMap {name} is generated twice")
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name},
                    "data": data,
                    _GENERATED: name,
                    _NO_HASH: bool(options.get("disableNameSuffixHash")),
                }
            )
        elif behavior in {"merge", "replace"}:
            if not existing:
                raise KustomizeError(f"{kfile}: {behavior} of ConfigMap {name} not in a base")
            cm = existing[0]
            cm["data"] = {**cm["data"], **data} if behavior == "merge" else data
            if "disableNameSuffixHash" in options:
                cm[_NO_HASH] = bool(options["disableNameSuffixHash"])
        else:
            raise KustomizeError(f"{kfile}: unknown behavior {behavior!r}")

    for patch in k.get("patches", []):
        target, ops = patch.get("target", {}), yaml.safe_load(patch["patch"])
        if not isinstance(ops, list):
            raise KustomizeError(f"{kfile}: only JSON 6902 patches (a list of ops) are rendered")
        matched = [
            d
            for d in docs
            if d["kind"] == target.get("kind") and d["metadata"]["name"] == target.get("name")
        ]
        if len(matched) != 1:
            raise KustomizeError(f"{kfile}: patch target {target} matches {len(matched)} objects")
        for op in ops:
            _apply_op(matched[0], op)

    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
            for subject in d.get("subjects", []) if d["kind"].endswith("RoleBinding") else []:
                if subject.get("kind") == "ServiceAccount":
                    subject.setdefault("namespace", k["namespace"])
    for group in k.get("labels", []):
        if group.get("includeSelectors") or group.get("includeTemplates"):
            raise KustomizeError(f"{kfile}: labels are rendered on metadata only")
        for d in docs:
            d["metadata"].setdefault("labels", {}).update(group["pairs"])
    for rule in k.get("images", []):
        for container in (c for d in docs for c in containers(d)):
            name, tag = _split_image(container["image"])
            if name == rule["name"]:
                new_tag = rule.get("newTag", tag)
                new_name = rule.get("newName", name)
                container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name
    for rule in k.get("replicas", []):
        matched = [
            d for d in docs if d["kind"] in REPLICATED and d["metadata"]["name"] == rule["name"]
        ]
        if not matched:
            raise KustomizeError(f"{kfile}: replicas for unknown workload {rule['name']!r}")
        for d in matched:
            d["spec"]["replicas"] = rule["count"]
    return docs


def _rename_references(docs: list[Manifest], renames: dict[str, str]) -> None:
    for doc in docs:
        for mapping in _walk(doc):
            for key in ("configMapKeyRef", "configMapRef", "configMap"):
                ref = mapping.get(key)
                if isinstance(ref, dict) and ref.get("name") in renames:
                    ref["name"] = renames[ref["name"]]


def build(root: Path) -> list[Manifest]:
    """Render the kustomization folder ``root`` into a list of manifests."""
    docs = copy.deepcopy(_build(root))
    renames: dict[str, str] = {}
    for d in docs:
        original = d.pop(_GENERATED, None)
        if d.pop(_NO_HASH, False):
            continue
        if original is not None:
            digest = hashlib.sha256(json.dumps(d["data"], sort_keys=True).encode()).hexdigest()
            d["metadata"]["name"] = f"{original}-{digest[:10]}"
            renames[original] = d["metadata"]["name"]
    _rename_references(docs, renames)
    return docs
