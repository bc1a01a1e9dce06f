"""The model variants of a run: which namespaces the per-model pipelines are instantiated in.

One source: the run's own parameters, read by Kedro's config loader (``metasyn.context.ProjectContext`` hands
them over), so ``--env``, ``--conf-source``, ``--params`` and ``conf/local`` change the pipelines and the nodes
alike.

Each fine-tune variant is trained once per seed in its ``seeds`` list, and each of these replicates is a
namespace of its own, so that calibration and synergy measure every replicate unchanged and the spread between
a variant's replicates is the yardstick for a difference between variants. The first seed keeps the variant's
name (``metacog``), so that a single-seed run, its outputs and the notebooks read the same datasets as before;
further seeds are named ``<variant>_seed<seed>`` (``metacog_seed1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metasyn.metacognition.controls import TARGET_TRANSFORMS

BASE = "base"
# Per-variant options the finetune pipeline understands; anything else is a typo that would be ignored.
# `targets` names the variant's target transform (metasyn.metacognition.controls.TARGET_TRANSFORMS); `lora`
# overrides finetune.lora fields for that variant (e.g. a lower rank).
TARGETS_OPTION = "targets"
LORA_OPTION = "lora"
FINETUNE_OPTIONS = {TARGETS_OPTION, LORA_OPTION}
# Read by Variants itself: the training seeds, one replicate namespace each.
SEEDS_OPTION = "seeds"
# numpy's seed range (transformers.set_seed seeds numpy too).
SEED_LIMIT = 2**32


class VariantsError(ValueError):
    """A ``variants`` parameter block that cannot be turned into pipelines; the message names the key."""


def replicate_namespaces(variant: str, seeds: Sequence[int]) -> list[str]:
    """The namespaces of a variant's replicates, one per seed: the variant's own name, then ``<variant>_seed<s>``."""
    return [variant, *(f"{variant}_seed{seed}" for seed in seeds[1:])]


@dataclass(frozen=True)
class Variants:
    """Fine-tuned variants (name -> training options), their training seeds, and untrained baselines.

    ``finetuned`` holds the options the finetune nodes read (``targets``, ``lora``); ``seeds`` the seeds of each
    variant's replicates, in the declared order.
    """

    finetuned: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seeds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    baselines: tuple[str, ...] = ()

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> Variants:
        """Validate a run's ``variants`` block; a variant without ``seeds`` is trained once, at ``finetune.seed``.

        ``variants`` is ``finetuned: {name: {targets: <transform>, lora: {<field>: value}, seeds: [int, ...]}},
        baselines: [names]``.
        """
        block = parameters.get("variants")
        where = "the 'variants' parameter (conf/base/parameters.yml, or an override in your environment)"
        if not isinstance(block, Mapping):
            raise VariantsError(f"{where} is missing or not a mapping with 'finetuned' and 'baselines'; got {block!r}.")
        unknown = sorted(set(block) - {"finetuned", "baselines"})
        if unknown:
            raise VariantsError(f"Unknown keys under variants: {unknown}; allowed: finetuned, baselines.")
        finetuned = block.get("finetuned") or {}
        baselines = block.get("baselines") or []
        if not isinstance(finetuned, Mapping):
            raise VariantsError(f"variants.finetuned must map each variant name to its options; got {finetuned!r}.")
        if isinstance(baselines, str) or not all(isinstance(name, str) for name in baselines):
            raise VariantsError(f"variants.baselines must be a list of names; got {baselines!r}.")
        # null drops a variant: environments merge softly, so an overlay cannot delete conf/base's entries.
        finetuned = {name: options for name, options in finetuned.items() if options is not None}
        for name, options in finetuned.items():
            if not isinstance(options, Mapping) or set(options) - FINETUNE_OPTIONS - {SEEDS_OPTION}:
                raise VariantsError(
                    f"variants.finetuned.{name} must be a mapping of options "
                    f"({sorted(FINETUNE_OPTIONS | {SEEDS_OPTION})}); got {options!r}."
                )
        seeds = {name: _seeds(name, options.get(SEEDS_OPTION), parameters) for name, options in finetuned.items()}
        replicates = [replicate_namespaces(name, seeds[name]) for name in finetuned]
        namespaces = [BASE, *(namespace for names in replicates for namespace in names), *baselines]
        clashes = sorted({name for name in namespaces if namespaces.count(name) > 1})
        if clashes:
            seed_names = {namespace for names in replicates for namespace in names[1:]}
            hint = (
                " A variant's further seeds are named <variant>_seed<seed>: rename the variant or baseline that "
                "takes such a name."
                if seed_names.intersection(clashes)
                else ""
            )
            raise VariantsError(f"Model namespaces must be unique and not '{BASE}'; repeated: {clashes}.{hint}")
        for name, options in finetuned.items():
            _check_training_options(name, options)
        training_options = {
            name: {key: value for key, value in options.items() if key != SEEDS_OPTION}
            for name, options in finetuned.items()
        }
        return cls(training_options, seeds, tuple(baselines))

    @property
    def replicates(self) -> dict[str, list[str]]:
        """Each fine-tune variant's replicate namespaces, in the order of its seeds (the first is the variant)."""
        return {variant: replicate_namespaces(variant, seeds) for variant, seeds in self.seeds.items()}

    @property
    def namespace_seeds(self) -> dict[str, int]:
        """The training seed of each fine-tune namespace."""
        return {
            namespace: seed
            for variant, seeds in self.seeds.items()
            for namespace, seed in zip(replicate_namespaces(variant, seeds), seeds, strict=True)
        }

    @property
    def variant_of(self) -> dict[str, str]:
        """The variant each fine-tune namespace is a replicate of."""
        return {namespace: variant for variant, namespaces in self.replicates.items() for namespace in namespaces}

    @property
    def finetuned_names(self) -> list[str]:
        """Every fine-tune namespace (each replicate of each variant; each a namespace of the finetune pipeline)."""
        return [namespace for namespaces in self.replicates.values() for namespace in namespaces]

    @property
    def evaluated_models(self) -> list[str]:
        """Models that calibration measures: the base model and every fine-tune replicate."""
        return [BASE, *self.finetuned_names]

    @property
    def synergy_models(self) -> list[str]:
        """Models that synergy measures: the evaluated models and the untrained baselines."""
        return [*self.evaluated_models, *self.baselines]


