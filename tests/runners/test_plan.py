"""Grouping nodes into SLURM jobs, the persistence check, and what a rerun resubmits."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pickle import PickleDataset

from metasyn.runners.plan import (
    finished_nodes,
    groups_to_run,
    merge_light_groups,
    nodes_to_run,
    plan_groups,
    unpersisted_crossings,
)


def identity(x: object) -> object:
    """Pass the input on."""
    return x


def combine(*parts: object) -> list[object]:
    """All inputs in one list."""
    return list(parts)


def diamond() -> Pipeline:
    """raw -> a (two nodes) -> b and c -> report; b asks for the gpu profile."""
    return Pipeline(
        [
            Pipeline(
                [Node(identity, "raw", "clean", name="clean"), Node(identity, "clean", "ready", name="ready")],
                namespace="a",
                inputs={"raw"},
                outputs={"ready"},
            ),
            Pipeline(
                [Node(identity, "ready", "b_model", name="fit", tags="slurm.gpu")],
                namespace="b",
                inputs={"ready"},
                outputs={"b_model"},
            ),
            Pipeline(
                [Node(identity, "ready", "c_model", name="fit")], namespace="c", inputs={"ready"}, outputs={"c_model"}
            ),
            Node(combine, ["b_model", "c_model"], "report", name="report"),
        ]
    )


def pickles(tmp_path: Path, *names: str) -> DataCatalog:
    """A catalog persisting the named datasets as pickles under tmp_path."""
    return DataCatalog({name: PickleDataset(filepath=str(tmp_path / f"{name}.pkl")) for name in names})


def test_groups_by_top_level_namespace_in_dependency_order() -> None:
    groups = plan_groups(diamond(), "namespace")
    assert groups[0].name == "a"
    assert groups[-1].name == "report"
    by_name = {g.name: g for g in groups}
    assert by_name["a"].node_names == ["a.clean", "a.ready"]
    assert by_name["b"].dependencies == ("a",)
    assert sorted(by_name["report"].dependencies) == ["b", "c"]


def test_one_group_per_node_without_grouping() -> None:
    groups = plan_groups(diamond(), "none")
    assert len(groups) == 5
    assert {g.name: g.dependencies for g in groups}["a.ready"] == ("a.clean",)


def test_profile_comes_from_the_slurm_tag() -> None:
    profiles = {g.name: g.profile for g in plan_groups(diamond(), "namespace")}
    assert profiles == {"a": None, "b": "gpu", "c": None, "report": None}


def test_a_group_cannot_ask_for_two_profiles() -> None:
    mixed = Pipeline(
        [
            Node(identity, "x", "y", name="one", tags="slurm.gpu"),
            Node(identity, "y", "z", name="two", tags="slurm.cpu_large"),
        ],
        namespace="mixed",
    )
    [group] = plan_groups(mixed, "namespace")
    with pytest.raises(ValueError, match="different resource profiles") as error:
        _ = group.profile
    assert "'mixed.one' wants 'gpu'" in str(error.value)
    assert "'mixed.two' wants 'cpu_large'" in str(error.value)


def test_names_datasets_that_would_cross_jobs_in_memory(tmp_path: Path) -> None:
    pipeline = diamond()
    catalog = pickles(tmp_path, "raw", "ready", "report")  # b_model and c_model stay in memory
    crossings = unpersisted_crossings(pipeline, plan_groups(pipeline, "namespace"), catalog)
    # a.clean never leaves its job, so it may stay in memory
    assert crossings == {"b_model": "b -> report", "c_model": "c -> report"}


def test_names_pipeline_inputs_only_in_memory_but_not_parameters_or_the_run_id(tmp_path: Path) -> None:
    pipeline = Pipeline([Node(combine, ["raw", "params:n", "parameters", "run_id"], "out", name="use")])
    catalog = pickles(tmp_path, "out")
    assert unpersisted_crossings(pipeline, plan_groups(pipeline, "namespace"), catalog) == {
        "raw": "pipeline input -> use"
    }


def test_rerun_skips_complete_groups_but_not_what_follows_a_rerun(tmp_path: Path) -> None:
    pipeline = diamond()
    catalog = pickles(tmp_path, "raw", "ready", "b_model", "c_model", "report")
    groups = plan_groups(pipeline, "namespace")
    assert [g.name for g in groups_to_run(groups, catalog)] == [g.name for g in groups]

    for name in ("ready", "c_model", "report"):
        catalog.save(name, 1)
    # b lacks its output; report's exists but its input will change
    assert [g.name for g in groups_to_run(groups, catalog)] == ["b", "report"]


def test_a_namespace_interrupted_by_another_group_cannot_be_one_job() -> None:
    with pytest.warns(UserWarning, match="interrupted"):
        interrupted = Pipeline(
            [
                Node(identity, "x", "y", name="one", namespace="a"),
                Node(identity, "y", "z", name="middle"),
                Node(identity, "z", "w", name="two", namespace="a"),
            ]
        )
    with pytest.raises(ValueError, match=r"cycle.*group_by: none"):
        plan_groups(interrupted, "namespace")
    assert len(plan_groups(interrupted, "none")) == 3


def study() -> Pipeline:
    """The shape of metasyn's run: GPU jobs per model, and light nodes between and after them."""

    def model(name: str, needs: list[str]) -> Pipeline:
        return Pipeline(
            [Node(combine, needs, f"{name}_outputs", name="measure", tags="slurm.gpu")],
            namespace=name,
            inputs=set(needs),
            outputs={f"{name}_outputs"},
        )

    return Pipeline(
        [
            Pipeline(
                [Node(identity, "raw", "samples", name="sample", tags="slurm.gpu")],
                namespace="prep",
                inputs={"raw"},
                outputs={"samples"},
            ),
            Node(identity, "samples", "pairs", name="pair_questions"),
            model("base", ["samples", "pairs"]),
            model("tuned", ["samples", "pairs", "base_outputs"]),
            model("control", ["samples", "pairs", "base_outputs"]),
            Node(combine, ["base_outputs", "tuned_outputs"], "tuned_diff", name="compare_tuned"),
            Node(combine, ["base_outputs", "control_outputs"], "control_diff", name="compare_control"),
            Node(combine, ["base_outputs", "tuned_outputs", "control_outputs"], "figure", name="plot_all"),
            Node(combine, ["tuned_diff", "control_diff", "base_outputs"], "table", name="combine_metrics"),
            Node(identity, "table", "summary", name="summarise_metrics"),
            Pipeline(
                [
                    Node(
                        combine,
                        ["table", "tuned_outputs", "control_outputs"],
                        "report",
                        name="compare",
                        tags="slurm.cpu",
                    )
                ],
                namespace="comparison",
                inputs={"table", "tuned_outputs", "control_outputs"},
            ),
        ]
    )


