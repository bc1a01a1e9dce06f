"""Typed parameters: the whole resolved parameter tree of a run, checked before any work starts.

One pydantic model per parameter block says which keys exist and what each accepts: counts and sizes are
positive integers (no ``"10"`` for 10, no ``true`` for 1), fractions lie in their range, booleans are true or
false (``"false"`` is a non-empty string, which Python reads as true), names come from their registries. A key no
model declares is a typo and refused. Rules that the library already enforces (the variant list, the elicitation
methods, the truncation and ablation settings) are not restated here: their check functions are called on the
raw tree, so every rule has one home.

``parameter_problems(parameters)`` returns every problem at once, each naming its full dotted key, the value
and what is allowed; ``metasyn.hooks.CheckParametersHook`` refuses a run with them before any node runs. The
nodes keep reading plain dicts: the models only check.

No Kedro import: a notebook or a script can check a parameter tree too.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, NamedTuple, get_args

import torch
from peft import LoraConfig
from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, create_model, model_validator
from pydantic_core import PydanticCustomError
from trl import SFTConfig

from metasyn.lm.answers import MATCHERS, MODEL_MATCHERS
from metasyn.lm.models import resolve_device, resolve_dtype
from metasyn.metacognition.evaluation import CONFIDENCE_COLUMNS, check_methods
from metasyn.pipelines.variants import LORA_OPTION, SEED_LIMIT, Variants, VariantsError
from metasyn.questions.sources import GENERATED_SOURCES, LOADED_SOURCES
from metasyn.synergy import check_ablation_settings, check_truncation_settings
from metasyn.synergy.phiid import MIN_SAMPLES, REDUNDANCIES


class Problem(NamedTuple):
    """One refused parameter: the dotted key it concerns and a sentence saying what is wrong and what is allowed."""

    key: str
    message: str


# ------------------------------------------------------------------------------------------ value types


def _allowed(need: str, test: Callable[[Any], bool]) -> PlainValidator:
    """A validator that passes a value unchanged if ``test`` accepts it: no coercion (``"10"`` stays refused)."""

    def check(value: Any) -> Any:
        if not test(value):
            raise PydanticCustomError("not_allowed", "{need}", {"need": need})
        return value

    return PlainValidator(check)


def _or_null(need: str, test: Callable[[Any], bool], meaning: str) -> PlainValidator:
    """``_allowed`` that also takes null, which means ``meaning``."""
    return _allowed(f"{need}, or null ({meaning})", lambda value: value is None or test(value))


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_positive_integer(value: Any) -> bool:
    return _is_integer(value) and value > 0


def _is_positive_number(value: Any) -> bool:
    return _is_number(value) and value > 0


def _is_list_of_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_device(value: Any) -> bool:
    """A device ``resolve_device`` accepts (``auto`` or any torch device string); a GPU need not be present."""
    try:
        resolve_device(value)
    except (RuntimeError, TypeError, ValueError):
        return False
    return isinstance(value, str)


def _is_float_dtype(value: Any) -> bool:
    """A dtype name ``resolve_dtype`` accepts (``auto`` or a torch dtype) that is a floating-point one."""
    try:
        return isinstance(value, str) and resolve_dtype(value, torch.device("cpu")).is_floating_point
    except ValueError:
        return False


PositiveInt = Annotated[int, _allowed("a positive integer", _is_positive_integer)]
# metasyn.lm.precision: the dtype a model computes in during inference.
InferenceDtype = Annotated[
    str, _allowed("auto (bfloat16 where the hardware has it) or a torch float dtype name (float32)", _is_float_dtype)
]
Seed = Annotated[int, _allowed("an integer seed in [0, 2**32)", lambda v: _is_integer(v) and 0 <= v < SEED_LIMIT)]
PositiveNumber = Annotated[float, _allowed("a number > 0", _is_positive_number)]
NonNegativeNumber = Annotated[float, _allowed("a number >= 0", lambda v: _is_number(v) and v >= 0)]
# Strictly between 0 and 1: a share that must leave something on both sides (a split, a significance level).
OpenFraction = Annotated[float, _allowed("a number strictly between 0 and 1", lambda v: _is_number(v) and 0 < v < 1)]
Fraction = Annotated[float, _allowed("a number from 0 to 1", lambda v: _is_number(v) and 0 <= v <= 1)]
StrictBool = Annotated[bool, _allowed("true or false", lambda v: isinstance(v, bool))]
Text = Annotated[str, _allowed("a non-empty string", lambda v: isinstance(v, str) and bool(v))]
Device = Annotated[str, _allowed("auto or a torch device (cpu, cuda, cuda:1, mps)", _is_device)]
# A value that a library check function rules on (called on the raw tree below): the model only declares the key.
Checked = Any


class _Block(BaseModel):
    """A parameter block: its keys are exactly the declared fields (a typo is refused, not ignored)."""

    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------ shared blocks


class NliOptions(_Block):
    """``nli.load_nli_matcher``'s arguments, all required (globals.yml sets them)."""

    model: Annotated[str | None, _or_null("a model id or directory", lambda v: isinstance(v, str), "none set")]
    batch_size: PositiveInt
    device: Device


