"""Offline checks of everything that deploys Audio Diary.

  1. Kubernetes: `kubectl kustomize` renders deploy/base and every overlay; each built-in object
     validates (strict) against kubernetes-validate's schema for the cluster's Kubernetes version;
     the KEDA and Karpenter objects (no schema) have the fields their controllers need; pods are
     locked down (non-root, read-only root, no capabilities, RuntimeDefault seccomp).
  2. Terraform: every .tf file parses (HCL2); `checkov` reports no failed check; every inline
     suppression states a reason.
  3. actionlint on the workflows (shellcheck on their scripts), hadolint on the Dockerfile.
  4. Drift: every environment variable the manifests, compose.yaml and the Dockerfile set is one
     that diary_project/settings.py reads; the overlays' names (bucket, queue, roles, KMS alias,
     ECR repositories, cluster) equal Terraform's; time limits, grace periods, SQS visibility
     timeout and KEDA settings agree.

The tools live in .venv-deploy (requirements-deploy.txt); `make deploy-tools` creates it. A
missing tool fails the test (never skips). No network, no cluster, no database.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TERRAFORM = REPO / "terraform"
WORKFLOWS = REPO / ".github" / "workflows"
SETTINGS = REPO / "diary_project" / "settings.py"
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
TOOLS_BIN = REPO / ".venv-deploy" / "bin"
HOW_TO_INSTALL = "run `make deploy-tools` (creates .venv-deploy from requirements-deploy.txt)"

OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
TARGETS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]

NAMESPACE = "audio-diary"
WEB = "diary-web"
WORKER = "diary-worker"
# Kinds that come from CRDs (no schema in kubernetes-validate): checked field by field below.
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("karpenter.sh/v1", "NodePool"),
    ("karpenter.k8s.aws/v1", "EC2NodeClass"),
}
# Set in compose.yaml for boto3's request signing against moto; read by boto3, not by settings.
# Production pods must never have them (IRSA).
COMPOSE_ONLY_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
# Set by the Dockerfile for the Python runtime / Django bootstrap, not read by settings.py.
DOCKERFILE_RUNTIME_ENV = {
    "PATH",
    "VIRTUAL_ENV",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "DJANGO_SETTINGS_MODULE",
}
MARGIN_SECONDS = 60


# --- Running the tools -----------------------------------------------------------------------


def tool(name: str) -> Path:
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: {HOW_TO_INSTALL}", pytrace=False)
    return path


def run(
    args: list[Any], *, stdin: str | None = None, cwd: Path = REPO, timeout: int = 300
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # actionlint finds shellcheck on PATH; checkov must not try to reach its vendor's API.
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["BC_SKIP_MAPPING"] = "TRUE"
    env["CHECKOV_RUN_SCA_PACKAGE_SCAN_V2"] = "false"
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
    )


def deploy_python(script: str, stdin: str | None = None) -> Any:
    """Run a helper script with .venv-deploy's Python (kubernetes-validate, hcl2); JSON out."""
    result = run([tool("python"), "-c", script], stdin=stdin)
    assert result.returncode == 0, (
        f"helper script failed:\n{result.stderr[-4000:]}\n{HOW_TO_INSTALL} if a module is missing"
    )
    return json.loads(result.stdout)


# --- diary_project/settings.py: the environment contract --------------------------------------


def _literal(node: ast.AST) -> Any:
    """Value of a constant expression such as 3300, "x", 4 * 3600; None if not constant."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}[type(node.op)]
    return None


@cache
def settings_env() -> dict[str, Any]:
    """Every variable settings.py reads (env_* helpers, os.environ, os.getenv) -> literal default."""
    tree = ast.parse(SETTINGS.read_text(), filename=str(SETTINGS))
    helpers = {"env_str", "env_bool", "env_int", "env_float", "env_list"}
    names: dict[str, Any] = {}
    for node in ast.walk(tree):
        key = None
        default = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            is_helper = isinstance(func, ast.Name) and func.id in helpers
            is_environ_get = (
                isinstance(func, ast.Attribute)
                and func.attr in {"get", "setdefault", "pop"}
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "environ"
            )
            is_getenv = isinstance(func, ast.Attribute) and func.attr == "getenv"
            if is_helper or is_environ_get or is_getenv:
                key = _literal(node.args[0])
                default = _literal(node.args[1]) if len(node.args) > 1 else None
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "environ":
            key = _literal(node.slice)
        if isinstance(key, str) and key not in names:
            names[key] = default
    assert len(names) > 30, f"found only {len(names)} variables in {SETTINGS}: has its style changed?"
    return names


def setting_default(name: str) -> Any:
    env = settings_env()
    assert name in env, f"diary_project/settings.py does not read {name}"
    return env[name]


# --- Kubernetes manifests ---------------------------------------------------------------------


@cache
def rendered(target: str) -> list[dict]:
    result = run([tool("kubectl"), "kustomize", DEPLOY / target])
    assert result.returncode == 0, f"kubectl kustomize deploy/{target} failed:\n{result.stderr}"
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert docs, f"deploy/{target} renders nothing"
    return docs


def objects(target: str, kind: str) -> list[dict]:
    return [doc for doc in rendered(target) if doc["kind"] == kind]


def one(target: str, kind: str, name: str) -> dict:
    found = [doc for doc in objects(target, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"deploy/{target}: expected one {kind} {name}, found {len(found)}"
    return found[0]


def config_map(target: str) -> dict[str, str]:
    maps = [doc for doc in objects(target, "ConfigMap") if doc["metadata"]["name"].startswith("diary-config")]
    assert len(maps) == 1, f"deploy/{target}: expected one diary-config ConfigMap, found {len(maps)}"
    return maps[0].get("data", {})


def pod_templates(target: str) -> Iterator[tuple[str, dict]]:
    for doc in rendered(target):
        kind = doc["kind"]
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield f"{kind}/{doc['metadata']['name']}", doc["spec"]["template"]
        elif kind == "CronJob":
            yield f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]


def container(target: str, kind: str, name: str) -> dict:
    spec = one(target, kind, name)["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if kind == "CronJob" else spec["template"]
    containers = template["spec"]["containers"]
    assert len(containers) == 1, f"{kind}/{name}: expected one container"
    return containers[0]


def env_of(target: str, kind: str, name: str) -> dict[str, str | None]:
    """The environment a container sees: ConfigMap (envFrom) plus its own env (literal or None)."""
    c = container(target, kind, name)
    env: dict[str, str | None] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            assert source["configMapRef"]["name"].startswith("diary-config"), f"{kind}/{name}: unknown ConfigMap"
            env.update(config_map(target))
    for item in c.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    total = 0
    for number, unit in re.findall(r"(\d+)([smh])", text):
        total += int(number) * units[unit]
    assert total, f"cannot read duration {text!r}"
    return total


def effective_int(target: str, name: str) -> int:
    """A setting's value in the pods: the ConfigMap's if set, else settings.py's default."""
    value = config_map(target).get(name)
    return int(value) if value not in (None, "") else int(setting_default(name))


