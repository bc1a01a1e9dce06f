"""The run's own configuration reaches the catalog, the parameters and the pipelines, in every environment.

Regression: building the pipelines once created a second config loader for conf/base, which re-bound
OmegaConf's process-wide ``globals`` resolver, so a ``--env slurm`` run resolved ``base.model`` to the
embedded model instead of gemma-3-4b-it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from metasyn.lm.models import ModelNotFoundError
from tests.conftest import copy_project, declared_variants

GLOBAL_REFERENCE = re.compile(r"^\$\{globals:([\w.]+)\}$")
LOCAL_GLOBALS = {
    "model": {"spec": "/models/some-local-model", "device": "cuda:1", "dtype": "float16"},
    "seed": 7,
    "answer_matcher": {"name": "exact"},
}


def _load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def _merge(base: dict, overlay: dict) -> dict:
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _lookup(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def _global_references(tree, path=()):
    """(key path, globals key) for every parameter written as exactly ``${globals:...}``."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _global_references(value, (*path, key))
    elif isinstance(tree, str) and (match := GLOBAL_REFERENCE.match(tree)):
        yield path, match.group(1)


def _parameters(conf: Path) -> dict:
    merged: dict = {}
    for file in sorted(conf.glob("parameters*.yml")):
        merged = _merge(merged, _load_yaml(file))
    return merged


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("run_configuration"))


@pytest.mark.parametrize("env", ["base", "smoke", "slurm", "local", "demo"])
def test_every_global_takes_the_environments_value_after_the_pipelines_are_built(project: Path, env: str) -> None:
    local_globals = project / "conf" / "local" / "globals.yml"
    if env == "local":
        local_globals.write_text(yaml.safe_dump(LOCAL_GLOBALS))
    conf = project / "conf"
    expected_globals = _merge(_load_yaml(conf / "base" / "globals.yml"), _load_yaml(conf / env / "globals.yml"))
    env_parameters = _parameters(conf / env) if env != "base" else {}
    try:
        bootstrap_project(project)
        with KedroSession.create(project_path=project, env=env) as session:
            context = session.load_context()
            assert len(pipelines["__default__"].nodes) > 0  # what `kedro run` builds before the catalog
            catalog, params = context.catalog, context.params
            base_model = catalog.get("base.model")._describe()
            random_model = catalog.get("random_init.model")._describe()
    finally:
        local_globals.unlink(missing_ok=True)

    model = expected_globals["model"]
    assert (base_model["spec"], base_model["device"], base_model["dtype"]) == (
        model["spec"], model["device"], model["dtype"])  # fmt: skip
    assert (random_model["spec"], random_model["random_init"], random_model["seed"]) == (
        model["spec"], True, expected_globals["seed"])  # fmt: skip
    references = list(_global_references(_parameters(conf / "base")))
    assert len(references) >= 3  # seeds and the answer matcher at least: the check below is not vacuous
    for path, key in references:
        overridden = env_parameters
        for part in path:
            overridden = overridden.get(part, {}) if isinstance(overridden, dict) else {}
        if overridden != {} and not (isinstance(overridden, str) and GLOBAL_REFERENCE.match(overridden)):
            continue  # the environment sets this parameter itself
        assert _lookup(params, ".".join(path)) == _lookup(expected_globals, key), (env, path)


def test_slurm_run_stops_before_any_work_when_its_model_is_not_cached(project: Path) -> None:
    bootstrap_project(project)
    missing = pytest.raises(ModelNotFoundError, match=r"google/gemma-3-4b-it.*hf download google/gemma-3-4b-it")
    with KedroSession.create(project_path=project, env="slurm") as session, missing:
        session.run(pipeline_names=["synergy"], namespaces=["base"])
    # Not even the run record: a run refused by the checks never started.
    assert not any((project / "data").rglob("*.*")), "nothing may be written before the model check"


def test_a_variant_list_override_rebuilds_the_pipelines(project: Path) -> None:
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="smoke") as session:
        session.load_context()
        declared = {node.namespace.split(".")[0] for node in pipelines["finetune"].nodes}
    override = project / "conf" / "local" / "parameters.yml"
    dropped = dict.fromkeys(declared_variants("base").finetuned)
    override.write_text(
        yaml.safe_dump({"variants": {"finetuned": {"solo": {"targets": "consistency"}, **dropped}, "baselines": []}})
    )
    try:
        with KedroSession.create(project_path=project) as session:
            session.load_context()
            overridden = {node.namespace.split(".")[0] for node in pipelines["finetune"].nodes}
            synergy_models = {node.namespace.split(".")[0] for node in pipelines["synergy"].nodes if node.namespace}
    finally:
        override.unlink()
    assert declared == set(declared_variants("smoke").finetuned)
    assert overridden == {"solo"}
    assert synergy_models == {"base", "solo"}


def test_a_runtime_params_variant_list_reaches_pipelines_and_nodes(project: Path) -> None:
    bootstrap_project(project)
    override = {"variants": {"finetuned": {"control_shuffled": None}, "baselines": []}}
    with KedroSession.create(project_path=project, env="smoke", runtime_params=override) as s:
        s.load_context()
        synergy_models = {node.namespace.split(".")[0] for node in pipelines["synergy"].nodes if node.namespace}
        report = next(node for node in pipelines["comparison"].nodes if node.name.endswith("compose_report"))
    assert synergy_models == {"base", "metacog"}
    assert report.func.keywords == {"variants": ["metacog"], "replicates": {"metacog": ["metacog"]}, "baselines": []}
    assert not any(name.startswith("random_init.") for name in pipelines["comparison"].inputs())


def test_a_seeds_override_replaces_the_list_and_reaches_the_nodes(project: Path) -> None:
    bootstrap_project(project)
    override = {"variants": {"finetuned": {"metacog": {"seeds": [4, 5]}}}}
    with KedroSession.create(project_path=project, env="smoke", runtime_params=override) as s:
        s.load_context()
        trainings = [node for node in pipelines["finetune"].nodes if node.name.endswith(".train_adapter")]
        seeds = {node.namespace: node.func.keywords["seed"] for node in trainings}
    # The override's list replaces conf/smoke's [0]; the first seed keeps the variant's name.
    assert seeds == {"metacog": 4, "metacog_seed5": 5, "control_shuffled": 0}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"variants": {"finetuned": 5}}, r"variants\.finetuned must map each variant name"),
        ({"variants": {"finetuned": {"metacog": {"shufle_targets": True}}}}, r"variants\.finetuned\.metacog"),
        ({"variants": {"finetuned": {"metacog": {}}, "baselines": ["metacog"]}}, r"repeated: \[.metacog.\]"),
        ({"variants": {"finetuned": {"metacog": {"seeds": [0, 0]}}}}, r"metacog\.seeds repeats seeds \[0\]"),
    ],
)
def test_a_bad_variant_list_is_refused_before_anything_is_built(project: Path, override: dict, message: str) -> None:
    from metasyn.pipelines.variants import VariantsError

    bootstrap_project(project)
    session = KedroSession.create(project_path=project, env="smoke", runtime_params=override)
    with session, pytest.raises(VariantsError, match=message):
        session.load_context()
