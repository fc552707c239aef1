"""Checks of deploy/ that need YAML, run by `cargo xtask deploy` (python3 with PyYAML
and jsonschema, both installed with kubernetes-validate by .ci/run).

Usage: python3 -c <this file> ROOT. When every check passes, prints the arguments of
the Dockerfile's `cargo build` (`build ARGS`), the binaries it copies (`copy SRC`) and
its HEALTHCHECK command, one argument a line (`arg A`); else the failures on stderr,
exit 1.
"""
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

root = Path(sys.argv[1])
kube = root / "deploy" / "kubernetes"
failures = []


def fail(msg):
    failures.append(msg)


def docs(name):
    return [d for d in yaml.safe_load_all((kube / name).read_text()) if d]


# The two Prometheus Operator resources against the schema of the fields they use.
schema = json.loads((kube / "monitors.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
monitors = docs("servicemonitor.yaml") + docs("podmonitor.yaml")
for m in monitors:
    for e in validator.iter_errors(m):
        path = ".".join(str(p) for p in e.absolute_path)
        fail(f"{m.get('kind')} {path}: {e.message}")

# The schema catches a misspelt field (objects take no other field).
typo = json.loads(json.dumps(monitors[0]))
typo["spec"]["endpoints" if typo["kind"] == "ServiceMonitor" else "podMetricsEndpoints"][0][
    "scrapeTimout"] = "5s"
if not any("scrapeTimout" in e.message for e in validator.iter_errors(typo)):
    fail("the monitors' schema accepts a misspelt field (scrapeTimout)")

(deployment,) = docs("deployment.yaml")
services = docs("service.yaml")
pod = deployment["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
(container,) = pod["spec"]["containers"]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
env = {e["name"]: e.get("value") for e in container.get("env", [])}


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# Probes on the named `health` port, at the toolkit's default paths.
for probe, path in [("startupProbe", "/startup"), ("livenessProbe", "/live"),
                    ("readinessProbe", "/ready")]:
    get = container.get(probe, {}).get("httpGet", {})
    if get.get("port") != "health" or get.get("path") != path:
        fail(f"{probe}: expected GET {path} on port `health`, got {get}")
if "health" not in ports:
    fail("the container has no port named `health`")

# Non-root, read-only root file system.
sc, psc = container.get("securityContext", {}), pod["spec"].get("securityContext", {})
if sc.get("readOnlyRootFilesystem") is not True:
    fail("container securityContext.readOnlyRootFilesystem is not true")
if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
    fail("pod securityContext needs runAsNonRoot: true and a numeric runAsUser")
if "memory" not in container.get("resources", {}).get("limits", {}):
    fail("the container has no memory limit")

# The grace period covers the drain delay and the shutdown timeout (the toolkit's
# defaults, read from the code of the shared start-up settings).
setup = (root / "crates/piko-obs-lifecycle/src/setup.rs").read_text()
timeout = re.search(r"DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs\((\d+)\)", setup)
drain = re.search(r"DEFAULT_PROD_DRAIN_DELAY: Duration = Duration::from_secs\((\d+)\)", setup)
if not timeout or not drain:
    fail("the default shutdown timeout or prod drain delay is not found in "
         "crates/piko-obs-lifecycle/src/setup.rs")
else:
    drain_s = int(env["SHUTDOWN_DRAIN_DELAY_MS"]) / 1000 if env.get(
        "SHUTDOWN_DRAIN_DELAY_MS") else int(drain.group(1))
    need = drain_s + int(timeout.group(1))
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if grace <= need:
        fail(f"terminationGracePeriodSeconds {grace} is not above the drain delay "
             f"({drain_s} s) plus the shutdown timeout ({timeout.group(1)} s)")
    if drain_s < 1:
        fail("the drain delay is under 1 s: the endpoints cannot be updated in time")

# Every variable the Deployment sets is one the code reads (a misspelt name would be
# ignored silently), and the dead-letter file is on a writable volume.
sources = "".join(p.read_text() for p in (root / "crates").rglob("*.rs"))
for name in env:
    if f'"{name}"' not in sources:
        fail(f"the Deployment sets {name}, which no code reads")
mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
dead_letters = env.get("PIKO_NOTIFICATION_DEAD_LETTER_PATH")
if dead_letters and not any(
        dead_letters.startswith(path.rstrip("/") + "/") and not m.get("readOnly")
        for path, m in mounts.items()):
    fail(f"PIKO_NOTIFICATION_DEAD_LETTER_PATH {dead_letters} is not on a writable volume "
         "(the root file system is read-only)")

# Services select the pods and target named container ports; the ServiceMonitor selects
# exactly one Service and scrapes its port that leads to `health`; the PodMonitor the
# container port `health`.
for s in services:
    if not selects({"matchLabels": s["spec"]["selector"]}, pod_labels):
        fail(f"Service {s['metadata']['name']} does not select the Deployment's pods")
    for p in s["spec"]["ports"]:
        if p.get("targetPort") not in ports:
            fail(f"Service {s['metadata']['name']} port {p['name']}: targetPort "
                 f"{p.get('targetPort')!r} is not a container port name")
for m in monitors:
    if m["kind"] == "ServiceMonitor":
        chosen = [s for s in services if selects(m["spec"]["selector"], s["metadata"]["labels"])]
        if len(chosen) != 1:
            fail(f"the ServiceMonitor selects {len(chosen)} Services, not 1 "
                 "(each pod would be scraped once per Service)")
        for ep in m["spec"]["endpoints"]:
            for s in chosen:
                target = {p["name"]: p.get("targetPort") for p in s["spec"]["ports"]}
                if target.get(ep["port"]) != "health":
                    fail(f"ServiceMonitor port {ep['port']!r} does not lead to `health`")
    else:
        if not selects(m["spec"]["selector"], pod_labels):
            fail("the PodMonitor does not select the Deployment's pods")
        for ep in m["spec"]["podMetricsEndpoints"]:
            if ep["port"] != "health":
                fail(f"PodMonitor port {ep['port']!r} is not `health`")

# Every alert of alerts.yml is unit-tested: quiet at least once, firing at least once.
rules = yaml.safe_load((root / "deploy/prometheus/alerts.yml").read_text())
tests = yaml.safe_load((root / "deploy/prometheus/alerts.test.yml").read_text())
alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
fired, quiet = set(), set()
for t in tests["tests"]:
    for a in t.get("alert_rule_test", []):
        (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
for a in sorted(alerts):
    if a not in fired or a not in quiet:
        fail(f"alert {a} needs a test where it fires and one where it stays quiet")

# The Dockerfile agrees with the Deployment: user, ports, probe.
dockerfile = (root / "Dockerfile").read_text().replace("\\\n", " ")
user = re.search(r"^USER (\d+)(?::(\d+))?$", dockerfile, re.M)
if not user or int(user.group(1)) != psc.get("runAsUser"):
    fail(f"Dockerfile USER {user and user.group(0)} is not the pod's runAsUser "
         f"{psc.get('runAsUser')}")
exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.M)
if not exposed or sorted(int(p) for p in exposed.group(1).split()) != sorted(ports.values()):
    fail(f"Dockerfile EXPOSE does not list the container ports {sorted(ports.values())}")
if not re.search(r"^FROM gcr\.io/distroless/\S+:nonroot$", dockerfile, re.M):
    fail("the runtime image is not a distroless :nonroot one")
check = re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", dockerfile, re.M)
argv = json.loads(check.group(1)) if check else []
want = f"http://127.0.0.1:{ports.get('health')}{container['livenessProbe']['httpGet']['path']}"
if not argv or argv[0] != "/usr/local/bin/piko-obs-probe" or argv[-1] != want:
    fail(f"HEALTHCHECK is not piko-obs-probe on {want}: {argv}")
copied = re.findall(r"^COPY --from=build /src/(\S+) (\S+)$", dockerfile, re.M)
if argv and argv[0] not in {dst for _, dst in copied}:
    fail(f"the HEALTHCHECK binary {argv[0]} is not copied into the image")

build = re.search(r"^RUN cargo build (.+)$", dockerfile, re.M)
if not build or "--release" not in build.group(1).split():
    fail("the Dockerfile has no `RUN cargo build --release ...` line")

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"build {build.group(1)}")
for src, _ in copied:
    print(f"copy {src}")
for a in argv:
    print(f"arg {a}")
