"""The model variants of a run: which namespaces the per-model pipelines are instantiated in.

One source: the ``variants`` parameter block of the run's own configuration, read by Kedro's config loader
(``metasyn.context.ProjectContext`` hands it over), so ``--env``, ``--conf-source``, ``--params`` and
``conf/local`` change the pipelines and the nodes alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BASE = "base"
# Per-variant options the finetune pipeline understands; anything else is a typo that would be ignored.
FINETUNE_OPTIONS = {"shuffle_targets"}


class VariantsError(ValueError):
    """A ``variants`` parameter block that cannot be turned into pipelines; the message names the key."""


@dataclass(frozen=True)
class Variants:
    """Fine-tuned variants (name -> options) and untrained baselines, as declared in ``params:variants``."""

    finetuned: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    baselines: tuple[str, ...] = ()

    @classmethod
    def from_parameters(cls, block: Any) -> Variants:
        """Validate a ``variants`` parameter block (``finetuned: {name: options}``, ``baselines: [names]``)."""
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
            if not isinstance(options, Mapping) or set(options) - FINETUNE_OPTIONS:
                raise VariantsError(
                    f"variants.finetuned.{name} must be a mapping of options ({sorted(FINETUNE_OPTIONS)}); "
                    f"got {options!r}."
                )
        names = [BASE, *finetuned, *baselines]
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:
            raise VariantsError(f"Variant names must be unique and not '{BASE}'; repeated: {clashes}.")
        return cls({name: dict(options) for name, options in finetuned.items()}, tuple(baselines))

    @property
    def finetuned_names(self) -> list[str]:
        """Names of the fine-tuned variants (each a namespace of the finetune pipeline)."""
        return list(self.finetuned)

    @property
    def evaluated_models(self) -> list[str]:
        """Models that calibration measures: the base model and every fine-tune."""
        return [BASE, *self.finetuned]

    @property
    def synergy_models(self) -> list[str]:
        """Models that synergy measures: the evaluated models and the untrained baselines."""
        return [*self.evaluated_models, *self.baselines]