# --- Terraform --------------------------------------------------------------------------------

HCL_SCRIPT = r"""
import json, sys, pathlib
import hcl2
out = {}
root = pathlib.Path(sys.argv[1])
for path in sorted(root.rglob("*.tf")) + sorted(root.glob("*.example")):
    if ".terraform" in path.parts:
        continue
    rel = str(path.relative_to(root))
    try:
        with path.open() as handle:
            out[rel] = hcl2.load(handle)
    except Exception as error:
        out[rel] = {"__error__": f"{type(error).__name__}: {error}"}
print(json.dumps(out, default=str))
"""


@cache
def terraform() -> dict[str, dict]:
    result = run([tool("python"), "-c", HCL_SCRIPT, TERRAFORM])
    assert result.returncode == 0, f"HCL parsing failed to run:\n{result.stderr[-4000:]}\n{HOW_TO_INSTALL}"
    return json.loads(result.stdout)


def tf_files(module: str) -> dict[str, dict]:
    prefix = "" if module == "root" else f"modules/{module}/"
    return {
        path: doc
        for path, doc in terraform().items()
        if path.endswith(".tf") and (path.startswith(prefix) if prefix else "/" not in path)
    }


def tf_blocks(module: str, block: str) -> dict[str, dict]:
    """variable/module/output blocks of one module: name -> body."""
    found: dict[str, dict] = {}
    for doc in tf_files(module).values():
        for entry in doc.get(block, []):
            found.update(entry)
    return found


def tf_resources(module: str, rtype: str, block: str = "resource") -> dict[str, dict]:
    found: dict[str, dict] = {}
    for doc in tf_files(module).values():
        for entry in doc.get(block, []):
            found.update(entry.get(rtype, {}))
    return found


def tf_locals(module: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for doc in tf_files(module).values():
        for entry in doc.get("locals", []):
            found.update({k: v[0] for k, v in entry.items() if not k.startswith("__")})
    return found


def attr(body: dict, key: str) -> Any:
    assert key in body, f"missing attribute {key!r} in {sorted(k for k in body if not k.startswith('__'))}"
    value = body[key]
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def tf_default(module: str, variable: str) -> Any:
    variables = tf_blocks(module, "variable")
    assert variable in variables, f"terraform/{module}: no variable {variable!r}"
    assert "default" in variables[variable], f"terraform/{module}: variable {variable!r} has no default"
    return attr(variables[variable], "default")


def module_var_ref(module: str, variable: str) -> str:
    """The root expression passed into module <module> for its variable <variable>."""
    call = tf_blocks("root", "module")[module]
    return attr(call, variable)


class TfNames:
    """Resolves the root module's string locals for one environment and one account id."""

    def __init__(self, environment: str, account_id: str) -> None:
        self.variables = {name: tf_default("root", name) for name in ("project", "aws_region")}
        self.variables["environment"] = environment
        self.locals = tf_locals("root")
        self.data = {"data.aws_caller_identity.current.account_id": account_id}

    def resolve(self, value: Any, depth: int = 0) -> Any:
        assert depth < 10, "circular locals"
        if isinstance(value, list):
            return [self.resolve(item, depth + 1) for item in value]
        if not isinstance(value, str):
            return value

        def substitute(match: re.Match) -> str:
            ref = match.group(1)
            if ref.startswith("var."):
                return str(self.variables[ref[4:]])
            if ref.startswith("local."):
                return str(self.resolve(self.locals[ref[6:]], depth + 1))
            if ref in self.data:
                return self.data[ref]
            raise AssertionError(f"cannot resolve ${{{ref}}}")

        return re.sub(r"\$\{([A-Za-z0-9_.]+)\}", substitute, value)

    def local(self, name: str) -> Any:
        assert name in self.locals, f"terraform/main.tf: no local {name!r}"
        return self.resolve(self.locals[name])


# --- Fixtures that run a slow tool once -------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    result = run(
        [
            tool("checkov"),
            "-d",
            TERRAFORM,
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
            "--skip-download",
            "--output",
            "json",
        ],
        timeout=600,
    )
    assert result.returncode in (0, 1), f"checkov did not run:\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout)
    if isinstance(report, list):
        report = next(r for r in report if r.get("check_type") == "terraform")
    return report


@pytest.fixture(scope="module")
def validation() -> dict[str, list[dict]]:
    """kubernetes-validate (strict) of every rendered object, once per target."""
    version = f"{tf_default('root', 'cluster_version')}.0"
    script = r"""
import json, sys
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, VersionNotSupportedError
request = json.load(sys.stdin)
out = {}
for target, docs in request["targets"].items():
    results = []
    for doc in docs:
        entry = {
            "apiVersion": doc.get("apiVersion"),
            "kind": doc.get("kind"),
            "name": doc.get("metadata", {}).get("name"),
        }
        try:
            kubernetes_validate.validate(doc, request["version"], strict=True)
            entry["status"] = "ok"
        except SchemaNotFoundError:
            entry["status"] = "noschema"
        except VersionNotSupportedError as error:
            entry["status"] = "error"
            entry["message"] = f"Kubernetes {request['version']} not shipped by kubernetes-validate: {error}"
        except Exception as error:
            entry["status"] = "error"
            entry["message"] = f"{type(error).__name__}: {error}"[:2000]
        results.append(entry)
    out[target] = results
print(json.dumps(out))
"""
    request = {"version": version, "targets": {target: rendered(target) for target in TARGETS}}
    return deploy_python(script, stdin=json.dumps(request))


# ============================================================================================
# 1. Kubernetes
# ============================================================================================


def test_overlays_exist() -> None:
    assert "prod" in OVERLAYS, "deploy/overlays/prod is required"


@pytest.mark.parametrize("target", TARGETS)
def test_builtin_objects_validate_strictly(target: str, validation: dict) -> None:
    errors = [f"{r['kind']}/{r['name']}: {r['message']}" for r in validation[target] if r["status"] == "error"]
    assert not errors, "schema violations:\n" + "\n".join(errors)
    unknown = [
        f"{r['apiVersion']} {r['kind']}/{r['name']}"
        for r in validation[target]
        if r["status"] == "noschema" and (r["apiVersion"], r["kind"]) not in CRD_KINDS
    ]
    assert not unknown, f"objects with neither a schema nor a field check here: {unknown}"
    kinds = {r["kind"] for r in validation[target] if r["status"] == "ok"}
    expected = {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "Ingress",
        "PodDisruptionBudget",
        "Job",
        "CronJob",
    }
    assert expected <= kinds, f"missing kinds: {expected - kinds}"


