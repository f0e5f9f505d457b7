"""The compose stack end to end, as a team runs it (``make docker-test``; the images come from ``make docker``).

PostgreSQL, the MLflow tracking server and the app start from docker/compose.yaml with tests/deploy/compose.test.yaml
(host network, everything on 127.0.0.1, free ports, a project name of its own). A tiny model trains inside the
training image on the CPU from CHASE_DB1 mounted read-only and is registered through the tracking server; the app
container serves it, and its mask of a real photo must equal ``vessel-predict``'s on the host, pixel for pixel
(ONNX Runtime fp32 on both sides), and its UI, driven in Chromium, asks for the API key and shows the overlay of an
uploaded photo. Then the faults: the tracking server stopped while the app serves, the alias
moved after it is back, the app SIGKILLed, PostgreSQL restarted, ``down`` / ``up``, backup, ``down -v``, restore.

The tests run in file order and share one stack (a module fixture); whatever happens, the fixture tears down the
containers, networks and volumes of the test's project (the images stay). Timings and sizes go to
``runs/docker-test/report.json`` and the terminal. Skipped unless VESSEL_DOCKER_TEST=1 (make docker-test sets it).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PROJECT = "vessel-e2e"
MODEL = "vessel-unet"
IMAGES = {
    "app": "vessel-lightning-app:latest",
    "app-gpu": "vessel-lightning-app-gpu:latest",
    "train": "vessel-lightning-train:latest",
    "mlflow": "vessel-lightning-mlflow:latest",
}
PHOTO = "CHASE_DB1/images/Image_11L.jpg"  # a test-split photo, never trained on
RELOAD_INTERVAL_S = 5  # tests/deploy/compose.test.yaml

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("VESSEL_DOCKER_TEST") != "1", reason="the Docker stack test: make docker-test"
    ),
]

REPORT: dict[str, Any] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _compose_command() -> list[str]:
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return ["docker", "compose"] if v2.returncode == 0 else ["docker-compose"]


class Stack:
    """The test's compose project: commands, containers and HTTP on loopback."""

    def __init__(self, workdir: Path, data_dir: Path) -> None:
        import requests

        self.workdir = workdir
        self.ports = {name: _free_port() for name in ("pg", "mlflow", "app", "app_gpu")}
        self.api_key = secrets.token_hex(16)
        secrets_dir = workdir / "secrets"
        secrets_dir.mkdir(mode=0o700)
        for name, value in (("api_key", self.api_key), ("postgres_password", secrets.token_hex(16))):
            (secrets_dir / name).write_text(value + "\n")
            # Compose v1 mounts a secret file as it is, and the containers' users are not root.
            (secrets_dir / name).chmod(0o644)
        # docker/compose.yaml without `ports` (Compose v1 refuses published ports on the host network and an
        # override cannot remove them) nor `build` (the test uses the images make docker built); all else as is.
        base = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
        for service in base["services"].values():
            service.pop("ports", None)
            service.pop("build", None)
        (workdir / "compose.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
        self.env = os.environ | {
            "COMPOSE_PROJECT_NAME": PROJECT,
            "COMPOSE_FILE": f"{workdir / 'compose.yaml'}:{REPO / 'tests' / 'deploy' / 'compose.test.yaml'}",
            "VESSEL_SECRETS_DIR": str(secrets_dir),
            "VESSEL_DATA_DIR": str(data_dir),
            "TEST_PG_PORT": str(self.ports["pg"]),
            "TEST_MLFLOW_PORT": str(self.ports["mlflow"]),
            "TEST_APP_PORT": str(self.ports["app"]),
            "TEST_APP_GPU_PORT": str(self.ports["app_gpu"]),
        }
        self.compose_cmd = _compose_command()
        self.tracking_uri = f"http://127.0.0.1:{self.ports['mlflow']}"
        self.app_url = f"http://127.0.0.1:{self.ports['app']}"
        self.http = requests.Session()
        self.http.trust_env = False  # no proxy: loopback only

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True, **kw
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*self.compose_cmd, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False, **kw,
        )  # fmt: skip
        if check and result.returncode:
            raise AssertionError(
                f"compose {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result

    def container(self, service: str) -> str:
        cid = self.compose("ps", "-q", service).stdout.strip()
        assert cid, f"no container for {service}"
        return cid

    def inspect(self, service: str) -> dict[str, Any]:
        out = subprocess.run(
            ["docker", "inspect", self.container(service)], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)[0]

    def wait_healthy(self, *services: str, timeout: float = 180) -> float:
        start = time.monotonic()
        for service in services:
            status = ""
            while time.monotonic() - start < timeout:
                state = self.inspect(service)["State"]
                status = state.get("Health", {}).get("Status", state["Status"])
                if status == "healthy":
                    break
                time.sleep(1)
            else:
                logs = self.compose("logs", "--no-color", "--tail", "40", service, check=False).stdout
                raise AssertionError(f"{service} not healthy after {timeout:.0f} s ({status}):\n{logs}")
        return time.monotonic() - start

    def get(self, path: str, **kw):
        return self.http.get(self.app_url + path, timeout=30, **kw)

    def predict(self, photo: bytes, key: str | None = "", **params):
        headers = {"X-API-Key": self.api_key if key == "" else key} if key is not None else {}
        return self.http.post(
            self.app_url + "/predict", params=params, headers=headers, timeout=120,
            files={"file": ("photo.jpg", photo, "image/jpeg")},
        )  # fmt: skip

    def wait_until(self, what: str, probe: Callable[[], bool], timeout: float) -> float:
        """Seconds until ``probe()`` is true; fails after ``timeout``."""
        import requests

        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if probe():
                    return time.monotonic() - start
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout:.0f} s")

    def ready_version(self) -> str | None:
        response = self.get("/ready")
        return response.json()["model"]["version"] if response.status_code == 200 else None

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.tracking_uri)

    def sweep(self) -> None:
        """Remove every container, network and volume of the test's project (labels), images kept."""
        label = f"label=com.docker.compose.project={PROJECT}"
        for kind, listing in (
            ("container", ["docker", "ps", "-aq", "--filter", label]),
            ("network", ["docker", "network", "ls", "-q", "--filter", label]),
            ("volume", ["docker", "volume", "ls", "-q", "--filter", label]),
        ):
            ids = subprocess.run(listing, capture_output=True, text=True, check=False).stdout.split()
            if ids:
                remove = ["docker", "rm", "-f", "-v"] if kind == "container" else ["docker", kind, "rm", "-f"]
                subprocess.run([*remove, *ids], capture_output=True, check=False)


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    for image in IMAGES.values():
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode:
            pytest.fail(f"image {image} missing: make docker builds it")
    s = Stack(tmp_path_factory.mktemp("stack"), data_dir)
    profiles = ["--profile", "train", "--profile", "train-cpu", "--profile", "gpu"]
    s.sweep()  # what a killed earlier run left
    try:
        start = time.monotonic()
        s.compose("up", "-d", "postgres", "mlflow", "app", timeout=600)
        s.wait_healthy("postgres", "mlflow", "app")
        REPORT["stack_up_to_healthy_s"] = round(time.monotonic() - start, 1)
        yield s
    finally:
        try:
            logs = s.compose("logs", "--no-color", timeout=60, check=False).stdout
            out = REPO / "runs" / "docker-test"
            out.mkdir(parents=True, exist_ok=True)
            (out / "stack.log").write_text(logs)
            (out / "report.json").write_text(json.dumps(REPORT, indent=2) + "\n")
            s.compose(
                *profiles, "down", "-v", "--remove-orphans", "--timeout", "10", timeout=180, check=False
            )
        finally:
            s.sweep()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"\ndocker stack test (runs/docker-test/report.json, stack.log): {json.dumps(REPORT)}"
            )


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> bytes:
    return (data_dir / PHOTO).read_bytes()


