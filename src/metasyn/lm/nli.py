"""Semantic equivalence of free-text answers by bidirectional entailment (Kuhn et al. 2023, "Semantic Uncertainty").

Two texts mean the same when a natural-language-inference classifier predicts *entailment* from each to the
other. Any Hugging Face sequence classifier trained on NLI works (the seed plan's is
``microsoft/deberta-large-mnli``); its entailment class is found by name in its config's ``id2label``. It is
read from a local directory or the local Hugging Face cache, never downloaded.

``NLIMatcher`` is the ``nli`` answer matcher of ``metasyn.lm.answers``: alias matching first, then, for the
free-text answers it rejects, entailment both ways between the answer and the gold answer or an alias.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from metasyn.lm.models import ModelNotFoundError, check_model_available, locate_model, resolve_device

# (predicted, gold, aliases, answer_type) -> whether the predicted answer is right: ``metasyn.lm.answers.Matcher``,
# restated because answers imports this module (importing it back would be a cycle).
AliasMatcher = Callable[[str | None, str, Sequence[str], str], bool]
MatchCase = tuple[str | None, str, Sequence[str], str]

_SETTING = "answer_matcher.nli.model (conf/<env>/globals.yml)"


class NLIClassifier(NamedTuple):
    """An NLI sequence classifier, its tokenizer, and the index of its entailment class."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    entailment_id: int


def entailment_label_id(id2label: Mapping[int, str]) -> int:
    """The class whose label is "entailment" (any case), from a classifier config's ``id2label``."""
    matches = [index for index, label in id2label.items() if label.lower() == "entailment"]
    if len(matches) != 1:
        raise ValueError(
            f"The classifier's labels {dict(id2label)} (config.json id2label) name no single 'entailment' class: "
            "the nli matcher needs a classifier trained on NLI whose labels say which class is entailment, "
            "such as microsoft/deberta-large-mnli."
        )
    return int(matches[0])


def bidirectional_entailment(forward: Sequence[int], backward: Sequence[int], entailment_id: int) -> list[bool]:
    """Per pair (a, b): whether the class predicted for a -> b and for b -> a is entailment both times."""
    return [first == entailment_id and second == entailment_id for first, second in zip(forward, backward, strict=True)]


def check_nli_model(spec: str | None) -> int:
    """The entailment class of the NLI classifier ``spec``, read from its config alone; a clear error if unusable."""
    if not spec:
        raise ModelNotFoundError(
            f"The nli answer matcher has no classifier: set {_SETTING} to a Hugging Face NLI classifier in the "
            "local cache (e.g. microsoft/deberta-large-mnli, fetched with `hf download microsoft/deberta-large-mnli`) "
            "or to a local model directory."
        )
    try:
        config = check_model_available(spec, local_files_only=True)
    except ModelNotFoundError as error:
        raise ModelNotFoundError(
            f"The nli answer matcher's classifier ({_SETTING}) is not available. {error}"
        ) from error
    try:
        return entailment_label_id(config.id2label)
    except ValueError as error:
        raise ValueError(f"NLI classifier {spec!r} ({_SETTING}): {error}") from error


def load_nli_classifier(spec: str | None, device: str = "auto") -> NLIClassifier:
    """Load an NLI classifier from a local directory or the local Hugging Face cache, in eval mode on ``device``."""
    entailment_id = check_nli_model(spec)
    location = locate_model(spec)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(location, local_files_only=True)
    model.to(resolve_device(device))
    model.eval()
    return NLIClassifier(model, tokenizer, entailment_id)


def predict_classes(
    classifier: NLIClassifier, premises: Sequence[str], hypotheses: Sequence[str], batch_size: int
) -> list[int]:
    """The predicted class of each (premise, hypothesis) pair, ``batch_size`` pairs per forward pass."""
    model, tokenizer, _ = classifier
    classes: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(premises), batch_size):
            encoded = tokenizer(
                list(premises[start : start + batch_size]),
                list(hypotheses[start : start + batch_size]),
                padding=True,
                truncation=True,
                return_tensors="pt",
            ).to(model.device)
            classes += model(**encoded).logits.argmax(dim=-1).tolist()
    return classes


def mutually_entailing(classifier: NLIClassifier, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[bool]:
    """Whether the texts of each pair entail each other; every distinct direction is classified once."""
    # Repeated samples give repeated answers: classifying each ordered pair once saves most forward passes.
    directed = list(dict.fromkeys([*pairs, *((second, first) for first, second in pairs)]))
    classes = dict(
        zip(
            directed,
            predict_classes(
                classifier, [first for first, _ in directed], [second for _, second in directed], batch_size
            ),
        )
    )
    return bidirectional_entailment(
        [classes[(first, second)] for first, second in pairs],
        [classes[(second, first)] for first, second in pairs],
        classifier.entailment_id,
    )


class NLIMatcher:
    """Alias matching first; a free-text answer it rejects is right when it and a gold answer or alias entail each other."""

    def __init__(self, classifier: NLIClassifier, batch_size: int, alias_matcher: AliasMatcher) -> None:
        self.classifier = classifier
        self.batch_size = batch_size
        self.alias_matcher = alias_matcher

    def __call__(self, predicted: str | None, gold: str, aliases: Sequence[str], answer_type: str) -> bool:
        """One answer's verdict (``match_many`` judges many answers in shared batches)."""
        return self.match_many([(predicted, gold, aliases, answer_type)])[0]

    def match_many(self, cases: Sequence[MatchCase]) -> list[bool]:
        """The verdict on each ``(predicted, gold, aliases, answer_type)``, every entailment pair batched together."""
        verdicts = [self.alias_matcher(*case) for case in cases]
        # Only free text can be a paraphrase: a number or an option letter that does not match is wrong.
        pending = [
            (index, predicted, reference)
            for index, (predicted, gold, aliases, answer_type) in enumerate(cases)
            if answer_type == "text" and predicted is not None and not verdicts[index]
            for reference in dict.fromkeys([gold, *aliases])
        ]
        entailed = mutually_entailing(
            self.classifier, [(predicted, reference) for _, predicted, reference in pending], self.batch_size
        )
        for (index, _, _), equivalent in zip(pending, entailed, strict=True):
            verdicts[index] = verdicts[index] or equivalent
        return verdicts


def check_nli_matcher(model: str | None, batch_size: int, device: str) -> None:
    """Raise now if these nli matcher settings cannot work (no classifier, batch size below 1, unknown device)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"answer_matcher.nli.batch_size is {batch_size!r}; set it to a whole number of at least 1.")
    resolve_device(device)
    check_nli_model(model)


def load_nli_matcher(model: str | None, batch_size: int, device: str, alias_matcher: AliasMatcher) -> NLIMatcher:
    """The nli matcher on the classifier ``model`` (a local directory or a cached Hugging Face id)."""
    check_nli_matcher(model, batch_size, device)
    return NLIMatcher(load_nli_classifier(model, device), batch_size, alias_matcher)
