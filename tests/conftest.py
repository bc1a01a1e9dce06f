"""Shared fixtures: offline mode, tiny random models, and one smoke project per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Nothing may be downloaded during tests; set before transformers/datasets are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_SPEC = "embedded:smollm2-135m-instruct"


def declared_variants(env: str = "smoke"):
    """The variants that an environment declares (by default what the smoke runs instantiate)."""
    from kedro.config import OmegaConfigLoader

    from metasyn.pipelines.variants import Variants
    from metasyn.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS, env=env)
    return Variants.from_parameters(loader["parameters"])


def tiny_llama_config(vocab_size: int, **overrides):
    """A 2-layer, 4-head random Llama (grouped-query, 2 KV heads): real code paths, milliseconds per forward."""
    from transformers import LlamaConfig

    sizes = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 128}  # fmt: skip
    return LlamaConfig(**(sizes | overrides), vocab_size=vocab_size)


@pytest.fixture
def one_torch_thread():
    """Tiny models on shared cores: with more threads, OpenMP spin-waiting makes small ops ~20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def copy_project(destination: Path) -> Path:
    """The project's configuration (without conf/local) in ``destination``, so a run writes its data there."""
    shutil.copytree(PROJECT_ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir()
    shutil.copy(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copy(PROJECT_ROOT / ".telemetry", destination / ".telemetry")
    (destination / "src").mkdir()  # Kedro checks that it exists; the package itself is installed
    (destination / "data").mkdir()
    return destination


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide project copy that the smoke runs share."""
    return copy_project(tmp_path_factory.mktemp("smoke_project"))


# What each pipeline reads from the others, so a test of one runs just what it needs.
SMOKE_DEPENDENCIES = {
    "data_prep": [],
    "finetune": ["data_prep"],
    "calibration": ["finetune"],
    "synergy": ["finetune"],
    "comparison": ["calibration", "synergy"],
}


@pytest.fixture(scope="session")
def run_smoke(smoke_project: Path):
    """Run pipelines (and, first, those they build on) once per session in the ``smoke`` environment."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    done: set[str] = set()

    def run(name: str) -> Path:
        if name not in done:
            for dependency in SMOKE_DEPENDENCIES[name]:
                run(dependency)
            bootstrap_project(smoke_project)
            with KedroSession.create(project_path=smoke_project, env="smoke") as session:
                session.run(pipeline_names=[name])
            done.add(name)
        return smoke_project

    return run


@pytest.fixture(scope="session")
def embedded_lm():
    """The embedded default model (converted once, then cached), loaded on CPU."""
    from metasyn.lm.models import load_model

    return load_model(EMBEDDED_SPEC, device="cpu", dtype="float32")


# Fixtures whose work a pytest-xdist worker would otherwise repeat: the session's smoke runs (minutes) and the
# local SLURM cluster.
SHARED_SESSION_FIXTURES = {"run_smoke": "smoke", "slurm_cluster": "slurm"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n`` with ``--dist loadgroup`` (``make test``): every test that uses a shared session
    fixture goes to one worker, and every other test to the worker that runs the rest of its file, so no session
    or module fixture is built twice."""
    for item in items:
        used = [group for name, group in SHARED_SESSION_FIXTURES.items() if name in getattr(item, "fixturenames", ())]
        item.add_marker(pytest.mark.xdist_group(used[0] if used else item.nodeid.split("::")[0]))
