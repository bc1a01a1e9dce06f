"""Typed parameters (metasyn.parameters): every environment validates clean, and each kind of bad value is refused
with its full dotted key, the value and what is allowed, all problems at once, before any model is loaded."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline

from metasyn.context import ParametersError, parameters_message, refuse_bad_parameters
from metasyn.hooks import CheckParametersHook
from metasyn.parameters import parameter_problems
from metasyn.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT, copy_project

CONF = PROJECT_ROOT / "conf"


def _loader(env: str) -> OmegaConfigLoader:
    return OmegaConfigLoader(str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": env}, env=env)


@pytest.fixture(scope="module")
def base() -> dict:
    return _loader("base")["parameters"]


def _with(parameters: dict, key: str, value) -> dict:
    """A deep copy of ``parameters`` with the dotted ``key`` set to ``value``."""
    changed = copy.deepcopy(parameters)
    *parents, last = key.split(".")
    block = changed
    for part in parents:
        block = block[part]
    block[last] = value
    return changed


def _from_project(message: str) -> str:
    """``message`` with file paths relative to the project (they are relative to the working directory, if in it)."""
    return message.replace(str(PROJECT_ROOT) + os.sep, "")


def _messages(parameters: dict) -> dict[str, str]:
    return {problem.key: problem.message for problem in parameter_problems(parameters)}


@pytest.mark.parametrize("env", ["base", "smoke", "slurm", "demo"])
def test_each_environments_parameters_validate_clean(env: str) -> None:
    assert parameter_problems(_loader(env)["parameters"]) == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        # "all but the last 5" before: a count is a positive integer.
        ("data_prep.sources.factual.count", -5, "-5 is not allowed; a positive integer is needed"),
        ("data_prep.sampling.n_samples", "10", "'10' is not allowed; an integer >= 2"),  # no str -> int coercion
        ("synergy.activity.batch_size", True, "True is not allowed; a positive integer"),  # no bool for an int
        ("variants.finetuned.minimal_rank.lora.r", 0, "0 is not allowed; a positive integer"),  # a variant's LoRA
        ("finetune.training.bf16", "no", "'no' is not allowed; true or false is needed"),
        ("synergy.ablation.dtype", "int8", "'int8' is not allowed; auto (bfloat16 where the hardware has it)"),
        ("calibration.generation.dtype", "bfloat17", "'bfloat17' is not allowed; auto"),
        ("data_prep.split.test_fraction", 1.5, "1.5 is not allowed; a number strictly between 0 and 1"),
        ("synergy.graph.edge_fraction", 0, "0 is not allowed; a number in (0, 1]"),
        ("synergy.activity.steps", 3, "3 is not allowed; more than synergy.phiid.tau + 2 = 3 steps"),
        ("calibration.matcher.name", "fuzzy", "'fuzzy' is not allowed; a registered answer matcher (contains, exact"),
        ("data_prep.sampling.matcher.nli.device", "gpu", "'gpu' is not allowed; auto or a torch device"),
        ("synergy.phiid.redundancy", "XYZ", "'XYZ' is not allowed; a PhiID redundancy function (MMI, CCS)"),
        ("synergy.phiid.device", "gpu", "'gpu' is not allowed; auto or a torch device"),
        ("comparison.controls", ["nope"], "['nope'] is not allowed; ['nope'] are not fine-tune variants; each must"),
    ],
)
def test_a_bad_value_is_refused_with_its_key_the_value_and_what_is_allowed(base, key, value, message) -> None:
    messages = _messages(_with(base, key, value))
    assert list(messages) == [key]
    assert messages[key].startswith(f"{key}: {message}")


@pytest.mark.parametrize(
    ("key", "value", "reported_as", "message"),
    [
        # The library's own checks rule, with their own words.
        ("calibration.methods", ["stated", "vibes"], "calibration.methods", r"unknown: \['vibes'\]"),
        ("calibration.verdict_method", "p_true_ish", "calibration.methods", "is not among calibration.methods"),
        ("synergy.ablation.random_orders", 0, "synergy.ablation", "random_orders must be an integer >= 1; got 0"),
        ("synergy.truncation.min_steps", 3, "synergy.truncation", "min_steps must be an integer >= tau \\+ 5 = 6"),
        ("variants.finetuned.metacog.seeds", [0, 0], "variants", r"metacog\.seeds repeats seeds \[0\]"),
        ("variants.baselines", ["metacog"], "variants", r"repeated: \['metacog'\]"),
    ],
)
def test_the_library_checks_are_called_on_the_tree(base, key, value, reported_as, message) -> None:
    messages = _messages(_with(base, key, value))
    assert list(messages) == [reported_as]
    assert re.search(message, messages[reported_as])


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("data_prep.sampling.n_sampels", "did you mean n_samples? Known keys under data_prep.sampling: batch_size,"),
        ("data_prep.sources.trivia", "did you mean triviaqa? Known keys under data_prep.sources: arithmetic,"),
        ("synergy.phiid.taus", "did you mean tau?"),
        ("finetune.training.learnin_rate", "is not a SFTConfig field; did you mean learning_rate?"),
        ("finetune.lora.rank", "is not a LoraConfig field"),
    ],
)
def test_an_unknown_key_is_refused_naming_the_known_keys_nearby(base, key: str, hint: str) -> None:
    messages = _messages(_with(base, key, 3))
    assert list(messages) == [key]
    assert hint in messages[key]


def test_a_key_metasyn_sets_itself_is_refused_where_parameters_pass_through(base) -> None:
    messages = _messages(_with(base, "finetune.training.output_dir", "elsewhere"))
    assert messages == {
        "finetune.training.output_dir": "finetune.training.output_dir is set by metasyn itself; delete it here."
    }


def test_a_missing_key_and_a_value_that_is_not_a_block_are_named(base) -> None:
    missing = copy.deepcopy(base)
    del missing["synergy"]["phiid"]["tau"]
    assert _messages(missing) == {
        "synergy.phiid.tau": "synergy.phiid.tau is missing; set it (conf/base sets every key)."
    }
    assert (
        "a mapping of ['batch_size', 'generation_dtype', 'steps'] is needed"
        in _messages(_with(base, "synergy.activity", 5))["synergy.activity"]
    )


def test_a_bare_matcher_name_is_accepted_as_the_library_reads_it(base) -> None:
    assert _messages(_with(base, "calibration.matcher", "exact")) == {}


def test_a_fine_tune_must_name_its_training_targets(base) -> None:
    variants = copy.deepcopy(base)
    del variants["variants"]["finetuned"]["metacog"]["targets"]
    messages = _messages(variants)
    assert list(messages) == ["variants"]
    assert "variants.finetuned.metacog.targets must name the variant's training targets, one of ['consistency', "
    assert (
        "'flipped_half', 'judgment', 'shuffled', 'unrelated']" in messages["variants"]
        and "got None" in messages["variants"]
    )


def test_a_variants_lora_fields_are_checked_as_lora_fields(base) -> None:
    messages = _messages(_with(base, "variants.finetuned.minimal_rank.lora.lora_alpah", 2))
    assert messages == {
        "variants.finetuned.minimal_rank.lora.lora_alpah": "variants.finetuned.minimal_rank.lora.lora_alpah is not a "
        "LoraConfig field; did you mean lora_alpha or lora_bias?"
    }


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        (["control_shuffled", "control_shufled"], "['control_shufled'] are not fine-tune variants"),
        (["flipped_targets", "flipped_targets"], "['flipped_targets'] are listed more than once"),
        (
            ["metacog", "control_shuffled", "minimal_rank", "flipped_targets", "unrelated_task", "judgment"],
            "every variant is a control",
        ),
        ([], "a non-empty list of fine-tune variant names"),
    ],
)
def test_the_controls_are_fine_tune_variants_each_once_and_not_all_of_them(base, controls, message) -> None:
    messages = _messages(_with(base, "comparison.controls", controls))
    assert list(messages) == ["comparison.controls"] and message in messages["comparison.controls"]


def test_every_problem_is_reported_together_with_the_file_that_sets_its_key(base) -> None:
    bad = base
    for key, value in [
        ("data_prep.sources.factual.count", -5),
        ("data_prep.sampling.n_samples", "10"),
        ("variants.finetuned.minimal_rank.lora.r", "1"),
        ("synergy.activity.steps", 2),
        ("data_prep.sampling.n_sampels", 3),
    ]:
        bad = _with(bad, key, value)
    with pytest.raises(ParametersError) as refused:
        refuse_bad_parameters(bad, _loader("base"))
    message = _from_project(str(refused.value))
    assert message.startswith("The run's parameters have 5 problems; nothing was run.")
    count = "- data_prep.sources.factual.count: -5 is not allowed; a positive integer is needed"
    assert f"{count} (conf/base/parameters_data_prep.yml)" in message
    assert "- data_prep.sampling.n_samples: '10' is not allowed" in message
    assert "- data_prep.sampling.n_sampels is not a known key; did you mean n_samples?" in message
    rank = "- variants.finetuned.minimal_rank.lora.r: '1' is not allowed; a positive integer is needed"
    assert f"{rank} (conf/base/parameters.yml)" in message
    assert "- synergy.activity.steps: 2 is not allowed" in message


def test_the_file_named_is_the_environment_overlay_or_the_params_option_that_set_the_key() -> None:
    loader = OmegaConfigLoader(
        str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": "smoke"}, env="smoke",
        runtime_params={"synergy": {"activity": {"batch_size": 0}}},
    )  # fmt: skip
    parameters = _with(_with(loader["parameters"], "data_prep.sampling.n_samples", 1), "calibration.matcher.name", "x")
    message = _from_project(parameters_message(parameter_problems(parameters), loader))
    assert "data_prep.sampling.n_samples: 1 is not allowed" in message
    assert "is needed (conf/smoke/parameters_data_prep.yml)" in message  # the overlay sets it, not conf/base
    assert "synergy.activity.batch_size: 0 is not allowed; a positive integer is needed (--params)" in message
    assert "(conf/base/parameters_calibration.yml, via globals answer_matcher)" in message


def test_the_hook_refuses_the_catalogs_parameters_before_every_other_hook(base) -> None:
    from metasyn.settings import HOOKS

    assert isinstance(HOOKS[-1], CheckParametersHook)  # pluggy calls the last registered first
    catalog = DataCatalog({"parameters": MemoryDataset(_with(base, "synergy.phiid.tau", "1"))})
    with pytest.raises(
        ParametersError, match=r"^The run's parameters have 1 problem;.*\n- synergy\.phiid\.tau: '1' is"
    ):
        CheckParametersHook().before_pipeline_run({}, Pipeline([]), catalog)


@pytest.mark.slow  # a kedro subprocess (seconds of imports), like the fresh synergy run in test_hooks.py
def test_a_run_with_a_bad_count_stops_before_any_model_is_loaded(tmp_path) -> None:
    project = copy_project(tmp_path / "project")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--params", "data_prep.sources.factual.count=-5"],
        cwd=project, capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    output = " ".join((done.stdout + done.stderr).split())
    print(f"kedro run --params data_prep.sources.factual.count=-5 refused after {elapsed:.1f} s")
    assert done.returncode != 0
    assert "Error: The run's parameters have 1 problem" in output
    assert "data_prep.sources.factual.count: -5 is not allowed" in output
    assert "Traceback" not in output  # the message alone, not a trace through Kedro
    assert "ModelDataset" not in output and "Loading data from base.model" not in output  # no model was loaded
    assert not any((project / "data").iterdir())  # nothing was written, not even the run record
