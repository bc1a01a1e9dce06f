"""The project hook stops a run before any node when a model it needs is missing (metasyn.hooks)."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node

from metasyn.hooks import CheckModelsHook
from metasyn.lm.models import ModelNotFoundError

MISSING_NLI = {"name": "nli", "nli": {"model": "metasyn-tests/no-such-nli", "batch_size": 4, "device": "cpu"}}


def _check(parameter: str, value) -> None:
    """Run the hook on a one-node pipeline that reads ``parameter``."""
    pipeline = Pipeline([node(func=lambda settings: settings, inputs=parameter, outputs="out", name="reads")])
    CheckModelsHook().before_pipeline_run({}, pipeline, DataCatalog({parameter: MemoryDataset(value)}))


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("params:calibration.matcher", MISSING_NLI),  # the parameter is the matcher's settings
        ("params:data_prep.sampling", {"n_samples": 10, "matcher": MISSING_NLI}),  # the settings sit inside it
    ],
)
def test_a_missing_nli_classifier_stops_the_run_before_any_node(parameter, value):
    with pytest.raises(ModelNotFoundError, match=r"hf download metasyn-tests/no-such-nli"):
        _check(parameter, value)


def test_matchers_without_a_model_and_other_parameters_pass():
    _check("params:calibration.matcher", {"name": "contains", "nli": {"model": None}})
    _check("params:data_prep.sampling", {"n_samples": 10, "matcher": "exact"})
    _check("params:calibration.metrics.ece_bins", 10)
