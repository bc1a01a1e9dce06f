"""The nli answer matcher (metasyn.lm.nli): the bidirectional rule, label mapping, batching, and clear errors.

The classifier is a tiny random BERT built here, saved with a tokenizer over a small vocabulary; its decisions
are forced by hand where a test needs a known answer (a huge classifier bias on one class).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from metasyn.lm.answers import check_matcher, contains_match, get_matcher, score_answers
from metasyn.lm.models import ModelNotFoundError
from metasyn.lm.nli import (
    NLIMatcher,
    bidirectional_entailment,
    check_nli_model,
    entailment_label_id,
    load_nli_classifier,
    mutually_entailing,
    predict_classes,
)

MNLI_LABELS = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}
WORDS = [
    "paris",
    "france",
    "capital",
    "city",
    "the",
    "of",
    "eiffel",
    "tower",
    "london",
    "england",
    "shakespeare",
    "bard",
    "avon",
]
TEXTS = ["paris", "paris france", "the eiffel tower", "london", "capital city of england", "tower", "the bard"]


def save_tiny_classifier(directory: Path, id2label: dict[int, str], favoured: str | None = None) -> Path:
    """A 1-layer random BERT NLI classifier with ``id2label``; ``favoured`` (a label) wins every prediction."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), model_max_length=64)
    config = BertConfig(
        vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64, id2label=id2label,
        label2id={label: index for index, label in id2label.items()},
        initializer_range=0.5,  # large random weights: predictions differ from pair to pair
    )  # fmt: skip
    torch.manual_seed(3)  # a seed whose classifier predicts both neutral and entailment on TEXTS
    model = BertForSequenceClassification(config)
    if favoured is not None:
        favoured_id = {label: index for index, label in id2label.items()}[favoured]
        with torch.no_grad():
            model.classifier.bias.zero_()
            model.classifier.bias[favoured_id] = 1e4
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def random_classifier_dir(tmp_path_factory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("nli") / "random", MNLI_LABELS)


# ------------------------------------------------------------------------------------------ pure rules


@pytest.mark.parametrize(
    ("id2label", "expected"),
    [
        (MNLI_LABELS, 2),
        ({0: "entailment", 1: "neutral", 2: "contradiction"}, 0),
        ({0: "Neutral", 1: "Entailment"}, 1),
    ],
)
def test_the_entailment_class_is_found_by_name_in_any_case(id2label, expected):
    assert entailment_label_id(id2label) == expected