def _seeds(variant: str, seeds: Any, parameters: Mapping[str, Any]) -> tuple[int, ...]:
    """A variant's training seeds, validated; without a ``seeds`` list, the run's ``finetune.seed`` alone."""
    key = f"variants.finetuned.{variant}.{SEEDS_OPTION}"
    if seeds is None:  # not set, or set to null by an overlay to go back to the default
        default = (parameters.get("finetune") or {}).get("seed")
        if not _is_seed(default):
            raise VariantsError(
                f"{key} is not set, so the variant is trained once at finetune.seed, which is {default!r}; "
                f"set finetune.seed to an integer in [0, 2**32), or list the variant's seeds under {key}."
            )
        return (default,)
    if isinstance(seeds, str) or not isinstance(seeds, Sequence) or not seeds or not all(map(_is_seed, seeds)):
        raise VariantsError(
            f"{key} must be a non-empty list of integers in [0, 2**32), one fine-tune replicate each "
            f"(e.g. [0, 1]); got {seeds!r}."
        )
    repeated = sorted({seed for seed in seeds if list(seeds).count(seed) > 1})
    if repeated:
        raise VariantsError(f"{key} repeats seeds {repeated}; each seed is one replicate, so list it once.")
    return tuple(seeds)


def _check_training_options(variant: str, options: Mapping[str, Any]) -> None:
    """A variant names a known target transform, and its LoRA fields (if any) form a mapping."""
    key = f"variants.finetuned.{variant}"
    targets = options.get(TARGETS_OPTION)
    if not isinstance(targets, str) or targets not in TARGET_TRANSFORMS:
        raise VariantsError(
            f"{key}.{TARGETS_OPTION} must name the variant's training targets, one of {sorted(TARGET_TRANSFORMS)} "
            f"(consistency: the metacognition targets; the others are controls, metasyn.metacognition.controls); "
            f"got {targets!r}."
        )
    lora = options.get(LORA_OPTION)
    if lora is not None and not isinstance(lora, Mapping):
        raise VariantsError(
            f"{key}.{LORA_OPTION} must map finetune.lora fields to this variant's values (e.g. {{r: 1, lora_alpha: 2}}); "
            f"got {lora!r}."
        )


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT
