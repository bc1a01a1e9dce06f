"""source -> (left, right) -> report, and nap -> wake: six SLURM jobs when grouped by namespace."""

from __future__ import annotations

import os
import time

import pandas as pd
from kedro.pipeline import Node, Pipeline


def make_numbers(n: int) -> pd.DataFrame:
    """The numbers 1..n."""
    return pd.DataFrame({"x": range(1, n + 1)})


def square(numbers: pd.DataFrame) -> list[int]:
    """Each number squared."""
    return [int(x) ** 2 for x in numbers["x"]]


def total(values: list[int]) -> int:
    """The sum."""
    return sum(values)


def rest(n: int) -> dict[str, int]:
    """A quick first node, so that a requeued job has a finished node to skip."""
    return {"n": n}


def nap(rested: dict[str, int], seconds: float, sleepy_attempts: int) -> dict[str, float]:
    """Sleep ``seconds`` (e.g. past the time limit) in the job's first ``sleepy_attempts`` attempts.

    Later attempts of a requeued job (SLURM counts them in SLURM_RESTART_COUNT) return at once, as a node
    that resumes from its checkpoints would.
    """
    attempt = int(os.environ.get("SLURM_RESTART_COUNT", "0")) + 1
    slept = seconds if attempt <= sleepy_attempts else 0
    time.sleep(slept)
    return {"n": rested["n"], "slept": slept, "attempt": attempt}


def wake(slept: dict[str, float]) -> dict[str, float]:
    """What the nap left: a job that must wait for nap's, requeued or not."""
    return slept


def scale(numbers: pd.DataFrame, factor: int) -> list[int]:
    """Each number times ``factor``."""
    return [int(x) * factor for x in numbers["x"]]


def check(values: list[int], fail: bool) -> list[int]:
    """The values, unless told to fail."""
    if fail:
        raise RuntimeError("asked to fail")
    return values


def summarise(left_total: int, right_values: list[int]) -> dict[str, int]:
    """Both branches in one record."""
    return {"left_total": left_total, "right_sum": sum(right_values)}


def smoke_pipeline() -> Pipeline:
    """The pipeline the cluster tests run."""
    left = Pipeline(
        [
            Node(square, "numbers", "squares", name="square"),
            Node(total, "squares", "total", name="total"),
        ],
        namespace="left",
        inputs={"numbers"},
    )
    right = Pipeline(
        [
            Node(scale, ["numbers", "params:factor"], "scaled", name="scale"),
            Node(check, ["scaled", "params:fail"], "checked", name="check"),
        ],
        namespace="right",
        inputs={"numbers"},
        parameters={"params:factor", "params:fail"},
        tags={"slurm.gpu"},
    )
    return Pipeline(
        [
            Node(make_numbers, "params:n", "numbers", name="source"),
            left,
            right,
            Node(summarise, ["left.total", "right.checked"], "report", name="report"),
            Pipeline(
                [
                    Node(rest, "params:n", "rested", name="rest"),
                    Node(nap, ["rested", "params:sleep", "params:sleepy_attempts"], "slept", name="sleep"),
                ],
                namespace="nap",
                parameters={"params:n", "params:sleep", "params:sleepy_attempts"},
                tags={"slurm.short"},
            ),
            Node(wake, "nap.slept", "woke", name="wake"),
        ]
    )


def leaky_pipeline() -> Pipeline:
    """Two jobs passing ``loose_numbers``, which is in no catalog: the runner must refuse it."""
    return Pipeline(
        [
            Node(make_numbers, "params:n", "loose_numbers", name="loose_source"),
            Node(square, "loose_numbers", "loose_squares", name="loose_square"),
        ]
    )