MATCHER_NAMES = sorted([*MATCHERS, *MODEL_MATCHERS])
MatcherName = Annotated[
    str, _allowed(f"a registered answer matcher ({', '.join(MATCHER_NAMES)})", MATCHER_NAMES.__contains__)
]


class MatcherSettings(_Block):
    """``{name: <matcher>, <model matcher>: {its options}}`` (globals.yml ``answer_matcher``)."""

    name: MatcherName
    nli: NliOptions | None = None  # read only when name is nli

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        # A bare matcher name is short for {name: <name>}, as metasyn.lm.answers reads it.
        return {"name": value} if isinstance(value, str) else value


# ------------------------------------------------------------------------------------------ data_prep


class GeneratedSource(_Block):
    count: PositiveInt


class LoadedSource(_Block):
    count: Annotated[int | None, _or_null("a positive integer", _is_positive_integer, "every question")] = None
    source: Text | None = None  # a Hugging Face dataset id or a local file; the loader's default without it
    split: Text | None = None


# One optional key per registered source; null disables a source (overlays cannot delete conf/base's).
QuestionSources = create_model(
    "QuestionSources",
    __base__=_Block,
    **{name: (GeneratedSource | None, None) for name in GENERATED_SOURCES},
    **{name: (LoadedSource | None, None) for name in LOADED_SOURCES},
)


class Sampling(_Block):
    n_samples: Annotated[
        int, _allowed("an integer >= 2 (consistency compares samples)", lambda v: _is_integer(v) and v >= 2)
    ]
    temperature: PositiveNumber
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    greedy_batch_size: PositiveInt
    dtype: InferenceDtype
    matcher: MatcherSettings


class Split(_Block):
    test_fraction: OpenFraction
    validation_fraction: OpenFraction


class Targets(_Block):
    n_bins: PositiveInt
    noise: Fraction
    balance_max_ratio: Annotated[float, _allowed("a number >= 1", lambda v: _is_number(v) and v >= 1)]


class Examples(_Block):
    pairwise_per_single: NonNegativeNumber


class DataPrep(_Block):
    seed: Seed
    sources: QuestionSources
    sampling: Sampling
    split: Split
    targets: Targets
    examples: Examples


# ------------------------------------------------------------------------------------------ finetune


class Lora(_Block):
    """The keys the project sets (``target_modules`` is required: the finetune nodes check it against the model),
    the others optional (peft's default when absent); any other ``peft.LoraConfig`` field is allowed too."""

    model_config = ConfigDict(extra="allow")
    r: PositiveInt = None
    lora_alpha: PositiveNumber = None
    lora_dropout: Annotated[float, _allowed("a number from 0 to below 1", lambda v: _is_number(v) and 0 <= v < 1)] = (
        None
    )
    target_modules: Annotated[
        list[str], _allowed("a non-empty list of module names", lambda v: _is_list_of_strings(v) and v)
    ]