def _mask(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L")) > 127


def test_images_are_labelled_non_root_and_sized(stack: Stack) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    sizes = {}
    for name, image in IMAGES.items():
        info = json.loads(
            subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=True).stdout
        )[0]
        labels = info["Config"]["Labels"] or {}
        assert labels.get("org.opencontainers.image.version") == version, (image, labels)
        assert labels.get("org.opencontainers.image.revision", "unknown") != "unknown", (image, labels)
        assert info["Config"]["User"] not in ("", "0", "root"), f"{image} runs as root"
        sizes[name] = round(info["Size"] / 1e9, 2)
    REPORT["image_size_gb"] = sizes
    # Once the base dependencies are torch-free (PyTorch in the `train` extra), the CPU image carries no torch.
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    has_torch = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", IMAGES["app"], "python", "-c", "import torch"],
        capture_output=True, check=False,
    ).returncode == 0  # fmt: skip
    REPORT["cpu_image_has_torch"] = has_torch
    if "train" in extras:
        assert not has_torch, "the CPU app image carries PyTorch"
        assert sizes["app"] <= 2.0, f"the CPU app image is {sizes['app']} GB"


def test_containers_run_read_only_and_non_root(stack: Stack) -> None:
    for service in ("postgres", "mlflow", "app"):
        info = stack.inspect(service)
        assert info["HostConfig"]["ReadonlyRootfs"], f"{service}: writable root file system"
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", service
        uid = stack.compose("exec", "-T", service, "id", "-u").stdout.strip()
        assert uid not in ("", "0"), f"{service} runs as uid {uid!r}"
        env = "\n".join(info["Config"]["Env"])
        assert stack.api_key not in env, f"{service}: the API key is in the environment"