def test_light_groups_run_in_a_neighbours_job_where_that_adds_no_wait() -> None:
    groups = merge_light_groups(plan_groups(study(), "namespace"))
    jobs = {g.name: (g.node_names, sorted(g.dependencies)) for g in groups}
    assert jobs == {
        # pair_questions needs only prep's output, and everything that needs it also waits for prep.
        "prep": (["prep.sample", "pair_questions"], []),
        "base": (["base.measure"], ["prep"]),
        "tuned": (["tuned.measure", "compare_tuned"], ["base", "prep"]),
        "control": (["control.measure", "compare_control"], ["base", "prep"]),
        # combine_metrics could not join the comparison while summarise_metrics (not waiting for it) needed it;
        # once summarise_metrics had joined combine_metrics, the whole group joined the comparison.
        "comparison": (
            ["plot_all", "combine_metrics", "summarise_metrics", "comparison.compare"],
            ["base", "control", "tuned"],
        ),
    }


def test_light_groups_stay_jobs_of_their_own_where_merging_would_delay_another() -> None:
    # light feeds two parallel GPU jobs: joining either would make the other wait for it.
    pipeline = Pipeline(
        [
            Node(identity, "raw", "prepared", name="light"),
            Node(identity, "prepared", "a_out", name="a", tags="slurm.gpu"),
            Node(identity, "prepared", "b_out", name="b", tags="slurm.gpu"),
        ]
    )
    assert [g.name for g in merge_light_groups(plan_groups(pipeline, "namespace"))] == ["light", "a", "b"]


def test_nodes_to_run_skips_finished_nodes_unless_their_output_is_missing_or_needed_from_memory(
    tmp_path: Path,
) -> None:
    pipeline = diamond()
    catalog = pickles(tmp_path, "raw", "ready", "b_model")
    [a] = [g for g in plan_groups(pipeline, "namespace") if g.name == "a"]
    # a.clean's output lives in memory: a.ready needs it only while a.ready itself must run.
    assert [n.name for n in nodes_to_run(a.nodes, set(), catalog)] == ["a.clean", "a.ready"]
    assert [n.name for n in nodes_to_run(a.nodes, {"a.clean", "a.ready"}, catalog)] == ["a.clean", "a.ready"]
    catalog.save("ready", 1)
    assert finished_nodes(a, catalog) == {"a.clean", "a.ready"}
    assert nodes_to_run(a.nodes, {"a.clean", "a.ready"}, catalog) == []
    assert [n.name for n in nodes_to_run(a.nodes, {"a.clean"}, catalog)] == ["a.clean", "a.ready"]