def _is_warmup(value: Any) -> bool:
    return (_is_integer(value) and value >= 0) or (_is_number(value) and 0 <= value < 1)


class Training(_Block):
    """The keys the project sets, each optional (TRL's default when absent); any other ``trl.SFTConfig`` field is
    allowed too (checked below)."""

    model_config = ConfigDict(extra="allow")
    num_train_epochs: PositiveNumber = None
    max_steps: Annotated[
        int, _allowed("a positive integer, or -1 (every epoch)", lambda v: _is_integer(v) and (v > 0 or v == -1))
    ] = None
    per_device_train_batch_size: PositiveInt = None
    per_device_eval_batch_size: PositiveInt = None
    gradient_accumulation_steps: PositiveInt = None
    learning_rate: PositiveNumber = None
    # transformers reads a value below 1 as a share of all steps.
    warmup_steps: Annotated[
        float, _allowed("an integer >= 0 (steps), or a number in [0, 1) (a share of all steps)", _is_warmup)
    ] = None
    max_length: Annotated[int | None, _or_null("a positive integer", _is_positive_integer, "no limit")] = None
    completion_only_loss: StrictBool = None
    bf16: StrictBool = None
    activation_checkpointing: StrictBool = None
    eval_on_start: StrictBool = None
    logging_steps: PositiveNumber = None
    save_total_limit: Annotated[int | None, _or_null("a positive integer", _is_positive_integer, "keep all")] = None


class MergeCheck(_Block):
    prompts: PositiveInt
    relative_tolerance: PositiveNumber


class EarlyStopping(_Block):
    patience: PositiveInt
    threshold: NonNegativeNumber


class Finetune(_Block):
    seed: Seed
    lora: Lora
    training: Training
    early_stopping: EarlyStopping | None
    merge_check: MergeCheck


# ------------------------------------------------------------------------------------------ calibration


class Generation(_Block):
    batch_size: PositiveInt
    dtype: InferenceDtype
    confidence_max_new_tokens: PositiveInt
    pairwise_max_new_tokens: PositiveInt
    judgment_max_new_tokens: PositiveInt


class Pairs(_Block):
    per_domain: PositiveInt
    seed: Seed


class Bootstrap(_Block):
    n_resamples: PositiveInt
    confidence_level: OpenFraction
    seed: Seed


class Metrics(_Block):
    ece_bins: PositiveInt
    min_n: PositiveInt
    bootstrap: Bootstrap


MethodNames = Annotated[
    list[str], _allowed(f"a list of elicitation methods ({', '.join(CONFIDENCE_COLUMNS)})", _is_list_of_strings)
]


def _is_layer_spec(value: Any) -> bool:
    if isinstance(value, Mapping):
        return set(value) == {"every"} and _is_positive_integer(value["every"])
    return isinstance(value, list) and bool(value) and all(_is_integer(x) and x >= 0 for x in value)


class Probes(_Block):
    # The indices are checked against the model's layer count when it is loaded (probes.probe_layers).
    layers: Annotated[
        Any, _allowed("a non-empty list of layer indices >= 0, or {every: k} with k a positive integer", _is_layer_spec)
    ]
    n_folds: Annotated[int, _allowed("an integer >= 2", lambda v: _is_integer(v) and v >= 2)]
    batch_size: PositiveInt


class Distributional(_Block):
    n_samples: PositiveInt
    temperature: PositiveNumber
    max_new_tokens: PositiveInt
    report_max_new_tokens: PositiveInt
    batch_size: PositiveInt
    epsilon: OpenFraction
    seed: Seed


