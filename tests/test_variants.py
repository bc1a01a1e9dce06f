"""Training-seed replicates: each seed of a fine-tune variant is a namespace of its own, trained at that seed."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline

from metasyn.pipeline_registry import PIPELINE_MODULES
from metasyn.pipelines import finetune
from metasyn.pipelines.variants import Variants, VariantsError
from metasyn.runners.plan import plan_groups
from metasyn.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT, declared_variants

TWO_SEEDS = {
    "variants": {
        "finetuned": {
            "metacog": {"targets": "consistency", "seeds": [3, 5]},
            "control_shuffled": {"targets": "shuffled", "seeds": [3, 5]},
        },
        "baselines": ["random_init"],
    },
    "finetune": {"seed": 0},
}
REPLICATES = ["metacog", "metacog_seed5", "control_shuffled", "control_shuffled_seed5"]


def _variants(finetuned: dict, baselines: list | None = None, finetune_seed: object = 0) -> Variants:
    return Variants.from_parameters(
        {"variants": {"finetuned": finetuned, "baselines": baselines or []}, "finetune": {"seed": finetune_seed}}
    )


def test_each_seed_is_a_namespace_and_the_first_keeps_the_variants_name() -> None:
    variants = Variants.from_parameters(TWO_SEEDS)
    assert variants.replicates == {
        "metacog": ["metacog", "metacog_seed5"],
        "control_shuffled": ["control_shuffled", "control_shuffled_seed5"],
    }
    assert variants.namespace_seeds == {
        "metacog": 3, "metacog_seed5": 5, "control_shuffled": 3, "control_shuffled_seed5": 5
    }  # fmt: skip
    assert variants.variant_of == {
        "metacog": "metacog", "metacog_seed5": "metacog",
        "control_shuffled": "control_shuffled", "control_shuffled_seed5": "control_shuffled",
    }  # fmt: skip
    assert variants.finetuned_names == REPLICATES
    assert variants.evaluated_models == ["base", *REPLICATES]
    assert variants.synergy_models == ["base", *REPLICATES, "random_init"]
    # The training options the nodes get, without the seeds (those are the namespaces').
    assert variants.finetuned == {"metacog": {"targets": "consistency"}, "control_shuffled": {"targets": "shuffled"}}


@pytest.mark.parametrize("seeds", [{}, {"seeds": None}], ids=["absent", "null"])
def test_a_variant_without_seeds_is_trained_once_at_finetune_seed(seeds: dict) -> None:
    variants = _variants({"solo": {"targets": "consistency", **seeds}}, finetune_seed=7)
    assert variants.replicates == {"solo": ["solo"]}
    assert variants.namespace_seeds == {"solo": 7}


@pytest.mark.parametrize(
    ("finetuned", "baselines", "message"),
    [
        ({"metacog": {"seeds": []}}, [], r"variants\.finetuned\.metacog\.seeds must be a non-empty list"),
        ({"metacog": {"seeds": "0, 1"}}, [], r"variants\.finetuned\.metacog\.seeds must be a non-empty list.*'0, 1'"),
        ({"metacog": {"seeds": 1}}, [], r"variants\.finetuned\.metacog\.seeds must be a non-empty list"),
        ({"metacog": {"seeds": [0, 1.5]}}, [], r"integers in \[0, 2\*\*32\).*1\.5"),
        ({"metacog": {"seeds": [True]}}, [], r"integers in \[0, 2\*\*32\).*True"),
        ({"metacog": {"seeds": [-1]}}, [], r"integers in \[0, 2\*\*32\).*-1"),
        ({"metacog": {"seeds": [0, 1, 0]}}, [], r"variants\.finetuned\.metacog\.seeds repeats seeds \[0\]"),
        ({"metacog": {"seed": [0]}}, [], r"variants\.finetuned\.metacog must be a mapping of options"),
        (
            {"metacog": {"seeds": [0, 1]}, "metacog_seed1": {}},
            [],
            r"repeated: \['metacog_seed1'\]\. A variant's further seeds are named <variant>_seed<seed>",
        ),
        ({"metacog": {"seeds": [0, 2]}}, ["metacog_seed2"], r"repeated: \['metacog_seed2'\]"),
        ({"metacog": {}}, ["metacog"], r"repeated: \['metacog'\]\.$"),  # no word on seeds where none clash
    ],
)
def test_a_bad_seed_list_is_refused_with_its_key(finetuned: dict, baselines: list, message: str) -> None:
    with pytest.raises(VariantsError, match=message):
        _variants(finetuned, baselines)


def test_a_variant_without_seeds_needs_a_finetune_seed() -> None:
    with pytest.raises(
        VariantsError, match=r"metacog\.seeds is not set.*finetune\.seed, which is None; set finetune\.seed"
    ):
        _variants({"metacog": {}}, finetune_seed=None)


def test_each_replicate_is_fine_tuned_at_its_own_seed() -> None:
    variants = Variants.from_parameters(TWO_SEEDS)
    nodes = {node.name: node for node in finetune.create_pipeline(variants).nodes}
    for namespace, seed in variants.namespace_seeds.items():
        options = variants.finetuned[variants.variant_of[namespace]]
        prepare, train = nodes[f"{namespace}.prepare_examples"], nodes[f"{namespace}.train_adapter"]
        assert prepare.func.keywords == {"targets": options["targets"], "seed": seed}
        assert prepare.inputs == ["training_examples"]
        assert train.func.keywords == {"seed": seed, "variant_lora": {}}
        assert train.outputs == [f"{namespace}.adapter", f"{namespace}.training_log", f"{namespace}.training_run"]
    assert {node.namespace for node in nodes.values()} == set(REPLICATES)
    # The seed is the namespace's: no node may still read the run-wide one.
    assert not any("params:finetune.seed" in node.inputs for node in nodes.values())


def test_the_environments_declare_their_seeds() -> None:
    assert declared_variants("base").namespace_seeds == {
        "metacog": 0, "metacog_seed1": 1, "control_shuffled": 0, "control_shuffled_seed1": 1,
        "minimal_rank": 0, "flipped_targets": 0, "unrelated_task": 0, "judgment": 0,
    }  # fmt: skip
    assert declared_variants("smoke").finetuned_names == ["metacog", "control_shuffled"]
    assert declared_variants("slurm").replicates["control_shuffled"] == [
        "control_shuffled", "control_shuffled_seed1", "control_shuffled_seed2"
    ]  # fmt: skip


def test_every_replicate_is_measured_its_own_slurm_job_and_its_own_files() -> None:
    variants = declared_variants("base")
    replicates = ["metacog", "metacog_seed1", "control_shuffled", "control_shuffled_seed1"]
    pipelines = {name: module.create_pipeline(variants) for name, module in PIPELINE_MODULES.items()}
    for name in ("finetune", "calibration", "synergy"):
        namespaces = {node.namespace.split(".")[0] for node in pipelines[name].nodes if node.namespace}
        assert set(replicates) <= namespaces, name
    calibration_differences = {out for node in pipelines["calibration"].nodes for out in node.outputs}
    assert {f"{namespace}.calibration_differences" for namespace in replicates} <= calibration_differences

    whole = sum(pipelines.values(), Pipeline([]))
    groups = {group.name: group for group in plan_groups(whole, "namespace")}
    for namespace in replicates:
        assert {node.namespace.split(".")[0] for node in groups[namespace].nodes} == {namespace}
        assert "data_prep" in groups[namespace].dependencies and groups[namespace].profile == "gpu"

    # Every dataset of the second seed's namespace is stored in a folder of its own, apart from the first seed's.
    catalog = DataCatalog.from_config(
        OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS, env="base")["catalog"]
    )
    datasets = {name for name in whole.datasets() if name.startswith("metacog_seed1.")}
    assert len(datasets) > 20
    for name in datasets:
        dataset = catalog.get(name)
        assert isinstance(dataset, MemoryDataset) or "/metacog_seed1/" in str(dataset._describe()), name
