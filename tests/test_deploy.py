"""deploy/: the Dockerfile, the Kubernetes sidecar manifest and the compose file, checked without an engine
or a cluster: structure and lint, schema validation, and the cross-references a linter does not see
(ports, environment names, health and metrics paths served by a real agent)."""

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from infermeter.agent.cli import COMMANDS
from infermeter.config import Settings, parse_hostport

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "kubernetes" / "vllm-infermeter.yaml"
COMPOSE = DEPLOY / "compose" / "compose.yaml"

SETTINGS_ENV = {env for f in Settings.__dataclass_fields__.values() for env in f.metadata["env"]}
OTHER_ENV = {"PYTHONUNBUFFERED", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "INFERMETER_CONFIG"}


def check_env_names(names, where):
    unknown = sorted(n for n in names if n.startswith(("INFERMETER_", "OTEL_")) and n not in SETTINGS_ENV | OTHER_ENV)
    assert not unknown, f"{where} sets variables infermeter does not read: {unknown}"


def agent_get(agent, path):
    """Status of GET path on a real agent's API."""
    try:
        with urllib.request.urlopen(agent.api_url + path, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


# -- Dockerfile ---------------------------------------------------------------------------------------------


def dockerfile_stages():
    """[(stage name, [(instruction, value)])], with ${ARG}/${ENV} references resolved from their defaults."""
    stages, global_args = [], {}
    for ins in DockerfileParser(str(DOCKERFILE)).structure:
        kind, value = ins["instruction"], ins["value"]
        if kind == "COMMENT":
            continue
        scope = stages[-1][2] if stages else global_args
        value = re.sub(r"\$\{(\w+)\}", lambda m: scope.get(m.group(1), global_args.get(m.group(1), m.group(0))), value)
        if kind == "FROM":
            parts = value.split()
            stages.append((parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None, [], {}))
        elif kind == "ARG" and "=" in value:
            k, v = value.split("=", 1)
            scope[k] = v
        elif kind == "ENV":
            for k, v in re.findall(r"(\w+)=(\S+)", value):
                scope[k] = v
        if stages:
            stages[-1][1].append((kind, value))
    return [(name, body) for name, body, _ in stages]


def final_stage():
    return dockerfile_stages()[-1][1]


def one(body, kind):
    found = [v for k, v in body if k == kind]
    assert len(found) == 1, f"expected one {kind} in the final stage, found {found}"
    return found[0]


def docker_env():
    return dict(re.findall(r"(\w+)=(\S+)", " ".join(v for k, v in final_stage() if k == "ENV")))


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user():
    stages = dockerfile_stages()
    assert len(stages) >= 2 and stages[0][0] == "build"
    user = one(final_stage(), "USER")
    assert user.isdigit() and int(user) >= 1000, user  # numeric: Kubernetes' runAsNonRoot can verify it
    from_build = [v for k, v in final_stage() if k in ("RUN", "COPY") and re.search(r"from=(\w+)", v)]
    assert from_build and all(re.search(r"from=(\w+)", v).group(1) == "build" for v in from_build)
    assert not any(k == "RUN" and ("gcc" in v or "build-essential" in v) for k, v in final_stage())


def test_dockerfile_entrypoint_is_the_proxy_and_configuration_is_environment():
    assert json.loads(one(final_stage(), "ENTRYPOINT")) == ["infermeter", "proxy"]
    assert "proxy" in COMMANDS
    env = docker_env()
    check_env_names(env, "the Dockerfile")
    Settings.load(environ=env)  # every value the image sets parses
    exposed = {int(p) for p in one(final_stage(), "EXPOSE").split()}
    assert exposed == {parse_hostport(env["INFERMETER_LISTEN"])[1], parse_hostport(env["INFERMETER_API"])[1]}
    assert os.path.dirname(env["INFERMETER_DB"]) == json.loads(one(final_stage(), "VOLUME"))[0]


def test_dockerfile_copies_only_files_that_exist_and_adds_no_urls():
    instructions = [(k, v) for _, body in dockerfile_stages() for k, v in body]
    assert not [v for k, v in instructions if k == "ADD"], "use COPY; ADD fetches URLs and unpacks archives"
    assert not [v for k, v in instructions if k == "RUN" and re.search(r"(curl|wget)\b.*\|\s*(ba)?sh", v)]
    copied = []
    for kind, value in instructions:
        if kind != "COPY" or "--from" in value:
            continue
        *sources, _dest = [w for w in value.split() if not w.startswith("--")]
        copied += sources
    assert copied
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split("\n")
    assert "*" in ignore  # the context is the repository: send only what the image copies
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert f"!{src.rstrip('/')}" in ignore or f"!{src.rstrip('/')}/" in ignore, f"COPY {src}: excluded from the context"
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for kind, value in instructions:
        for group in re.findall(r"infermeter\[([\w,]+)\]|\.\[([\w,]+)\]", value):
            assert set(",".join(group).strip(",").split(",")) <= extras, value


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    r = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_healthcheck_asks_the_agent_for_health(agent):
    hc = one(final_stage(), "HEALTHCHECK")
    assert "--interval" in hc and "--timeout" in hc
    cmd = json.loads(hc.split("CMD", 1)[1])
    assert cmd[0] == "python"
    env = {**os.environ, "INFERMETER_API": f"0.0.0.0:{urlsplit(agent.api_url).port}"}
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=30).returncode == 0
    agent_port = urlsplit(agent.api_url).port
    import infermeter

    infermeter.shutdown()  # no agent: the check must fail
    r = subprocess.run(cmd, env={**os.environ, "INFERMETER_API": f"0.0.0.0:{agent_port}"}, capture_output=True, timeout=30)
    assert r.returncode != 0