@pytest.mark.parametrize("target", TARGETS)
def test_namespaced_objects_live_in_the_app_namespace(target: str) -> None:
    cluster_scoped = {"Namespace", "NodePool", "EC2NodeClass"}
    for doc in rendered(target):
        meta = doc["metadata"]
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in meta, f"{doc['kind']}/{meta['name']} is cluster-scoped"
        else:
            assert meta.get("namespace") == NAMESPACE, f"{doc['kind']}/{meta['name']} not in {NAMESPACE}"
    assert (
        one(target, "Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )


@pytest.mark.parametrize("target", TARGETS)
def test_pods_are_locked_down(target: str) -> None:
    templates = dict(pod_templates(target))
    assert {
        f"Deployment/{WEB}",
        f"Deployment/{WORKER}",
        "Job/diary-migrate",
        "CronJob/diary-requeue-stuck-jobs",
    } <= set(templates)
    for where, template in templates.items():
        spec = template["spec"]
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
        assert pod_sc.get("runAsUser", 0) != 0, f"{where}: runAsUser must not be 0"
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccomp RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False, f"{where}: pods do not need the Kubernetes API token"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}: allowPrivilegeEscalation"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}/{c['name']}: readOnlyRootFilesystem"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}/{c['name']}: drop ALL capabilities"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], f"{where}/{c['name']}: /tmp emptyDir"
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}/{c['name']}: {kind} cpu/memory"
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (
                f"{where}: image {image} needs a tag"
            )


@pytest.mark.parametrize("target", TARGETS)
def test_web_deployment(target: str) -> None:
    deployment = one(target, "Deployment", WEB)
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == WEB
    c = container(target, "Deployment", WEB)
    assert c["command"] == [
        "gunicorn",
        "diary_project.wsgi:application",
        "--bind",
        "0.0.0.0:8000",
        "--workers",
        "2",
        "--timeout",
        "120",
    ]
    assert any(p["containerPort"] == 8000 for p in c["ports"])
    readiness = c["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/healthz"
    assert "livenessProbe" in c
    # The probe must pass ALLOWED_HOSTS and SECURE_SSL_REDIRECT like a request through the ALB.
    headers = {h["name"]: h["value"] for h in readiness.get("httpHeaders", [])}
    allowed = [h.strip() for h in config_map(target)["ALLOWED_HOSTS"].split(",")]
    assert headers.get("Host") in allowed, f"probe Host {headers.get('Host')} not in ALLOWED_HOSTS {allowed}"
    assert headers.get("X-Forwarded-Proto") == "https"
    assert config_map(target).get("BEHIND_TLS_PROXY") == "1"
    # gunicorn's graceful timeout (30 s) plus the preStop sleep fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] >= 40


@pytest.mark.parametrize("target", TARGETS)
def test_worker_deployment(target: str) -> None:
    deployment = one(target, "Deployment", WORKER)
    spec = deployment["spec"]
    assert "replicas" not in spec, "KEDA owns the worker replica count; `replicas` would reset it on apply"
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == WORKER
    c = container(target, "Deployment", WORKER)
    env = env_of(target, "Deployment", WORKER)

    command = " ".join(c["command"])
    assert c["command"][:2] == ["/bin/sh", "-c"] and c["command"][2].startswith("exec celery "), (
        "Celery must be PID 1 (exec) so SIGTERM reaches it"
    )
    assert "-A diary_project worker" in command and '-Q "$CELERY_QUEUE"' in command
    assert '--concurrency "${CELERY_WORKER_CONCURRENCY}"' in command
    for name in ("CELERY_QUEUE", "CELERY_WORKER_CONCURRENCY"):
        assert env.get(name), f"the worker command uses ${name}; the container must set it"
    assert int(env["CELERY_WORKER_CONCURRENCY"]) == 1
    assert int(env["WHISPER_CPU_THREADS"]) == 2

    requests = c["resources"]["requests"]
    assert requests["cpu"] in ("2", 2) and requests["memory"] == "1536Mi"

    # Liveness: the heartbeat file, fresh within 2 minutes, on a writable mount.
    heartbeat = env.get("WORKER_HEARTBEAT_FILE")
    assert heartbeat, "the worker must set WORKER_HEARTBEAT_FILE (the probe reads that file)"
    probe = " ".join(c["livenessProbe"]["exec"]["command"])
    assert f"find {heartbeat} -mmin -2" in probe, f"liveness probe {probe!r} does not check {heartbeat}"
    assert " ".join(c["startupProbe"]["exec"]["command"]) == probe
    mounts = [m["mountPath"] for m in c["volumeMounts"]]
    assert any(heartbeat.startswith(m.rstrip("/") + "/") for m in mounts), f"{heartbeat} is not on a writable mount"

    # Graceful shutdown: the running step ends (hard limit) before SIGKILL.
    hard = effective_int(target, "TRANSCRIBE_HARD_TIME_LIMIT")
    soft = effective_int(target, "TRANSCRIBE_SOFT_TIME_LIMIT")
    assert soft < hard
    assert pod["terminationGracePeriodSeconds"] >= max(soft, hard) + MARGIN_SECONDS

    # Placement on the Karpenter worker nodes.
    assert deployment["spec"]["template"]["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    nodepool = one(target, "NodePool", WORKER)["spec"]["template"]
    for key, value in pod["nodeSelector"].items():
        assert nodepool["metadata"]["labels"].get(key) == value, f"nodeSelector {key}={value} not a NodePool label"
    for taint in nodepool["spec"]["taints"]:
        assert any(
            t.get("key") == taint["key"]
            and t.get("effect") == taint["effect"]
            and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
            for t in pod["tolerations"]
        ), f"worker does not tolerate the NodePool taint {taint}"


@pytest.mark.parametrize("target", TARGETS)
def test_disruption_budgets_service_and_ingress(target: str) -> None:
    labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in objects(target, "Deployment")}
    budgets = objects(target, "PodDisruptionBudget")
    covered = set()
    for pdb in budgets:
        selector = pdb["spec"]["selector"]["matchLabels"]
        matches = [name for name, pod_labels in labels.items() if selector.items() <= pod_labels.items()]
        assert matches, f"PDB {pdb['metadata']['name']} selects no Deployment"
        covered.update(matches)
    assert {WEB, WORKER} <= covered

    service = one(target, "Service", WEB)
    assert service["spec"]["selector"].items() <= labels[WEB].items()
    ingress = one(target, "Ingress", WEB)
    assert ingress["spec"]["ingressClassName"] == "alb"
    tls_hosts = {h for entry in ingress["spec"]["tls"] for h in entry["hosts"]}
    rule_hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert tls_hosts and rule_hosts <= tls_hosts, "every Ingress host must be covered by TLS"
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == WEB
            assert backend["port"].get("name") in {p["name"] for p in service["spec"]["ports"]}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/healthz"
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"

    config = config_map(target)
    allowed = [h.strip() for h in config["ALLOWED_HOSTS"].split(",")]
    for host in rule_hosts:
        assert host in allowed, f"Ingress host {host} not in ALLOWED_HOSTS"
        assert f"https://{host}" in config["CSRF_TRUSTED_ORIGINS"].split(",")
    assert config["SITE_URL"] in {f"https://{host}" for host in rule_hosts}
    for name, expected in {
        "SECURE_SSL_REDIRECT": "1",
        "SESSION_COOKIE_SECURE": "1",
        "CSRF_COOKIE_SECURE": "1",
        "STORAGE_BACKEND": "s3",
        "CELERY_BROKER_URL": "sqs://",
        "DIARY_ENV": "production",
    }.items():
        assert config.get(name) == expected, f"{name} should be {expected}"
    assert int(config["SECURE_HSTS_SECONDS"]) >= 31536000


@pytest.mark.parametrize("target", TARGETS)
def test_migration_job_and_sweep_cronjob(target: str) -> None:
    job = one(target, "Job", "diary-migrate")
    command = container(target, "Job", "diary-migrate")["command"]
    assert command[:2] == ["/bin/sh", "-c"] and command[2].startswith("python manage.py migrate --noinput")
    if config_map(target).get("CACHE_URL") == "database":
        assert "manage.py createcachetable" in command[2], "CACHE_URL=database needs its table"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] <= 3

    cron = one(target, "CronJob", "diary-requeue-stuck-jobs")
    assert cron["spec"]["schedule"] == "* * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert container(target, "CronJob", "diary-requeue-stuck-jobs")["command"] == [
        "python",
        "manage.py",
        "requeue_stuck_jobs",
    ]
    # The sweep publishes to SQS: it needs the web role (sqs:SendMessage).
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == WEB

    # The deploy workflow applies `-l audio-diary/deploy-phase=pre` first: everything the
    # migration needs, and no workload.
    pre = {
        (d["kind"], d["metadata"]["name"].split("-")[0] if d["kind"] == "ConfigMap" else d["metadata"]["name"])
        for d in rendered(target)
        if d["metadata"].get("labels", {}).get("audio-diary/deploy-phase") == "pre"
    }
    assert {
        ("Namespace", NAMESPACE),
        ("ServiceAccount", "diary-migrate"),
        ("ConfigMap", "diary"),
        ("Job", "diary-migrate"),
    } <= pre
    assert not {kind for kind, _ in pre} & {"Deployment", "CronJob", "ScaledObject"}


