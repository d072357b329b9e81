#!/usr/bin/env python3
"""Check the container image's Dockerfile and the Helm chart without a cluster.

- The chart is linted and rendered in every mode with Helm itself (the
  helm-python-sdk package embeds Helm's library), each manifest is validated
  against the Kubernetes schemas (kubernetes-validate, strict), and the
  configuration the chart writes is checked by the binary
  (`signpost-forward check-config`) when --forward-binary is given.
- The Dockerfile's structure: multi-stage, a non-root USER, a HEALTHCHECK,
  labels, no remote ADD.

Run from the repository root in a virtual environment outside the
repository (.ci/interop does):
    pip install helm-python-sdk kubernetes-validate pyyaml
    python deploy/check.py --forward-binary target/release/signpost-forward
Prints one line per check and 'N passed, N failed' at the end.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml
from helm_python import chart as helm_chart

CHART = "charts/signpost"
KUBERNETES = "1.33.0"
# Kinds of CRDs the schemas do not know; checked for shape only.
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor"}

ENDPOINT_CONFIG = """\
resolver_port = 5353
recursive = { servers = ["10.96.0.10"] }
vpcs = [{ id = "vpc-a", cidrs = ["10.0.0.0/16"], resolver = "0.0.0.0:5353" }]
health = { address = "0.0.0.0:8080", lame_duck_ms = 5000 }
ready = { address = "0.0.0.0:8181" }
admin = { address = "0.0.0.0:9153" }
"""

MODES = {
    "forward-deployment": {},
    "forward-deployment-required-anti-affinity": {"antiAffinity": "required", "serviceMonitor": {"enabled": True}},
    "forward-daemonset": {"mode": "daemonset", "serviceMonitor": {"enabled": True}},
    "forward-daemonset-existing-address": {"mode": "daemonset", "daemonset": {"createInterface": False}},
    "endpoint-deployment": {"program": "endpoint", "config": ENDPOINT_CONFIG, "readyRequiresUpstream": False},
    "forward-deployment-dnstap-sidecar": {
        "dnstap": {"enabled": True, "sidecar": {
            "name": "collector", "image": "debian:12-slim",
            "command": ["fstrm_capture", "-t", "protobuf:dnstap.Dnstap", "-u", "/run/dnstap/dnstap.sock",
                        "-w", "/run/dnstap/capture.fstrm"]}},
        "readyRequiresUpstream": False,
    },
    "forward-daemonset-dnstap-tls": {
        "mode": "daemonset",
        "dnstap": {"enabled": True, "address": "10.96.0.50:6000", "identity": "node-a",
                   "tls": {"enabled": True, "serverName": "collector.example", "secretName": "dnstap-client",
                           "clientCertificate": True}},
    },
}

# What each mode's written configuration must say (after the chart's own lines).
CONFIG_LINES = {
    "forward-deployment": ["require_upstream = true"],
    "forward-deployment-dnstap-sidecar": ["require_upstream = false", "[dnstap]",
                                          'socket_path = "/run/dnstap/dnstap.sock"'],
    "forward-daemonset-dnstap-tls": ["[dnstap]", 'address = "10.96.0.50:6000"', "tls = true",
                                     'tls_server_name = "collector.example"',
                                     'tls_cert_bundle = "/etc/signpost-dnstap/ca.crt"',
                                     'tls_client_cert_file = "/etc/signpost-dnstap/tls.crt"',
                                     'tls_client_key_file = "/etc/signpost-dnstap/tls.key"', 'identity = "node-a"'],
}

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}")


def manifests(mode, values):
    with helm_chart.Chart.load(CHART) as chart:
        rendered = chart.render(values=values, name="dns", namespace="kube-system")
    documents = []
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml") or not text.strip():
            continue
        for document in yaml.safe_load_all(text):
            if document:
                documents.append((path, document))
    return documents


def by_kind(documents, kind):
    return [document for _, document in documents if document.get("kind") == kind]


def check_chart(forward_binary):
    report = helm_chart.lint(CHART, strict=True, kube_version=f"v{KUBERNETES}")
    errors = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
    check("helm lint --strict", not errors, str(errors))
    for mode, values in MODES.items():
        try:
            documents = manifests(mode, values)
        except Exception as error:  # noqa: BLE001 - the renderer's error is the finding
            check(f"{mode}: renders", False, str(error))
            continue
        check(f"{mode}: renders", bool(documents))
        for path, document in documents:
            kind = document.get("kind")
            if kind in CUSTOM_KINDS:
                check(f"{mode}: {path} {kind} has a selector", "selector" in document.get("spec", {}))
                continue
            try:
                kubernetes_validate.validate(document, KUBERNETES, strict=True)
                check(f"{mode}: {path} {kind} is valid Kubernetes {KUBERNETES}", True)
            except Exception as error:  # noqa: BLE001
                check(f"{mode}: {path} {kind} is valid Kubernetes {KUBERNETES}", False, str(error)[:400])
        workloads = by_kind(documents, "Deployment") + by_kind(documents, "DaemonSet")
        check(f"{mode}: one workload", len(workloads) == 1, str([w["kind"] for w in workloads]))
        if not workloads:
            continue
        pod = workloads[0]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        check(f"{mode}: liveness on /health", container["livenessProbe"]["httpGet"]["path"] == "/health")
        check(f"{mode}: readiness on /ready", container["readinessProbe"]["httpGet"]["path"] == "/ready")
        security = container["securityContext"]
        check(f"{mode}: read-only root, all capabilities dropped",
              security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"])
        check(f"{mode}: only NET_BIND_SERVICE added",
              security["capabilities"].get("add", ["NET_BIND_SERVICE"]) == ["NET_BIND_SERVICE"])
        check(f"{mode}: non-root", pod["securityContext"]["runAsNonRoot"] is True)
        daemonset = values.get("mode") == "daemonset"
        check(f"{mode}: host network only as a DaemonSet", bool(pod.get("hostNetwork")) == daemonset)
        if not daemonset:
            check(f"{mode}: PodDisruptionBudget", len(by_kind(documents, "PodDisruptionBudget")) == 1)
            services = by_kind(documents, "Service")
            protocols = sorted(p["protocol"] for p in services[0]["spec"]["ports"] if p["port"] == 53) if services else []
            check(f"{mode}: Service on 53/UDP and 53/TCP", protocols == ["TCP", "UDP"], str(protocols))
        # The endpoint's configuration is the user's: the value reaches it on the command line.
        endpoint = values.get("program") == "endpoint"
        require = str(values.get("readyRequiresUpstream", True)).lower()
        check(f"{mode}: readyRequiresUpstream on the command line only for the endpoint",
              (f"--ready-require-upstream={require}" in container["args"]) == endpoint, str(container["args"]))
        configmap = by_kind(documents, "ConfigMap")[0]
        written = configmap["data"].get("forward.toml", "")
        for line in CONFIG_LINES.get(mode, []):
            check(f"{mode}: the configuration says {line}", line in written.splitlines(), written)
        dnstap = values.get("dnstap", {})
        volumes = {volume["name"] for volume in pod["volumes"]}
        mounts = {mount["name"] for mount in container["volumeMounts"]}
        check(f"{mode}: the dnstap volume only with dnstap",
              ("dnstap" in volumes and "dnstap" in mounts) == bool(dnstap.get("enabled")), str(volumes))
        if dnstap.get("sidecar"):
            sidecars = [c for c in pod["containers"] if c["name"] == dnstap["sidecar"]["name"]]
            check(f"{mode}: the collector sidecar shares /run/dnstap",
                  len(sidecars) == 1 and {"name": "dnstap", "mountPath": "/run/dnstap"} in sidecars[0]["volumeMounts"],
                  str(pod["containers"]))
        if dnstap.get("tls", {}).get("secretName"):
            secrets = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == dnstap["tls"]["secretName"]]
            check(f"{mode}: the dnstap TLS Secret is mounted",
                  len(secrets) == 1 and "dnstap-tls" in mounts, str(pod["volumes"]))
        if values.get("program", "forward") == "forward" and forward_binary:
            with tempfile.TemporaryDirectory() as directory:
                path = os.path.join(directory, "forward.toml")
                with open(path, "w") as file:
                    file.write(configmap["data"]["forward.toml"])
                run = subprocess.run([forward_binary, "check-config", path], capture_output=True, text=True, timeout=60)
                check(f"{mode}: signpost-forward check-config accepts the ConfigMap", run.returncode == 0,
                      run.stdout + run.stderr)


def check_dockerfile():
    text = open("Dockerfile").read()
    instructions = [line.split(None, 1) for line in re.sub(r"\\\n", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    stages = [rest for keyword, *rest in instructions if keyword.upper() == "FROM"]
    check("Dockerfile: multi-stage", len(stages) >= 2, str(stages))
    users = [rest[0].strip() for keyword, *rest in instructions if keyword.upper() == "USER"]
    check("Dockerfile: the last USER is not root", bool(users) and users[-1].split(":")[0] not in ("0", "root"),
          str(users))
    check("Dockerfile: HEALTHCHECK", any(keyword.upper() == "HEALTHCHECK" for keyword, *_ in instructions))
    check("Dockerfile: OCI labels", "org.opencontainers.image.source" in text)
    check("Dockerfile: no remote ADD",
          not any(keyword.upper() == "ADD" and "://" in " ".join(rest) for keyword, *rest in instructions))
    check("Dockerfile: ENTRYPOINT in exec form",
          any(keyword.upper() == "ENTRYPOINT" and rest[0].strip().startswith("[") for keyword, *rest in instructions))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward-binary", help="signpost-forward, to check the configuration the chart writes")
    arguments = parser.parse_args()
    check_dockerfile()
    check_chart(arguments.forward_binary)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