# -- Kubernetes ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s():
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_parts(k8s):
    (deploy,) = [d for (kind, _), d in k8s.items() if kind == "Deployment"]
    pod = deploy["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    sidecar = next(c for c in containers.values() if c["image"].startswith("infermeter"))
    model = next(c for c in containers.values() if c is not sidecar)
    return deploy, pod, sidecar, model


def container_env(k8s, container):
    """The environment Kubernetes gives the container: envFrom ConfigMaps, then env (which wins)."""
    env = {}
    for src in container.get("envFrom", []):
        env.update(k8s[("ConfigMap", src["configMapRef"]["name"])]["data"])
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", "<from the downward API>")
    return env


def named_port(container, ref):
    return next(p["containerPort"] for p in container["ports"] if ref in (p.get("name"), p["containerPort"]))


def test_manifest_passes_the_kubernetes_schema(k8s):
    version = kubernetes_validate.latest_version()
    for doc in k8s.values():
        kubernetes_validate.validate(doc, version, strict=True)


def test_service_targets_the_sidecar_proxy_not_the_model_server(k8s):
    deploy, pod, sidecar, model = pod_parts(k8s)
    (svc,) = [d for (kind, _), d in k8s.items() if kind == "Service"]
    labels = pod["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    env = container_env(k8s, sidecar)
    for port in svc["spec"]["ports"]:
        assert named_port(sidecar, port["targetPort"]) == parse_hostport(env["INFERMETER_LISTEN"])[1]
        assert port["targetPort"] not in [p.get("name") for p in model["ports"]] + [p["containerPort"] for p in model["ports"]]


def test_sidecar_environment_names_settings_and_points_at_the_model_server(k8s):
    _, pod, sidecar, model = pod_parts(k8s)
    env = container_env(k8s, sidecar)
    check_env_names(env, "the sidecar")
    defined = []
    for e in sidecar.get("env", []):  # $(VAR) only expands variables defined before it
        for ref in re.findall(r"\$\((\w+)\)", e.get("value", "")):
            assert ref in defined, f"{e['name']} uses $({ref}) before it is defined"
        defined.append(e["name"])
    # every value parses (the config file is the init container's output: tested below)
    Settings.load(environ={k: v for k, v in env.items() if not v.startswith("<") and k != "INFERMETER_CONFIG"})
    upstream = parse_hostport(env["INFERMETER_UPSTREAM"])
    assert upstream[0] == "127.0.0.1"  # same Pod
    args = model["args"]
    assert upstream[1] == int(args[args.index("--port") + 1]) == named_port(model, "vllm")
    assert "nvidia.com/gpu" in model["resources"]["limits"]
    assert pod["spec"]["shareProcessNamespace"] is True  # the host collector sees the model server's processes
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"


def test_probes_and_scrape_annotations_name_paths_the_agent_serves(k8s, agent):
    _, pod, sidecar, _ = pod_parts(k8s)
    api_port = parse_hostport(container_env(k8s, sidecar)["INFERMETER_API"])[1]
    for probe in ("readinessProbe", "livenessProbe"):
        get = sidecar[probe]["httpGet"]
        assert named_port(sidecar, get["port"]) == api_port
        assert agent_get(agent, get["path"]) == 200, f"{probe} {get['path']}"
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == api_port
    assert agent_get(agent, ann["prometheus.io/path"]) == 200


def test_store_and_config_live_on_volumes_and_the_user_matches_the_image(k8s):
    _, pod, sidecar, _ = pod_parts(k8s)
    env = container_env(k8s, sidecar)
    volumes = {v["name"] for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    assert mounts[os.path.dirname(env["INFERMETER_DB"])] in volumes
    (init,) = pod["spec"]["initContainers"]
    config_dir = os.path.dirname(env["INFERMETER_CONFIG"])
    assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}[config_dir] == mounts[config_dir]
    assert container_env(k8s, init)["INFERMETER_CONFIG"] == env["INFERMETER_CONFIG"]
    assert "INFERMETER_INSTANCE" not in env  # it would win over the node's label
    image_uid = int(one(final_stage(), "USER"))
    for c in (sidecar, init):
        assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["runAsUser"] == image_uid


def test_cluster_role_lets_the_service_account_get_nodes_and_nothing_else(k8s):
    _, pod, _, _ = pod_parts(k8s)
    sa = pod["spec"]["serviceAccountName"]
    assert ("ServiceAccount", sa) in k8s
    (binding,) = [d for (kind, _), d in k8s.items() if kind == "ClusterRoleBinding"]
    assert [s["name"] for s in binding["subjects"]] == [sa]
    role = k8s[("ClusterRole", binding["roleRef"]["name"])]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]


class FakeKubeApi(http.server.BaseHTTPRequestHandler):
    labels: dict = {}
    status = 200
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"kind": "Node", "metadata": {"name": "gpu-node-1", "labels": self.labels}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def kube_api():
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeKubeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeKubeApi.seen = []
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("labels, status, expected", [
    ({"node.kubernetes.io/instance-type": "g6.xlarge", "topology.kubernetes.io/region": "us-east-1", "x": "y"}, 200,
     {"instance": "g6.xlarge", "region": "us-east-1"}),
    ({"beta.kubernetes.io/instance-type": "Standard_NC4as_T4_v3"}, 200, {"instance": "Standard_NC4as_T4_v3", "region": None}),
    ({"node.kubernetes.io/instance-type": "g6.xlarge"}, 403, {"instance": None, "region": None}),  # no RBAC: fail open
])
def test_init_container_copies_the_node_labels_into_the_config(k8s, kube_api, tmp_path, labels, status, expected):
    _, pod, _, _ = pod_parts(k8s)
    (init,) = pod["spec"]["initContainers"]
    assert init["command"] == ["python", "-c"]
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("t0ken\n")
    config = tmp_path / "infermeter.toml"
    FakeKubeApi.labels, FakeKubeApi.status = labels, status
    env = {"PATH": os.environ["PATH"], "NODE_NAME": "gpu-node-1", "INFERMETER_CONFIG": str(config), "SA_DIR": str(sa),
           "KUBE_API": f"http://127.0.0.1:{kube_api.server_address[1]}"}
    r = subprocess.run([sys.executable, "-c", init["args"][0]], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert FakeKubeApi.seen == [("/api/v1/nodes/gpu-node-1", "Bearer t0ken")]
    s = Settings.load(environ={}, config_file=str(config))
    assert {"instance": s.instance, "region": s.region} == expected
    # the ConfigMap's INFERMETER_INSTANCE, when someone sets it, wins over the label
    assert Settings.load(environ={"INFERMETER_INSTANCE": "p5.48xlarge"}, config_file=str(config)).instance == "p5.48xlarge"


# -- compose ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_builds_infermeter_from_this_repository(compose):
    svc = compose["services"]["infermeter"]
    context = (COMPOSE.parent / svc["build"]["context"]).resolve()
    assert context == ROOT and (context / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert svc["depends_on"]["model"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["model"]


def test_compose_cross_references(compose):
    services = compose["services"]
    svc = services["infermeter"]
    env = {k: str(v) for k, v in svc["environment"].items()}
    check_env_names(env, "compose's infermeter")
    Settings.load(environ=env)
    host, port = parse_hostport(env["INFERMETER_UPSTREAM"])
    model_cmd = services["model"]["command"]
    assert host == "model" and port == int(model_cmd[model_cmd.index("--port") + 1])
    for url in env["INFERMETER_METRICS_URLS"].split(","):
        assert urlsplit(url).hostname in services
    published = {int(p.rsplit(":", 1)[1]) for p in svc["ports"]}
    assert published == {parse_hostport(env["INFERMETER_LISTEN"])[1], parse_hostport(env["INFERMETER_API"])[1]}
    mounts = {m.split(":")[1]: m.split(":")[0] for m in svc["volumes"]}
    assert mounts[os.path.dirname(env["INFERMETER_DB"])] in compose["volumes"]
    for m in services["model"]["volumes"] + services["prometheus"]["volumes"]:
        assert (COMPOSE.parent / m.split(":")[0]).exists(), m


def test_prometheus_scrapes_the_agent_api(compose, agent):
    env = compose["services"]["infermeter"]["environment"]
    api_port = parse_hostport(env["INFERMETER_API"])[1]
    prom = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"infermeter:{api_port}"]
    assert agent_get(agent, job.get("metrics_path", "/metrics")) == 200


@pytest.mark.prometheus
def test_prometheus_config_passes_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    r = subprocess.run([promtool, "check", "config", str(COMPOSE.parent / "prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
