"""Environments are overlays: conf/smoke and conf/slurm hold only what differs from conf/base, merged softly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from metasyn.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"


def _merged(folder: Path, pattern: str) -> dict:
    merged: dict = {}
    for path in sorted(folder.glob(pattern)):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def _leaves(tree: dict, path: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _lookup(tree: dict, path: tuple):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return KeyError
        tree = tree[key]
    return tree


def _resolved(env: str, key: str) -> dict:
    return OmegaConfigLoader(str(CONF), **{**CONFIG_LOADER_ARGS, "default_run_env": env}, env=env)[key]


@pytest.mark.parametrize("env", ["smoke", "slurm", "demo"])
@pytest.mark.parametrize("pattern", ["parameters*.yml", "globals.yml"])
def test_an_overlay_sets_only_keys_that_differ_from_base(env: str, pattern: str) -> None:
    base_raw = _merged(CONF / "base", pattern)
    base_resolved = _resolved("base", "globals" if pattern == "globals.yml" else "parameters")
    overlay = _merged(CONF / env, pattern)
    same = [
        ".".join(path)
        for path, value in _leaves(overlay)
        if value == _lookup(base_raw, path) or value == _lookup(base_resolved, path)
    ]
    assert not same, f"conf/{env} repeats conf/base's values for {same}; delete them from conf/{env}"


def test_the_leaf_walk_finds_a_repeated_key() -> None:
    assert list(_leaves({"a": {"b": 1, "c": {"d": 2}}})) == [(("a", "b"), 1), (("a", "c", "d"), 2)]


def test_soft_merge_keeps_base_keys_an_overlay_does_not_set() -> None:
    smoke_overlay = _merged(CONF / "smoke", "parameters*.yml")
    assert "learning_rate" not in smoke_overlay["finetune"]["training"]  # set only in conf/base
    base, smoke = _resolved("base", "parameters"), _resolved("smoke", "parameters")
    assert smoke["finetune"]["training"]["learning_rate"] == base["finetune"]["training"]["learning_rate"]
    assert smoke["finetune"]["training"]["max_steps"] != base["finetune"]["training"]["max_steps"]


def test_slurm_measures_the_real_question_sets_only() -> None:
    sources = _resolved("slurm", "parameters")["data_prep"]["sources"]
    assert {name for name, options in sources.items() if options is not None} == {"mmlu_pro", "gsm8k", "triviaqa"}


@pytest.mark.parametrize("env", ["smoke", "slurm", "demo"])
def test_soft_merge_keeps_every_base_key(env: str) -> None:
    base, resolved = _resolved("base", "parameters"), _resolved(env, "parameters")
    overlay = _merged(CONF / env, "parameters*.yml")
    # a key the overlay sets to null (a dropped question source) takes its base subtree with it
    dropped = [path for path, value in _leaves(overlay) if value is None]
    missing = [
        ".".join(path)
        for path, _ in _leaves(base)
        if _lookup(resolved, path) is KeyError and not any(path[: len(d)] == d for d in dropped)
    ]
    assert not missing, f"--env {env} lost conf/base's keys {missing}"
    if env == "smoke":  # every key it does not set keeps conf/base's resolved value, but for its own globals
        own_globals = [f"${{globals:{'.'.join(path)}}}" for path, _ in _leaves(_merged(CONF / env, "globals.yml"))]
        base_raw = _merged(CONF / "base", "parameters*.yml")
        changed = [
            ".".join(path)
            for path, value in _leaves(base)
            if _lookup(overlay, path) is KeyError
            and not any(path[: len(d)] == d for d in dropped)
            and _lookup(base_raw, path) not in own_globals
            and _lookup(resolved, path) != value
        ]
        assert not changed, f"--env smoke changed conf/base's values for {changed} without setting them"
