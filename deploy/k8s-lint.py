"""Validates deploy/k8s offline (`make k8s-lint`, part of `make lint`).

- Every resource in every manifest is checked against the Kubernetes JSON schemas that the
  `kubernetes-validate` package ships (strict: unknown fields are errors, so a misspelled key
  fails instead of being silently dropped by the API server), for the oldest and the newest
  Kubernetes version we support. An unknown kind or apiVersion is an error too.
- YAML is parsed strictly: a duplicate key (which a YAML parser otherwise resolves silently to
  the last value) is an error.
- kustomization.yaml must list exactly the manifests in the directory.
- Wharf's own rules for its workloads: probes on /readyz and /healthz, resource requests and
  limits, non-root, read-only root filesystem, no capabilities.
- deploy/compose.yaml (next to the directory, when there): only the gateways publish ports
  (other UIs only on 127.0.0.1), and no password or secret is written into the file: each is
  a required variable, `${NAME:?…}` (issue #12, finding 5).

Usage: python deploy/k8s-lint.py [DIR]   (default: deploy/k8s next to this file)
"""

from __future__ import annotations

import sys
from pathlib import Path

import kubernetes_validate
import yaml

# Oldest supported (autoscaling/v2 and policy/v1 are GA well before it) and newest known.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
WORKLOAD_KINDS = {"Deployment", "Job"}


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (merge keys `<<` may still be overridden)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_documents(path: Path) -> list[dict]:
    with path.open() as stream:
        return [doc for doc in yaml.load_all(stream, Loader=StrictLoader) if doc is not None]


def name_of(resource: dict) -> str:
    return f"{resource.get('kind', '?')}/{resource.get('metadata', {}).get('name', '?')}"


def workload_rules(resource: dict) -> list[str]:
    """Wharf's deployment rules for a Deployment or Job."""
    problems = []
    spec = resource["spec"]["template"]["spec"]
    pod_security = spec.get("securityContext", {})
    if pod_security.get("runAsNonRoot") is not True:
        problems.append("pod securityContext.runAsNonRoot must be true")
    if pod_security.get("runAsUser") != 10001:
        problems.append("pod securityContext.runAsUser must be 10001 (the image's user wharf)")
    for container in spec["containers"]:
        where = f"container {container['name']}"
        security = container.get("securityContext", {})
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: securityContext.readOnlyRootFilesystem must be true")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: securityContext.capabilities.drop must be [ALL]")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource_name in ("cpu", "memory"):
                if resource_name not in resources.get(kind, {}):
                    problems.append(f"{where}: resources.{kind}.{resource_name} is missing")
        if resource["kind"] == "Deployment":
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                got = container.get(probe, {}).get("httpGet", {}).get("path")
                if got != path:
                    problems.append(f"{where}: {probe} must be an httpGet of {path} (got {got})")
    return problems


def compose_problems(path: Path) -> list[str]:
    """What deploy/compose.yaml does against the trust boundary (docs/security.md)."""
    (compose,) = load_documents(path)
    problems = []
    for name, service in (compose.get("services") or {}).items():
        for port in service.get("ports") or []:
            if not name.startswith("gateway") and not str(port).startswith("127.0.0.1:"):
                problems.append(f"{path}: service {name} publishes {port} beyond 127.0.0.1")
    def walk(where: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{where}.{key}", inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{where}[{index}]", inner)
        elif isinstance(value, str):
            secret_key = any(word in where.upper() for word in ("PASSWORD", "SECRET"))
            in_url = "://" in value and "@" in value
            if (secret_key or in_url) and "${" not in value:
                problems.append(f"{path}: {where} holds a fixed credential")
            if "${" in value and ("PASSWORD" in value or "SECRET" in value) and ":?" not in value:
                problems.append(f"{path}: {where} has a default for a secret; use ${{NAME:?…}}")
    walk("compose", compose)
    return problems


def main() -> int:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "k8s"
    errors: list[str] = []
    checked = 0

    kustomization_path = directory / "kustomization.yaml"
    try:
        (kustomization,) = load_documents(kustomization_path)
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"k8s-lint: {kustomization_path}: {error}", file=sys.stderr)
        return 1
    listed = set(kustomization.get("resources", []))
    present = {p.name for p in directory.glob("*.yaml")} | {p.name for p in directory.glob("*.yml")}
    present.discard(kustomization_path.name)
    for missing in sorted(listed - present):
        errors.append(f"{kustomization_path}: lists {missing}, which does not exist")
    for unlisted in sorted(present - listed):
        errors.append(f"{kustomization_path}: does not list {unlisted}")

    for path in sorted(directory / name for name in present):
        try:
            documents = load_documents(path)
        except yaml.YAMLError as error:
            errors.append(f"{path}: {error}")
            continue
        if not documents:
            errors.append(f"{path}: no resources")
        for resource in documents:
            label = f"{path}: {name_of(resource)}"
            if not isinstance(resource, dict) or "kind" not in resource or "apiVersion" not in resource:
                errors.append(f"{label}: not a Kubernetes resource (kind and apiVersion needed)")
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(resource, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    at = ".".join(str(p) for p in error.path) or "(root)"
                    errors.append(f"{label} (Kubernetes {version}): {at}: {error.message}")
                except kubernetes_validate.SchemaNotFoundError:
                    errors.append(
                        f"{label}: no schema for {resource['apiVersion']} {resource['kind']} "
                        f"in Kubernetes {version}"
                    )
            if resource["kind"] in WORKLOAD_KINDS:
                errors.extend(f"{label}: {problem}" for problem in workload_rules(resource))
            checked += 1

    compose_path = directory.parent / "compose.yaml"
    if compose_path.exists():
        errors.extend(compose_problems(compose_path))

    for error in errors:
        print(f"k8s-lint: {error}", file=sys.stderr)
    if errors:
        print(f"k8s-lint: {len(errors)} problem(s) in {directory}", file=sys.stderr)
        return 1
    print(
        f"k8s-lint: {checked} resources in {len(present)} files valid against Kubernetes "
        f"{' and '.join(KUBERNETES_VERSIONS)} (strict schemas)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
