"""source -> (left, right) -> report, and nap on its own: five SLURM jobs when grouped by namespace."""

from __future__ import annotations

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


def nap(n: int, seconds: float) -> dict[str, float]:
    """Sleep ``seconds``, e.g. past the job's time limit."""
    time.sleep(seconds)
    return {"n": n, "slept": seconds}


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
            Node(nap, ["params:n", "params:sleep"], "nap", name="nap", tags="slurm.short"),
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