class Calibration(_Block):
    matcher: MatcherSettings
    methods: MethodNames  # which ones, and verdict_method among them: evaluation.check_methods
    verdict_method: Text
    generation: Generation
    pairs: Pairs
    metrics: Metrics
    probes: Probes
    distributional: Distributional


# ------------------------------------------------------------------------------------------ synergy


class Activity(_Block):
    steps: PositiveInt
    batch_size: PositiveInt
    generation_dtype: InferenceDtype


class PhiID(_Block):
    tau: PositiveInt
    redundancy: Annotated[
        str, _allowed(f"a PhiID redundancy function ({', '.join(REDUNDANCIES)})", REDUNDANCIES.__contains__)
    ]
    device: Device


class Graph(_Block):
    edge_fraction: Annotated[float, _allowed("a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1)]
    seed: Seed


class Truncation(_Block):  # values: synergy.check_truncation_settings
    steps: Checked
    min_steps: Checked


class Ablation(_Block):  # values: synergy.check_ablation_settings
    method: Checked
    noise_scale: Checked
    fraction_step: Checked
    random_orders: Checked
    seed: Checked
    batch_size: Checked
    prompts_per_category: Annotated[
        int | None, _or_null("a positive integer", _is_positive_integer, "every synergy prompt")
    ]
    dtype: InferenceDtype


class Synergy(_Block):
    prompts_per_category: Annotated[int | None, _or_null("a positive integer", _is_positive_integer, "every prompt")]
    activity: Activity
    phiid: PhiID
    graph: Graph
    truncation: Truncation
    ablation: Ablation


# ------------------------------------------------------------------------------------------ comparison


class IntervalWidths(_Block):
    peak_shift: PositiveNumber
    band_contrast: PositiveNumber
    squared_ce_debiased: PositiveNumber
    auroc: PositiveNumber
    brier: PositiveNumber
    ablation_area: PositiveNumber


class Verdict(_Block):
    alpha: OpenFraction
    max_interval_width: IntervalWidths


class StudySizes(_Block):
    prompts: PositiveInt
    test_questions: PositiveInt
    seeds: PositiveInt


def _is_captions(value: Any) -> bool:
    return isinstance(value, dict) and _is_list_of_strings([*value, *value.values()])


def _is_band(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_is_number, value)) and 0 <= value[0] < value[1] <= 1


class Comparison(_Block):
    controls: Annotated[
        list[str], _allowed("a non-empty list of fine-tune variant names", lambda v: _is_list_of_strings(v) and v)
    ]  # checked against the variant list below
    depth_band: Annotated[list[float], _allowed("[low, high] with 0 <= low < high <= 1 (normalised depth)", _is_band)]
    band_name: Text
    bootstrap_resamples: PositiveInt
    shape_resamples: PositiveInt
    verdict: Verdict
    study_sizes: StudySizes
    seed: Seed
    figures: Annotated[dict[str, str], _allowed("a mapping of caption to file name", _is_captions)]


class Parameters(_Block):
    """The whole parameter tree (conf/<env>/parameters*.yml merged, with --params)."""

    variants: Checked  # Variants.from_parameters, and each fine-tune's options below
    data_prep: DataPrep
    finetune: Finetune
    calibration: Calibration
    synergy: Synergy
    comparison: Comparison


# ------------------------------------------------------------------------------------------ the check


def parameter_problems(parameters: Mapping[str, Any]) -> list[Problem]:
    """Every problem of a parameter tree, in key order; an empty list when the run may start."""
    try:
        Parameters.model_validate(parameters)
        problems = []
    except ValidationError as error:
        problems = [_problem(detail) for detail in error.errors()]
    refused = {problem.key for problem in problems}
    for keys, check in _CHECKS:
        # A check reads values the models have passed: a missing or mistyped one is already reported.
        if not any(_overlap(key, read) for read in keys for key in refused):
            problems.extend(check(parameters))
    return sorted(problems)


def _overlap(key: str, other: str) -> bool:
    """Whether one dotted key is the other or lies under it."""
    return key == other or key.startswith(f"{other}.") or other.startswith(f"{key}.")


def _problem(detail: Mapping) -> Problem:
    """A pydantic error as a Problem: the dotted key, the value, and what is allowed there."""
    location = [str(part) for part in detail["loc"]]
    key = ".".join(location)
    kind = detail["type"]
    if kind == "not_allowed":
        return Problem(key, f"{key}: {detail['input']!r} is not allowed; {detail['ctx']['need']} is needed.")
    if kind == "extra_forbidden":
        return _unknown_key(location, _known_keys(location[:-1]))
    if kind == "missing":
        return Problem(key, f"{key} is missing; set it (conf/base sets every key).")
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        wanted = sorted(_known_keys(location)) or "keys"
        return Problem(key, f"{key}: {detail['input']!r} is not allowed; a mapping of {wanted} is needed.")
    return Problem(key, f"{key}: {detail['input']!r} is not allowed; {detail['msg']}.")


def _unknown_key(location: list[str], known: set[str]) -> Problem:
    key = ".".join(location)
    close = difflib.get_close_matches(location[-1], sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    parent = ".".join(location[:-1]) or "the top level"
    return Problem(key, f"{key} is not a known key; {hint}Known keys under {parent}: {', '.join(sorted(known))}.")


def _known_keys(location: list[str]) -> set[str]:
    """The keys the block at ``location`` declares (empty for a value that is not a block)."""
    block: Any = Parameters
    for part in location:
        fields = getattr(block, "model_fields", {})
        if part not in fields:
            return set()
        block = next(
            (arg for arg in _flatten(fields[part].annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)),
            None,
        )
    return set(getattr(block, "model_fields", {}))


def _flatten(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in get_args(annotation):
        yield from _flatten(arg)


def _lookup(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, Mapping) else None
    return tree


def _raised(key: str, check: Callable[[], Any]) -> list[Problem]:
    """A library check's refusal (a ValueError naming the key and what it accepts) as a Problem under ``key``."""
    try:
        check()
    except ValueError as error:
        return [Problem(key, str(error))]
    return []


def _variants(parameters: Mapping) -> list[Problem]:
    """The variant list builds (``Variants.from_parameters``), and each variant's LoRA fields over finetune.lora
    are valid LoRA settings."""
    try:
        variants = Variants.from_parameters(parameters)
    except VariantsError as error:
        return [Problem("variants", str(error))]
    problems = []
    for name, options in variants.finetuned.items():
        key = f"variants.finetuned.{name}.{LORA_OPTION}"
        problems += _passed_through(key, LoraConfig, {"task_type"})(parameters)
        merged = {**(_lookup(parameters, "finetune.lora") or {}), **(options.get(LORA_OPTION) or {})}
        try:
            Lora.model_validate(merged)
        except ValidationError as error:
            problems += [
                _problem({**detail, "loc": (*key.split("."), *detail["loc"])})
                for detail in error.errors()
                if detail["loc"] and detail["loc"][0] in (options.get(LORA_OPTION) or {})
            ]
    return problems


def _controls(parameters: Mapping) -> list[Problem]:
    """comparison.controls name fine-tune variants (those a metacognition effect must exceed), each once."""
    try:
        finetuned = Variants.from_parameters(parameters).finetuned
    except VariantsError:
        return []  # reported by _variants
    controls = _lookup(parameters, "comparison.controls")
    unknown = [control for control in controls if control not in finetuned]
    repeated = sorted({control for control in controls if controls.count(control) > 1})
    if not unknown and not repeated and len(controls) < len(finetuned):
        return []
    variants = ", ".join(finetuned) or "none declared"
    if unknown:
        problem = f"{unknown} are not fine-tune variants; each must be one of the variants ({variants})"
    elif repeated:
        problem = f"{repeated} are listed more than once; list each control once"
    else:
        problem = "every variant is a control; at least one variant (metacog) must be left to compare with them"
    return [Problem("comparison.controls", f"comparison.controls: {controls!r} is not allowed; {problem}.")]


def _methods(parameters: Mapping) -> list[Problem]:
    methods, verdict = _lookup(parameters, "calibration.methods"), _lookup(parameters, "calibration.verdict_method")
    return _raised("calibration.methods", lambda: check_methods(methods, verdict))


def _truncation(parameters: Mapping) -> list[Problem]:
    truncation, tau = _lookup(parameters, "synergy.truncation"), _lookup(parameters, "synergy.phiid.tau")
    return _raised("synergy.truncation", lambda: check_truncation_settings(truncation, tau))


def _ablation(parameters: Mapping) -> list[Problem]:
    return _raised("synergy.ablation", lambda: check_ablation_settings(_lookup(parameters, "synergy.ablation")))


def _synergy_steps(parameters: Mapping) -> list[Problem]:
    """Every prompt's series is long enough for PhiID: steps - tau >= MIN_SAMPLES, i.e. steps > tau + 2."""
    steps, tau = _lookup(parameters, "synergy.activity.steps"), _lookup(parameters, "synergy.phiid.tau")
    if steps - tau >= MIN_SAMPLES:
        return []
    needed = (
        f"more than synergy.phiid.tau + {MIN_SAMPLES - 1} = {tau + MIN_SAMPLES - 1} steps are needed (PhiID pairs "
        f"each step with the one tau later and needs {MIN_SAMPLES} such pairs)"
    )
    return [Problem("synergy.activity.steps", f"synergy.activity.steps: {steps!r} is not allowed; {needed}.")]


def _split_total(parameters: Mapping) -> list[Problem]:
    split = _lookup(parameters, "data_prep.split")
    total = split["test_fraction"] + split["validation_fraction"]
    if total < 1:
        return []
    needed = "less than 1 is needed (the rest is the training split)"
    return [
        Problem(
            "data_prep.split",
            f"data_prep.split: test_fraction + validation_fraction = {total:g} is not allowed; {needed}.",
        )
    ]


def _passed_through(key: str, config: type, reserved: set[str]) -> Callable[[Mapping], list[Problem]]:
    """A check that each key of the block at ``key`` is a field of ``config`` (which receives the block), and not
    one of the ``reserved`` fields that metasyn sets itself."""
    known = {field.name for field in dataclasses.fields(config)} - reserved

    def check(parameters: Mapping) -> list[Problem]:
        block = _lookup(parameters, key)
        names = set(block) if isinstance(block, Mapping) else set()
        problems = [
            Problem(f"{key}.{name}", f"{key}.{name} is set by metasyn itself; delete it here.")
            for name in sorted(names & reserved)
        ]
        for name in sorted(names - known - reserved):
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else "."
            problems.append(Problem(f"{key}.{name}", f"{key}.{name} is not a {config.__name__} field{hint}"))
        return problems

    return check


# (keys it reads, check): each runs where the models found nothing wrong under the keys it reads, so a missing or
# mistyped value is reported once.
_CHECKS: list[tuple[tuple[str, ...], Callable[[Mapping], list[Problem]]]] = [
    (("variants", "finetune.seed"), _variants),
    (("variants", "finetune.seed", "comparison.controls"), _controls),
    (("calibration.methods", "calibration.verdict_method"), _methods),
    (("synergy.truncation", "synergy.phiid.tau"), _truncation),
    (("synergy.ablation",), _ablation),
    (("synergy.activity.steps", "synergy.phiid.tau"), _synergy_steps),
    (("data_prep.split",), _split_total),
    # finetune.lora and finetune.training pass through to peft and TRL: any of their fields, bar what metasyn sets.
    ((), _passed_through("finetune.lora", LoraConfig, {"task_type"})),
    ((), _passed_through("finetune.training", SFTConfig, {"output_dir", "seed", "use_cpu"})),
]