@pytest.mark.parametrize("id2label", [{0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, {0: "entailment", 1: "ENTAILMENT"}])
def test_a_classifier_without_one_entailment_label_is_refused_with_its_labels(id2label):
    with pytest.raises(ValueError, match=r"no single 'entailment' class.*microsoft/deberta-large-mnli"):
        entailment_label_id(id2label)


def test_bidirectional_entailment_needs_entailment_both_ways():
    entailment, neutral, contradiction = 2, 1, 0
    forward = [entailment, entailment, neutral, contradiction, entailment]
    backward = [entailment, neutral, entailment, entailment, contradiction]
    assert bidirectional_entailment(forward, backward, entailment) == [True, False, False, False, False]
    assert bidirectional_entailment([], [], entailment) == []
    with pytest.raises(ValueError):
        bidirectional_entailment([entailment], [], entailment)


# ---------------------------------------------------------------------------- the classifier and batching


def test_predictions_do_not_depend_on_the_batch_size(random_classifier_dir, one_torch_thread):
    classifier = load_nli_classifier(str(random_classifier_dir), device="cpu")
    pairs = list(itertools.permutations(TEXTS, 2))
    premises, hypotheses = [first for first, _ in pairs], [second for _, second in pairs]
    one_by_one = predict_classes(classifier, premises, hypotheses, batch_size=1)
    assert len(set(one_by_one)) > 1, "the random classifier must disagree across pairs for this test to bite"
    for batch_size in (3, 64):
        assert predict_classes(classifier, premises, hypotheses, batch_size) == one_by_one
    assert predict_classes(classifier, [], [], batch_size=4) == []


def test_mutual_entailment_reads_both_directions_of_each_pair(random_classifier_dir, one_torch_thread):
    classifier = load_nli_classifier(str(random_classifier_dir), device="cpu")
    pairs = list(itertools.combinations(TEXTS, 2))
    forward = predict_classes(classifier, [a for a, _ in pairs], [b for _, b in pairs], batch_size=1)
    backward = predict_classes(classifier, [b for _, b in pairs], [a for a, _ in pairs], batch_size=1)
    expected = bidirectional_entailment(forward, backward, classifier.entailment_id)
    assert any(expected) and not all(expected), "both verdicts must occur for this test to bite"
    assert mutually_entailing(classifier, pairs, batch_size=5) == expected


def test_batched_verdicts_equal_one_answer_at_a_time(random_classifier_dir, one_torch_thread):
    matcher = NLIMatcher(load_nli_classifier(str(random_classifier_dir), device="cpu"), 4, contains_match)
    cases = [(text, gold, [alias], "text") for text, gold, alias in itertools.permutations(TEXTS, 3)][:40]
    assert matcher.match_many(cases) == [matcher(*case) for case in cases]


# ------------------------------------------------------------------------- label mapping, known answers


@pytest.mark.parametrize(
    ("id2label", "favoured", "equivalent"),
    [
        (MNLI_LABELS, "ENTAILMENT", True),
        (MNLI_LABELS, "CONTRADICTION", False),
        (MNLI_LABELS, "NEUTRAL", False),
        # the same decisions when the entailment class sits at another index
        ({0: "entailment", 1: "neutral", 2: "contradiction"}, "entailment", True),
        ({0: "entailment", 1: "neutral", 2: "contradiction"}, "contradiction", False),
    ],
)
def test_the_nli_matcher_accepts_a_paraphrase_only_when_the_classifier_says_entailment(
    tmp_path, one_torch_thread, id2label, favoured, equivalent
):
    directory = save_tiny_classifier(tmp_path / "forced", id2label, favoured)
    matcher = get_matcher({"name": "nli", "nli": {"model": str(directory), "batch_size": 2, "device": "cpu"}})
    cases = [
        ("the bard", "Shakespeare", ["William Shakespeare"], "text"),  # no alias match: the classifier decides
        ("paris", "Paris", [], "text"),  # an alias match stands whatever the classifier says
        ("7", "8", [], "number"),  # only free text can be a paraphrase
        (None, "Paris", [], "text"),  # an unreadable answer stays wrong
    ]
    assert matcher.match_many(cases) == [equivalent, True, False, False]


def test_score_answers_judges_every_answer_in_one_batched_call(tmp_path, one_torch_thread):
    directory = save_tiny_classifier(tmp_path / "forced", MNLI_LABELS, "ENTAILMENT")
    matcher = get_matcher({"name": "nli", "nli": {"model": str(directory), "batch_size": 8, "device": "cpu"}})
    calls = []
    match_many = matcher.match_many
    matcher.match_many = lambda cases: calls.append(len(cases)) or match_many(cases)
    questions = [
        {"domain": "factual", "answer": "Shakespeare", "aliases": ["William Shakespeare"]},
        {"domain": "arithmetic", "answer": "12", "aliases": []},
    ]
    outputs = ["Answer: the bard", "Answer: 13"]
    assert score_answers(outputs, questions, matcher) == [("bard", True), ("13", False)]
    assert calls == [2]


# ----------------------------------------------------------------------------------------- clear errors


def test_no_classifier_configured_says_which_setting_to_fill():
    with pytest.raises(ModelNotFoundError, match=r"answer_matcher\.nli\.model.*hf download microsoft/deberta-large"):
        check_nli_model(None)


def test_an_uncached_classifier_says_how_to_download_it():
    with pytest.raises(ModelNotFoundError, match=r"answer_matcher\.nli\.model.*hf download metasyn-tests/no-such-nli"):
        check_matcher({"name": "nli", "nli": {"model": "metasyn-tests/no-such-nli", "batch_size": 4, "device": "cpu"}})


def test_a_classifier_without_an_entailment_label_is_refused_before_loading_weights(tmp_path):
    directory = save_tiny_classifier(tmp_path / "sentiment", {0: "negative", 1: "positive"})
    (directory / "model.safetensors").unlink()  # the check reads the config alone
    with pytest.raises(ValueError, match=r"sentiment.*no single 'entailment' class"):
        check_matcher({"name": "nli", "nli": {"model": str(directory), "batch_size": 4, "device": "cpu"}})


def test_nli_settings_are_checked_before_any_model_loads(random_classifier_dir):
    settings = {"model": str(random_classifier_dir), "batch_size": 4, "device": "cpu"}
    check_matcher({"name": "nli", "nli": settings})
    with pytest.raises(ValueError, match=r"batch_size is 0"):
        check_matcher({"name": "nli", "nli": settings | {"batch_size": 0}})
    check_matcher({"name": "contains", "nli": {"model": None}})  # options of a matcher not chosen are not read
