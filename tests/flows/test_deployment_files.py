"""prefect.yaml, the Dockerfile and the worker scripts agree with the project and each other.

No Docker engine runs here, so the image is not built; these checks catch what would break
it or the split over machines: a COPY of a missing file, an extra pyproject does not define,
a package `pip install .` installs but the image lacks, a deployment on the wrong pool or
without the store it must carry (docs/deployments-split.md).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from prefect.utilities.templating import apply_values

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (the Dockerfile's is 3.11)

ROOT = Path(__file__).resolve().parents[2]
GPU_DEPLOYMENTS = {"nightly"}  # train-headlines: the one deployment that wants a GPU


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_dockerfile_copies_files_that_exist_and_dockerignore_keeps():
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")]
    copies = [shlex.split(args) for op, args in dockerfile_instructions() if op == "COPY"]
    assert copies
    for *sources, _ in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
            assert source.rstrip("/") not in ignored, f".dockerignore drops {source}"


def test_the_image_holds_every_package_pip_installs():
    copied = {Path(shlex.split(args)[0]).parts[0] for op, args in dockerfile_instructions()
              if op == "COPY"}
    included = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in included} <= copied


def test_dockerfile_extras_exist_in_pyproject():
    text = (ROOT / "Dockerfile").read_text()
    named = set(re.findall(r"EXTRAS=([\w,-]+)", text))
    assert "gpu" in {extra for group in named for extra in group.split(",")}
    extras = pyproject()["project"]["optional-dependencies"]
    for group in named:
        for extra in group.split(","):
            assert extra in extras, f"Dockerfile names extra {extra!r}, pyproject has none"
    assert any("tensorflow[and-cuda]" in dep for dep in extras["gpu"])


def test_deployments_are_split_over_the_two_pools():
    pools = {d["name"]: d["work_pool"]["name"] for d in deployments()}
    assert pools == {"nightly": "charlm-gpu", "inbox": "charlm-cpu", "poll": "charlm-cpu",
                     "batch": "charlm-cpu", "on-demand": "charlm-cpu"}
    assert {name for name, pool in pools.items() if pool == "charlm-gpu"} == GPU_DEPLOYMENTS
    # The scripts create and serve exactly these pools by default (one machine runs all).
    env_sh = (ROOT / "scripts" / "_env.sh").read_text()
    default = re.search(r'CHARLM_POOLS="\$\{CHARLM_POOLS:-([^}]*)\}"', env_sh).group(1)
    assert set(default.split()) == set(pools.values())


def test_every_deployment_carries_the_deploying_shells_store(monkeypatch):
    monkeypatch.setenv("CHARLM_STORAGE", "/mnt/shared/charlm-store")
    for deployment in deployments():
        # What `prefect deploy` does to each deployment before sending it to the server.
        resolved = apply_values(deployment, dict(os.environ), remove_notset=False)
        env = resolved["work_pool"]["job_variables"]["env"]
        assert env["CHARLM_STORAGE"] == "/mnt/shared/charlm-store", deployment["name"]
        assert (ROOT / deployment["entrypoint"].split(":")[0]).is_file()


@pytest.mark.parametrize("script", ["deploy.sh", "worker.sh"])
def test_scripts_use_the_pool_list(script):
    text = (ROOT / "scripts" / script).read_text()
    assert "$CHARLM_POOLS" in text and "charlm-process" not in text


def test_the_image_builds_the_kernels_once_after_installing_charlm():
    steps = dockerfile_instructions()

    def first(op: str, text: str) -> int:
        return next(i for i, (o, args) in enumerate(steps) if o == op and text in args)

    compiler, install = first("RUN", "install -y --no-install-recommends g++"), \
        first("RUN", "pip install --no-deps .")
    folder, build = first("ENV", "CHARLM_KERNEL_DIR=/opt/charlm/kernels"), \
        first("RUN", "charlm kernels")
    # the compiler, then charlm, then the build into a fixed folder every user can read
    assert compiler < install < build and folder < build
    assert "chmod -R a+rX /opt/charlm" in steps[build][1]