@pytest.mark.parametrize("target", TARGETS)
def test_service_accounts_use_irsa(target: str) -> None:
    for name in (WEB, WORKER):
        annotations = one(target, "ServiceAccount", name)["metadata"].get("annotations", {})
        arn = annotations.get("eks.amazonaws.com/role-arn", "")
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn), f"ServiceAccount {name}: role-arn {arn!r}"
    migrate = one(target, "ServiceAccount", "diary-migrate")["metadata"].get("annotations", {})
    assert "eks.amazonaws.com/role-arn" not in migrate, "the migration needs no AWS access"
    for doc in rendered(target):
        text = json.dumps(doc)
        for name in COMPOSE_ONLY_ENV:
            assert name not in text, f"{doc['kind']}/{doc['metadata']['name']} sets {name}: pods use IRSA, never keys"


@pytest.mark.parametrize("target", TARGETS)
def test_keda_scaledobject_and_triggerauthentication(target: str) -> None:
    scaled = objects(target, "ScaledObject")
    assert len(scaled) == 1
    so = scaled[0]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    ref = spec["scaleTargetRef"]
    assert ref["name"] == WORKER and ref.get("kind", "Deployment") == "Deployment"
    assert ref.get("apiVersion", "apps/v1") == "apps/v1"
    one(target, "Deployment", ref["name"])
    assert spec["minReplicaCount"] in (0, 1)
    assert spec["maxReplicaCount"] >= max(spec["minReplicaCount"], 1)
    assert spec["cooldownPeriod"] >= 300, "a short cooldown scales workers in between the steps of a job"
    scale_down = (
        spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {}).get("scaleDown", {})
    )
    assert scale_down.get("stabilizationWindowSeconds", 300) >= 300

    triggers = spec["triggers"]
    assert len(triggers) == 1 and triggers[0]["type"] == "aws-sqs-queue"
    metadata = triggers[0]["metadata"]
    for field in ("queueURL", "queueLength", "awsRegion"):
        assert metadata.get(field), f"aws-sqs-queue trigger needs {field}"
    config = config_map(target)
    concurrency = int(env_of(target, "Deployment", WORKER)["CELERY_WORKER_CONCURRENCY"])
    assert int(metadata["queueLength"]) == concurrency, "queueLength = tasks one worker runs at once"
    assert metadata["queueURL"] == config["SQS_QUEUE_URL"], "KEDA must watch the queue the workers consume"
    assert metadata["awsRegion"] == config["AWS_REGION"]
    assert metadata.get("scaleOnInFlight", "true") == "true", "running steps must count, or KEDA scales busy workers in"

    auth_name = triggers[0]["authenticationRef"]["name"]
    auth = one(target, "TriggerAuthentication", auth_name)
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    identity = auth["spec"]["podIdentity"]
    assert identity["provider"] in {"aws", "aws-eks"}
    assert not ("roleArn" in identity and "identityOwner" in identity), "roleArn and identityOwner are exclusive"