def test_training_in_the_image_registers_a_model(stack: Stack) -> None:
    start = time.monotonic()
    result = stack.compose(
        "run", "--rm", "-T", "train-cpu", "vessel-train", "experiment=tiny_scratch", "data=chase_db1",
        "register=true", "registry.alias=champion", "trainer.max_epochs=1", "trainer.precision=32-true",
        "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
        "~callbacks.rich_progress_bar", "callbacks.serving_cost.size=64", "data.workers=1",
        timeout=1200, check=False,
    )  # fmt: skip
    REPORT["train_in_image_s"] = round(time.monotonic() - start, 1)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    version = stack.client().get_model_version_by_alias(MODEL, "champion")
    assert version.version == "1"
    REPORT["runs_after_training"] = len(stack.client().search_runs(experiment_ids=[_experiment_id(stack)]))
    # The app, up since before the model existed, finds the alias at its next poll and loads the version.
    REPORT["registered_to_served_s"] = round(
        stack.wait_until("the app serves version 1", lambda: stack.ready_version() == "1", 180), 1
    )


def _experiment_id(stack: Stack) -> str:
    client = stack.client()
    version = client.get_model_version_by_alias(MODEL, "champion")
    return client.get_run(version.run_id).info.experiment_id


@pytest.fixture(scope="module")
def reference_mask(
    stack: Stack, photo: bytes, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> np.ndarray:
    """vessel-predict on the host, version 1 through the tracking server, ONNX Runtime fp32."""
    out = tmp_path_factory.mktemp("host-predict")
    command = [
        str(Path(sys.executable).with_name("vessel-predict")), str(data_dir / PHOTO), "--out", str(out),
        "--model-uri", f"models:/{MODEL}/1", "--backend", "onnx", "--tracking-uri", stack.tracking_uri,
    ]  # fmt: skip
    env = os.environ | {"VESSEL_CACHE_DIR": str(out / "cache"), "NO_PROXY": "*"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return _mask((out / f"{Path(PHOTO).stem}.mask.png").read_bytes())


def test_app_serves_the_registered_model_like_vessel_predict(
    stack: Stack, photo: bytes, reference_mask: np.ndarray
) -> None:
    model = stack.get("/model").json()
    assert (model["version"], model["backend"], model["registry"]["reachable"]) == ("1", "onnx", True)
    assert stack.predict(photo, key=None).status_code == 401  # the key from the compose secret is required
    response = stack.predict(photo, format="mask", fov="auto")
    assert response.status_code == 200, response.text
    assert response.headers["x-model-version"] == "1"
    served = _mask(response.content)
    assert served.shape == reference_mask.shape == (960, 999)
    assert served.any(), "an empty mask"
    differ = int((served != reference_mask).sum())
    assert differ == 0, f"{differ} pixels differ from vessel-predict's mask"
    stats = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", stack.container("app")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    REPORT["app_memory_serving"] = stats.stdout.strip().split(" / ")[0]


def test_the_built_ui_is_served(stack: Stack) -> None:
    page = stack.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/_next/static/" in page.text, "GET / is not the built Next.js UI"
    script = page.text.split('src="/_next/static/', 1)[1].split('"', 1)[0]
    asset = stack.get("/_next/static/" + script)
    assert asset.status_code == 200 and len(asset.content) > 100


def test_the_containers_ui_predicts_in_chromium(stack: Stack, data_dir: Path) -> None:
    """The UI the app container serves, driven in Debian's Chromium (``ui/e2e/container.spec.ts``): it asks for
    the stack's API key once, shows the overlay of an uploaded CHASE_DB1 photo and its measurements."""
    npx = shutil.which("npx")
    assert npx and (REPO / "ui" / "node_modules" / ".bin" / "playwright").exists(), (
        "the UI's test tools are missing: make docker-test installs them (ui/node_modules)"
    )
    env = os.environ | {
        "VESSEL_E2E_URL": stack.app_url,
        "VESSEL_E2E_CONTAINER_KEY": stack.api_key,
        "VESSEL_DATA_DIR": str(data_dir),
    }
    start = time.monotonic()
    run = subprocess.run(
        [npx, "playwright", "test", "e2e/container.spec.ts"],
        cwd=REPO / "ui", env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout, run.stdout[-2000:]  # ran, not skipped
    REPORT["ui_in_chromium_s"] = round(time.monotonic() - start, 1)


def test_predictions_go_on_while_the_tracking_server_is_down(stack: Stack, photo: bytes) -> None:
    stack.compose("stop", "mlflow")
    try:
        # The next poll finds the registry gone: reported, not fatal.
        stack.wait_until(
            "/ready reports the registry unreachable",
            lambda: stack.get("/ready").json().get("registry", {}).get("reachable") is False,
            RELOAD_INTERVAL_S * 6 + 30,
        )
        for _ in range(3):
            response = stack.predict(photo, format="mask")
            assert response.status_code == 200, response.text
            ready = stack.get("/ready")
            assert ready.status_code == 200 and ready.json()["registry"]["reachable"] is False
            model = stack.get("/model")
            assert model.status_code == 200 and model.json()["registry"]["error"]
            time.sleep(RELOAD_INTERVAL_S / 2)
        REPORT["registry_down"] = {
            "predict": 200,
            "ready": 200,
            "registry_error": model.json()["registry"]["error"][:200],
        }
    finally:
        stack.compose("start", "mlflow")
    stack.wait_healthy("mlflow")
    # The alias moves while the app runs (a second version of the same run): the app follows within its interval.
    client = stack.client()
    first = client.get_model_version(MODEL, "1")
    model_id = first.model_id or first.source.rsplit("/", 1)[-1]  # MLflow 3: the source is models:/<model id>
    second = client.create_model_version(MODEL, first.source, run_id=first.run_id, model_id=model_id)
    moved = time.monotonic()
    client.set_registered_model_alias(MODEL, "champion", second.version)
    stack.wait_until("the app serves version 2", lambda: stack.ready_version() == second.version, 120)
    REPORT["alias_moved_to_served_s"] = round(time.monotonic() - moved, 1)
    assert stack.get("/ready").json()["registry"] == {"reachable": True, "error": None}


def test_app_killed_comes_back_by_its_restart_policy(
    stack: Stack, photo: bytes, reference_mask: np.ndarray
) -> None:
    state = stack.inspect("app")
    before = state["RestartCount"]
    # The server process itself, as the kernel's OOM killer would (`docker kill` counts as a manual stop, after
    # which no restart policy restarts a container).
    os.kill(state["State"]["Pid"], signal.SIGKILL)
    killed = time.monotonic()
    stack.wait_until("the app is ready again after SIGKILL", lambda: stack.ready_version() == "2", 240)
    REPORT["sigkill_to_ready_s"] = round(time.monotonic() - killed, 1)
    assert stack.inspect("app")["RestartCount"] == before + 1
    response = stack.predict(photo, format="mask")
    assert response.status_code == 200 and (_mask(response.content) == reference_mask).all()


def test_postgres_restart_loses_no_run(stack: Stack) -> None:
    client = stack.client()
    experiment = _experiment_id(stack)
    runs = {run.info.run_id for run in client.search_runs(experiment_ids=[experiment])}
    restarted = time.monotonic()
    stack.compose("restart", "postgres")
    stack.wait_healthy("postgres", "mlflow")
    failures = 0
    while True:  # the tracking server's pool reconnects (pre-ping); count the calls that failed meanwhile
        try:
            after = {run.info.run_id for run in client.search_runs(experiment_ids=[experiment])}
            break
        except Exception:
            failures += 1
            assert time.monotonic() - restarted < 60, "the tracking server did not recover"
            time.sleep(1)
    assert after == runs
    run = client.create_run(experiment)  # and it writes again
    client.log_metric(run.info.run_id, "probe", 1.0)
    client.set_terminated(run.info.run_id)
    REPORT["postgres_restart"] = {
        "recovered_s": round(time.monotonic() - restarted, 1),
        "failed_calls": failures,
    }


def test_down_and_up_keep_model_and_runs(stack: Stack, photo: bytes, reference_mask: np.ndarray) -> None:
    client = stack.client()
    experiment = _experiment_id(stack)
    runs = {run.info.run_id for run in client.search_runs(experiment_ids=[experiment])}
    stack.compose("down", "--timeout", "10")
    start = time.monotonic()
    stack.compose("up", "-d", "postgres", "mlflow", "app", timeout=600)
    stack.wait_until("the app serves version 2 after down/up", lambda: stack.ready_version() == "2", 300)
    REPORT["up_to_ready_s"] = round(time.monotonic() - start, 1)
    assert {run.info.run_id for run in stack.client().search_runs(experiment_ids=[experiment])} == runs
    response = stack.predict(photo, format="mask")
    assert response.status_code == 200 and (_mask(response.content) == reference_mask).all()


def test_backup_down_v_restore(stack: Stack, photo: bytes, reference_mask: np.ndarray) -> None:
    client = stack.client()
    experiment = _experiment_id(stack)
    runs = {run.info.run_id for run in client.search_runs(experiment_ids=[experiment])}
    backup = stack.workdir / "backup"
    result = subprocess.run(
        ["docker/backup.sh", str(backup)],
        cwd=REPO,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (backup / "mlflow.dump").stat().st_size > 0 and (backup / "artifacts.tar.gz").stat().st_size > 0
    stack.compose("down", "-v", "--timeout", "10")
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert not volumes, f"down -v left {volumes}"
    start = time.monotonic()
    result = subprocess.run(
        ["docker/restore.sh", str(backup)],
        cwd=REPO,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    stack.wait_until("the app serves version 2 after the restore", lambda: stack.ready_version() == "2", 300)
    REPORT["restore_to_ready_s"] = round(time.monotonic() - start, 1)
    assert {run.info.run_id for run in stack.client().search_runs(experiment_ids=[experiment])} == runs
    response = stack.predict(photo, format="mask")
    assert response.status_code == 200 and (_mask(response.content) == reference_mask).all()
    shutil.rmtree(backup)