@pytest.mark.parametrize("target", TARGETS)
def test_karpenter_nodepool_and_ec2nodeclass(target: str) -> None:
    pools = objects(target, "NodePool")
    classes = {c["metadata"]["name"]: c for c in objects(target, "EC2NodeClass")}
    assert pools and classes
    worker_grace = one(target, "Deployment", WORKER)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    for pool in pools:
        assert pool["apiVersion"] == "karpenter.sh/v1"
        template = pool["spec"]["template"]["spec"]
        ref = template["nodeClassRef"]
        assert ref["group"] == "karpenter.k8s.aws" and ref["kind"] == "EC2NodeClass"
        assert ref["name"] in classes, (
            f"NodePool {pool['metadata']['name']} references missing EC2NodeClass {ref['name']}"
        )
        requirements = {r["key"]: r for r in template["requirements"]}
        assert set(requirements["karpenter.sh/capacity-type"]["values"]) == {"spot", "on-demand"}
        assert requirements["kubernetes.io/arch"]["values"] == ["amd64"], "the images are built for amd64"
        for requirement in template["requirements"]:
            assert requirement["operator"] in {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"}
        disruption = pool["spec"]["disruption"]
        assert disruption["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
        assert "consolidateAfter" in disruption
        assert {"cpu", "memory"} <= set(pool["spec"]["limits"])
        assert template.get("taints"), "worker nodes are tainted so only workers land there"
        # A node being drained waits for the running step at least as long as the pod's grace.
        assert duration_seconds(template["terminationGracePeriod"]) >= worker_grace

    for name, node_class in classes.items():
        assert node_class["apiVersion"] == "karpenter.k8s.aws/v1"
        spec = node_class["spec"]
        assert spec.get("role") and "instanceProfile" not in spec, f"EC2NodeClass {name}: role (not instanceProfile)"
        assert spec["amiSelectorTerms"] and all(term for term in spec["amiSelectorTerms"])
        for field in ("subnetSelectorTerms", "securityGroupSelectorTerms"):
            assert spec[field] and all(term.get("tags") or term.get("id") for term in spec[field]), f"{name}: {field}"
        assert spec["metadataOptions"]["httpTokens"] == "required"
        assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1, "pods must not reach the node role via IMDS"
        assert all(bd["ebs"]["encrypted"] for bd in spec.get("blockDeviceMappings", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_secret_comes_from_outside_git(overlay: str) -> None:
    assert not objects(f"overlays/{overlay}", "Secret"), (
        f"overlay {overlay} must not apply the placeholder Secret: diary-secrets is created from secrets.env"
    )
    folder = DEPLOY / "overlays" / overlay
    assert "secrets.env" in (folder / ".gitignore").read_text().split()
    example_keys = _env_file_keys(folder / "secrets.env.example")
    referenced = _secret_keys_referenced(f"overlays/{overlay}")
    assert referenced <= example_keys, f"secrets.env.example lacks {referenced - example_keys}"
    template = one("base", "Secret", "diary-secrets")
    assert referenced <= set(template.get("stringData", {})), "the base Secret template lacks referenced keys"
    for value in template["stringData"].values():
        assert value == "" or "REPLACE_ME" in value, "the Secret template holds placeholders only"


# ============================================================================================
# 2. Terraform
# ============================================================================================


def test_terraform_layout_and_every_file_parses() -> None:
    parsed = terraform()
    errors = {path: doc["__error__"] for path, doc in parsed.items() if "__error__" in doc}
    assert not errors, f"HCL parse errors: {errors}"
    for required in (
        "main.tf",
        "variables.tf",
        "outputs.tf",
        "versions.tf",
        "backend.tf.example",
        "terraform.tfvars.example",
    ):
        assert required in parsed, f"terraform/{required} is missing"
    for module in ("network", "eks", "services", "iam"):
        assert tf_files(module), f"terraform/modules/{module} is missing"
        assert tf_blocks("root", "module")[module]["source"] == [f"./modules/{module}"]
    backend = parsed["backend.tf.example"]["terraform"][0]["backend"][0]["s3"]
    assert attr(backend, "encrypt") is True and attr(backend, "dynamodb_table") and attr(backend, "key")
    versions = parsed["versions.tf"]["terraform"][0]
    providers = attr(versions, "required_providers")
    for name in ("aws", "helm"):
        assert re.search(r"\d", attr(providers, name)["version"]), f"provider {name} must be version-pinned"


def test_terraform_network() -> None:
    subnets = tf_resources("network", "aws_subnet")
    assert {"public", "private"} <= set(subnets)
    assert attr(subnets["public"], "map_public_ip_on_launch") is False
    assert attr(subnets["private"], "tags")["karpenter.sh/discovery"] == "${var.cluster_name}"
    assert tf_resources("network", "aws_nat_gateway") and tf_resources("network", "aws_internet_gateway")
    assert tf_resources("network", "aws_flow_log")
    assert module_var_ref("network", "cluster_name") == "${local.cluster_name}"


def test_terraform_eks_karpenter_keda() -> None:
    cluster = tf_resources("eks", "aws_eks_cluster")["this"]
    assert attr(cluster, "name") == "${var.cluster_name}"
    assert attr(cluster, "encryption_config")["resources"] == [["secrets"]]
    assert tf_resources("eks", "aws_iam_openid_connect_provider"), "IRSA needs the OIDC provider"
    node_groups = tf_resources("eks", "aws_eks_node_group")
    assert node_groups, "a small system managed node group is required"
    helm = tf_resources("eks", "helm_release")
    for release, chart_variable in (("karpenter", "karpenter_chart_version"), ("keda", "keda_chart_version")):
        assert release in helm, f"helm_release {release} is missing"
        assert attr(helm[release], "version") == f"${{var.{chart_variable}}}"
        root_default = tf_default("root", chart_variable)
        assert re.fullmatch(r"\d+\.\d+\.\d+", root_default), f"{chart_variable} must pin a chart version"
    assert tf_default("root", "karpenter_chart_version").startswith("1."), "Karpenter 1.x serves karpenter.sh/v1"
    keda_values = json.dumps(helm["keda"]["values"])
    assert "irsa" in keda_values and "aws_iam_role.keda_operator.arn" in keda_values
    keda_policy = tf_resources("eks", "aws_iam_policy_document", "data")["keda_operator"]
    assert attr(keda_policy["statement"][0], "actions") == ["sqs:GetQueueAttributes"]
    karpenter_role = tf_resources("eks", "aws_iam_role")["karpenter_node"]
    assert attr(karpenter_role, "name") == "${var.karpenter_node_role_name}"
    assert tf_resources("eks", "aws_eks_access_entry"), "Karpenter nodes join through an access entry"
    assert (
        attr(tf_resources("eks", "aws_ec2_tag")["cluster_security_group_discovery"], "value") == "${var.cluster_name}"
    )
    for name, body in tf_blocks("eks", "module").items():
        source = attr(body, "source")
        assert re.search(r"\?ref=[0-9a-f]{40}$", source) or "version" in body, f"module {name} must be pinned"


def test_terraform_services() -> None:
    # S3
    bucket = tf_resources("services", "aws_s3_bucket")["audio"]
    assert attr(bucket, "bucket") == "${var.bucket_name}"
    sse = tf_resources("services", "aws_s3_bucket_server_side_encryption_configuration")["audio"]
    default = attr(attr(sse, "rule"), "apply_server_side_encryption_by_default")
    assert attr(default, "sse_algorithm") == "aws:kms" and "aws_kms_key.data" in attr(default, "kms_master_key_id")
    assert (
        attr(attr(tf_resources("services", "aws_s3_bucket_versioning")["audio"], "versioning_configuration"), "status")
        == "Enabled"
    )
    block = tf_resources("services", "aws_s3_bucket_public_access_block")["audio"]
    for key in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert attr(block, key) is True
    assert tf_resources("services", "aws_s3_bucket_lifecycle_configuration")["audio"]["rule"]
    policy = tf_resources("services", "aws_iam_policy_document", "data")["audio_bucket"]
    assert any(attr(s, "effect") == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in policy["statement"])
    # KMS
    key = tf_resources("services", "aws_kms_key")["data"]
    assert attr(key, "enable_key_rotation") is True
    assert attr(tf_resources("services", "aws_kms_alias")["data"], "name") == "${var.kms_alias}"
    # SQS
    queues = tf_resources("services", "aws_sqs_queue")
    queue, dlq = queues["transcription"], queues["transcription_dlq"]
    assert attr(queue, "name") == "${var.queue_name}" and attr(dlq, "name") == "${var.dlq_name}"
    for q in (queue, dlq):
        assert "aws_kms_key.data" in attr(q, "kms_master_key_id"), "queues are encrypted with the CMK"
    assert attr(queue, "receive_wait_time_seconds") == 20
    redrive = attr(queue, "redrive_policy")
    assert "aws_sqs_queue.transcription_dlq.arn" in redrive
    receive = re.search(r"maxReceiveCount'?\s*:\s*'?\$\{var\.(\w+)\}", redrive)
    assert receive, f"redrive policy {redrive}"
    assert module_var_ref("services", receive.group(1)) == "${var.dlq_max_receive_count}"
    assert tf_default("root", "dlq_max_receive_count") == 5
    assert attr(dlq, "message_retention_seconds") == "${var.dlq_retention_seconds}"
    assert module_var_ref("services", "dlq_retention_seconds") == "${var.dlq_retention_seconds}"
    assert tf_default("root", "dlq_retention_seconds") == 14 * 24 * 3600
    # RDS
    db = tf_resources("services", "aws_db_instance")["this"]
    assert attr(db, "engine") == "postgres"
    assert attr(db, "storage_encrypted") is True and "aws_kms_key.data" in attr(db, "kms_key_id")
    assert attr(db, "publicly_accessible") is False
    assert attr(db, "deletion_protection") is True
    assert attr(db, "backup_retention_period") == "${var.db_backup_retention_days}"
    assert tf_default("root", "db_backup_retention_days") >= 7
    subnet_group = tf_resources("services", "aws_db_subnet_group")["this"]
    assert attr(subnet_group, "subnet_ids") == "${var.private_subnet_ids}"
    assert module_var_ref("services", "private_subnet_ids") == "${module.network.private_subnet_ids}"
    # ECR
    ecr = tf_resources("services", "aws_ecr_repository")["this"]
    assert attr(ecr, "image_tag_mutability") == "IMMUTABLE"
    assert attr(attr(ecr, "image_scanning_configuration"), "scan_on_push") is True


def test_terraform_iam_least_privilege() -> None:
    documents = tf_resources("iam", "aws_iam_policy_document", "data")
    for role in ("web", "worker"):
        for statement in documents[role]["statement"]:
            actions = attr(statement, "actions")
            resources = attr(statement, "resources")
            assert all("*" not in a.split(":")[1] for a in actions), f"{role}: wildcard action in {actions}"
            assert "*" not in resources, f"{role}: statement on every resource ({actions})"
            for resource in resources:
                assert resource.startswith(
                    ("${var.bucket_arn}", "${var.queue_arn}", "${var.kms_key_arn}", "arn:aws:transcribe:")
                ), f"{role}: unexpected resource {resource}"
    worker_actions = {a for s in documents["worker"]["statement"] for a in attr(s, "actions")}
    web_actions = {a for s in documents["web"]["statement"] for a in attr(s, "actions")}
    assert {"transcribe:StartTranscriptionJob", "transcribe:GetTranscriptionJob"} <= worker_actions
    assert {a for a in worker_actions if a.startswith("transcribe:")} <= {
        f"transcribe:{verb}TranscriptionJob" for verb in ("Start", "Get", "Delete")
    }
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= worker_actions
    assert not {a for a in web_actions if a.startswith(("transcribe:", "sqs:Receive", "sqs:Delete"))}
    assert "sqs:SendMessage" in web_actions, "the web app (and the sweep) publish jobs"
    assert not any(a.startswith("sqs:CreateQueue") for a in web_actions | worker_actions), "queues are predefined"
    trust = documents["assume"]
    assert "system:serviceaccount:${var.namespace}:${each.value}" in json.dumps(trust)


def test_checkov_reports_no_failed_check(checkov_report: dict) -> None:
    summary = checkov_report["summary"]
    failed = checkov_report["results"].get("failed_checks", [])
    lines = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']}) {c['check_name']}" for c in failed
    ]
    assert summary["failed"] == 0, "checkov failed checks:\n" + "\n".join(lines)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100, "checkov scanned suspiciously little"


def test_checkov_suppressions_state_a_reason() -> None:
    pattern = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
    found = 0
    for path in TERRAFORM.rglob("*.tf"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = pattern.search(line)
            if match:
                found += 1
                reason = (match.group(2) or "").strip()
                assert len(reason) >= 20, f"{path.relative_to(REPO)}:{number}: {match.group(1)} needs a written reason"
    assert found <= 10, f"{found} suppressions: fix the findings instead"


# ============================================================================================
# 3. Workflows and Dockerfile lint
# ============================================================================================


def test_actionlint() -> None:
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert {"ci.yml", "deploy.yml"} <= {p.name for p in workflows}
    tool("shellcheck")
    result = run([tool("actionlint"), "-no-color", *workflows])
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_hadolint() -> None:
    result = run([tool("hadolint"), "--no-color", DOCKERFILE])
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def _dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = match.group(2) or f"stage{len(stages)}"
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def test_dockerfile_contract() -> None:
    stages = _dockerfile_stages()
    assert {"web", "worker"} <= set(stages), "targets web and worker are required"
    text = DOCKERFILE.read_text()
    for stage, lines in stages.items():
        base = lines[0].split()[1]
        assert base in stages or base == "python:3.11-slim-bookworm", f"stage {stage}: base {base}"
    assert "pip install --no-cache-dir -r requirements.txt" in text
    assert "manage.py prepare_whisper_model" in text
    assert "manage.py collectstatic --noinput" in text

    def inherited(stage: str) -> list[str]:
        lines = stages[stage]
        parent = lines[0].split()[1]
        return (inherited(parent) if parent in stages else []) + lines

    for target in ("web", "worker"):
        lines = inherited(target)
        users = [line.split()[1] for line in lines if line.startswith("USER ")]
        assert users and users[-1].split(":")[0] not in {"0", "root"}, f"{target}: must run as non-root"
        assert any(line.startswith("HEALTHCHECK ") for line in stages[target]), f"{target}: HEALTHCHECK"
        env_text = " ".join(line for line in lines if line.startswith("ENV "))
        assert "WHISPER_MODEL_CACHE=/app/models" in env_text and "DIARY_DATA_DIR=/app/var" in env_text
    web_cmd = next(line for line in stages["web"] if line.startswith("CMD "))
    assert json.loads(web_cmd[4:]) == [
        "gunicorn",
        "diary_project.wsgi:application",
        "--bind",
        "0.0.0.0:8000",
        "--workers",
        "2",
        "--timeout",
        "120",
    ]
    worker_cmd = json.loads(next(line for line in stages["worker"] if line.startswith("CMD "))[4:])
    assert worker_cmd[:2] == ["/bin/sh", "-c"] and worker_cmd[2].startswith("exec celery -A diary_project worker")
    assert any("/app/models" in line for line in stages["worker"] if line.startswith("COPY")), "model baked into worker"
    ignored = (REPO / ".dockerignore").read_text().split()
    for path in (".git", ".venv", ".venv-*", "terraform", "deploy"):
        assert path in ignored, f".dockerignore should exclude {path}"


def _uses(workflow: dict) -> list[str]:
    found = []
    for job in workflow["jobs"].values():
        if "uses" in job:
            found.append(job["uses"])
        for step in job.get("steps", []):
            if "uses" in step:
                found.append(step["uses"])
    return found


def test_workflows_contract() -> None:
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    deploy = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    for workflow in (ci, deploy):
        for uses in _uses(workflow):
            assert uses.startswith("./") or re.search(r"@(v\d+(\.\d+)*|[0-9a-f]{40})$", uses), f"unpinned action {uses}"
    triggers = ci[True] if True in ci else ci["on"]  # YAML 1.1 reads `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    ci_text = (WORKFLOWS / "ci.yml").read_text()
    assert 'python-version: "3.11"' in ci_text and "make test" in ci_text and "apt-get install" in ci_text

    deploy_text = (WORKFLOWS / "deploy.yml").read_text()
    deploy_triggers = deploy[True] if True in deploy else deploy["on"]
    assert deploy_triggers["push"]["branches"] == ["main"]
    for secret in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "EKS_CLUSTER_NAME",
        "DOCKER_USERNAME",
        "DOCKER_PASSWORD",
        "DOCKER_REPO",
    ):
        assert f"secrets.{secret}" in deploy_text, f"deploy.yml does not use the {secret} secret"
    for step in (
        "aws eks update-kubeconfig",
        "kustomize edit set image",
        'kubectl apply -k "$OVERLAY"',
        "job diary-migrate",
        "rollout status deployment/diary-web",
        "rollout status deployment/diary-worker",
    ):
        assert step in deploy_text, f"deploy.yml lacks `{step}`"
    job_env = deploy["jobs"]["deploy"]["env"]
    assert job_env["OVERLAY"] == "deploy/overlays/prod" and job_env["NAMESPACE"] == NAMESPACE
    # The images it pushes are the repositories Terraform creates for prod.
    names = TfNames("prod", "111122223333")
    assert [job_env["WEB_REPOSITORY"], job_env["WORKER_REPOSITORY"]] == names.local("ecr_repository_names")
    # Migration before the full apply, rollout status after it.
    assert deploy_text.index("deploy-phase=pre") < deploy_text.index('kubectl apply -k "$OVERLAY"\n')
    assert deploy_text.index('kubectl apply -k "$OVERLAY"\n') < deploy_text.index("rollout status")


def test_compose_contract() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"db", "aws", "aws-init", "migrate", "web", "worker"} <= set(services)
    assert services["db"]["image"].startswith("postgres:")
    assert re.fullmatch(r"motoserver/moto:\d+\.\d+\.\d+", services["aws"]["image"]), "pin the moto image"
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["aws-init"]["condition"] == "service_completed_successfully"
    assert services["worker"]["build"]["target"] == "worker" and services["web"]["build"]["target"] == "web"
    init_script = DEPLOY / "compose" / "create_local_aws.py"
    assert init_script.exists() and "create_local_aws.py" in json.dumps(services["aws-init"]["command"])
    env = services["worker"]["environment"]
    assert env["CELERY_QUEUE"] == setting_default("CELERY_QUEUE")
    assert env["SQS_QUEUE_URL"].rstrip("/").split("/")[-1] == env["CELERY_QUEUE"]
    assert env["CELERY_BROKER_URL"] == "sqs://" and env["STORAGE_BACKEND"] == "s3"
    assert env["DATABASE_URL"].startswith("postgres://")


# ============================================================================================
# 4. Drift: environment names, Terraform names, time limits
# ============================================================================================


def _env_file_keys(path: Path) -> set[str]:
    keys = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.add(line.split("=", 1)[0].strip())
    return keys


def _secret_keys_referenced(target: str) -> set[str]:
    keys = set()
    for _, template in pod_templates(target):
        for c in template["spec"]["containers"]:
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "diary-secrets"
                    keys.add(ref["key"])
    return keys


def _env_names_set_in_manifests() -> dict[str, set[str]]:
    """variable -> where it is set, over every render, env file, compose service and Dockerfile."""
    where: dict[str, set[str]] = {}

    def note(name: str, place: str) -> None:
        where.setdefault(name, set()).add(place)

    for target in TARGETS:
        for name in config_map(target):
            note(name, f"deploy/{target} ConfigMap")
        for doc in objects(target, "Secret"):
            for name in {**doc.get("data", {}), **doc.get("stringData", {})}:
                note(name, f"deploy/{target} Secret")
        for where_, template in pod_templates(target):
            for c in template["spec"]["containers"]:
                for item in c.get("env", []):
                    note(item["name"], f"deploy/{target} {where_}")
    for path in DEPLOY.rglob("*.env*"):
        for name in _env_file_keys(path):
            note(name, str(path.relative_to(REPO)))
    compose = yaml.safe_load(COMPOSE.read_text())
    for service_name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" not in service and not image.startswith("audio-diary-"):
            continue  # postgres, moto: their own variables
        environment = service.get("environment", {})
        names = environment if isinstance(environment, dict) else [e.split("=", 1)[0] for e in environment]
        for name in names:
            note(name, f"compose.yaml {service_name}")
    for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        if line.strip().startswith("ENV "):
            for name in re.findall(r"([A-Z_][A-Z0-9_]*)=", line):
                note(name, "Dockerfile")
    return where


def test_every_environment_variable_set_is_read_by_settings() -> None:
    read = set(settings_env())
    unknown = {}
    for name, places in sorted(_env_names_set_in_manifests().items()):
        if name in read:
            continue
        if name in COMPOSE_ONLY_ENV and all(p.startswith("compose.yaml") for p in places):
            continue
        if name in DOCKERFILE_RUNTIME_ENV and places == {"Dockerfile"}:
            continue
        unknown[name] = sorted(places)
    assert not unknown, (
        "set in the deployment but not read by diary_project/settings.py (add it to settings.py, or "
        "remove it from the manifests):\n" + "\n".join(f"  {name}: {places}" for name, places in unknown.items())
    )


@pytest.mark.parametrize("target", TARGETS)
def test_queue_names_agree(target: str) -> None:
    config = config_map(target)
    assert config["SQS_QUEUE_URL"].rstrip("/").split("/")[-1] == config["CELERY_QUEUE"], (
        "SQS_QUEUE_URL must name the queue CELERY_QUEUE (kombu's predefined queue)"
    )
    assert config["AWS_TRANSCRIBE_OUTPUT_BUCKET"] == config["AWS_STORAGE_BUCKET_NAME"]
    assert f"sqs.{config['AWS_REGION']}.amazonaws.com" in config["SQS_QUEUE_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_names_match_terraform(overlay: str) -> None:
    target = f"overlays/{overlay}"
    config = config_map(target)
    match = re.fullmatch(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com/(\d{12})/([\w-]+)", config["SQS_QUEUE_URL"])
    assert match, f"SQS_QUEUE_URL {config['SQS_QUEUE_URL']!r}"
    region, account, _ = match.groups()
    names = TfNames(overlay, account)
    assert region == tf_default("root", "aws_region") == config["AWS_REGION"]

    queue = names.local("queue_name")
    assert config["CELERY_QUEUE"] == queue
    assert config["SQS_QUEUE_URL"] == f"https://sqs.{region}.amazonaws.com/{account}/{queue}"
    assert module_var_ref("services", "queue_name") == "${local.queue_name}"
    assert config["AWS_STORAGE_BUCKET_NAME"] == names.local("bucket_name")
    assert module_var_ref("services", "bucket_name") == "${local.bucket_name}"
    assert config["AWS_S3_KMS_KEY_ID"] == f"arn:aws:kms:{region}:{account}:{names.local('kms_alias')}"
    assert module_var_ref("services", "kms_alias") == "${local.kms_alias}"

    roles = {WEB: names.local("web_role_name"), WORKER: names.local("worker_role_name")}
    assert module_var_ref("iam", "web_role_name") == "${local.web_role_name}"
    assert module_var_ref("iam", "worker_role_name") == "${local.worker_role_name}"
    for service_account, role in roles.items():
        arn = one(target, "ServiceAccount", service_account)["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert arn == f"arn:aws:iam::{account}:role/{role}"
    # The IRSA trust names exactly these ServiceAccounts in this namespace.
    assert tf_default("root", "k8s_namespace") == NAMESPACE
    assert tf_default("root", "web_service_account") == WEB
    assert tf_default("root", "worker_service_account") == WORKER
    assert (
        one(target, "CronJob", "diary-requeue-stuck-jobs")["spec"]["jobTemplate"]["spec"]["template"]["spec"][
            "serviceAccountName"
        ]
        == WEB
    )

    cluster = names.local("cluster_name")
    assert module_var_ref("eks", "karpenter_node_role_name") == "${local.karpenter_node_role_name}"
    for node_class in objects(target, "EC2NodeClass"):
        spec = node_class["spec"]
        assert spec["role"] == names.local("karpenter_node_role_name")
        for field in ("subnetSelectorTerms", "securityGroupSelectorTerms"):
            assert spec[field] == [{"tags": {"karpenter.sh/discovery": cluster}}], f"{field} must select {cluster}"

    registry = f"{account}.dkr.ecr.{region}.amazonaws.com"
    expected_images = dict(
        zip(("audio-diary-web", "audio-diary-worker"), names.local("ecr_repository_names"), strict=True)
    )
    kustomization = yaml.safe_load((DEPLOY / "overlays" / overlay / "kustomization.yaml").read_text())
    for image in kustomization["images"]:
        assert image["newName"] == f"{registry}/{expected_images[image['name']]}"

    # One account everywhere: no leftover placeholder from another account or environment.
    text = json.dumps(rendered(target))
    assert set(re.findall(r"\b\d{12}\b", text)) == {account}
    assert "-ENV-" not in text, "base placeholders (audio-diary-ENV-...) left in the overlay"


@pytest.mark.parametrize("target", TARGETS)
def test_time_limits_visibility_timeout_and_grace(target: str) -> None:
    soft = effective_int(target, "TRANSCRIBE_SOFT_TIME_LIMIT")
    hard = effective_int(target, "TRANSCRIBE_HARD_TIME_LIMIT")
    assert soft < hard, "the soft limit must fire before the hard one so the task can record the failure"
    poll = effective_int(target, "POLL_INTERVAL_SECONDS")
    visibility = effective_int(target, "SQS_VISIBILITY_TIMEOUT")

    # SQS redelivers a message whose step outlives the visibility timeout: keep it above the
    # longest step plus the poll countdown Celery holds unacknowledged.
    terraform_visibility = tf_default("root", "sqs_visibility_timeout")
    assert module_var_ref("services", "visibility_timeout_seconds") == "${var.sqs_visibility_timeout}"
    assert attr(tf_resources("services", "aws_sqs_queue")["transcription"], "visibility_timeout_seconds") == (
        "${var.visibility_timeout_seconds}"
    )
    assert terraform_visibility >= hard + poll + MARGIN_SECONDS
    assert visibility == terraform_visibility, "SQS_VISIBILITY_TIMEOUT must equal the queue's visibility timeout"
    assert int(setting_default("SQS_VISIBILITY_TIMEOUT")) == terraform_visibility

    # Settings' own defaults keep the same order.
    assert int(setting_default("TRANSCRIBE_HARD_TIME_LIMIT")) + int(setting_default("POLL_INTERVAL_SECONDS")) < int(
        setting_default("SQS_VISIBILITY_TIMEOUT")
    )
    grace = one(target, "Deployment", WORKER)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= int(setting_default("TRANSCRIBE_SOFT_TIME_LIMIT")) + MARGIN_SECONDS
    assert grace >= hard + MARGIN_SECONDS
    assert one(target, "ScaledObject", WORKER)["spec"]["cooldownPeriod"] >= 300


def test_kubernetes_version_is_one_the_validator_ships(validation: dict) -> None:
    version = tf_default("root", "cluster_version")
    assert re.fullmatch(r"1\.\d+", version)
    assert all(
        r["status"] != "error" or "not shipped" not in r.get("message", "")
        for results in validation.values()
        for r in results
    ), f"kubernetes-validate lacks {version}"
