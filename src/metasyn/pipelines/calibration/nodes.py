"""calibration nodes: prompt each model on the test questions, score its outputs, measure, compare, plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from metasyn.lm.answers import get_matcher, preference_settled
from metasyn.lm.elicitation import get_elicitation
from metasyn.lm.generation import generate
from metasyn.lm.models import LanguageModel
from metasyn.lm.precision import computing_in
from metasyn.lm.prompts import confidence_messages, pairwise_messages, render_prompts
from metasyn.metacognition import distributional, evaluation, judgment, probes, sampling
from metasyn.metacognition import plots as calibration_plots


def pair_test_questions(test_questions: pd.DataFrame, pairs: dict) -> pd.DataFrame:
    """Seeded pairs of distinct test questions of the same domain, each pair's order drawn at random."""
    return evaluation.pair_questions(test_questions, pairs["per_domain"], pairs["seed"])


def generate_confidence_answers(
    model: LanguageModel, test_questions: pd.DataFrame, generation: dict, methods: list[str], verdict_method: str
) -> pd.DataFrame:
    """Greedy answer-plus-confidence output for each test question, in the format the fine-tunes learnt."""
    evaluation.check_methods(methods, verdict_method)
    return sampling.greedy_answers(
        computing_in(model, generation["dtype"]),
        evaluation.check_test_questions(test_questions),
        generation["confidence_max_new_tokens"],
        generation["batch_size"],
    )


def score_confidence_answers(
    generations: pd.DataFrame, test_questions: pd.DataFrame, matcher: str, model_name: str
) -> pd.DataFrame:
    """Per test question: parsed answer and confidence, correctness, and whether both could be read."""
    return evaluation.score_confidence_outputs(generations, test_questions, get_matcher(matcher), model_name)


def elicit_confidences(
    model: LanguageModel,
    stated_outputs: pd.DataFrame,
    test_questions: pd.DataFrame,
    methods: list[str],
    generation: dict,
) -> pd.DataFrame:
    """The scored outputs with a confidence (and its label mass) from every method besides ``stated``."""
    questions = test_questions.set_index("id").loc[stated_outputs["question_id"]].reset_index()
    answers = evaluation.graded_answer_texts(stated_outputs)
    model = computing_in(model, generation["dtype"])
    columns = {}
    for method in methods:
        if method == "stated":
            continue
        elicited = get_elicitation(method)(model, questions.to_dict("records"), answers, generation["batch_size"])
        columns |= {
            evaluation.CONFIDENCE_COLUMNS[method]: elicited.confidence,
            evaluation.mass_column(method): elicited.mass,
        }
    return stated_outputs.assign(**columns)


def generate_pairwise_choices(
    model: LanguageModel, test_questions: pd.DataFrame, question_pairs: pd.DataFrame, generation: dict
) -> pd.DataFrame:
    """Greedy pairwise output (which question the model is more likely to get right) for each test pair, up to the
    line that settles the choice (the answers the prompt asks for after it are not scored)."""
    by_id = {question["id"]: question for question in test_questions.to_dict("records")}
    conversations = [
        pairwise_messages(by_id[first], by_id[second])
        for first, second in zip(question_pairs["question_id_1"], question_pairs["question_id_2"])
    ]
    outputs = generate(
        computing_in(model, generation["dtype"]),
        render_prompts(model.tokenizer, conversations),
        generation["pairwise_max_new_tokens"],
        batch_size=generation["batch_size"],
        settled=preference_settled,
        progress="pairwise choices",
    )
    return question_pairs.assign(raw_output=outputs.texts)


def score_pairwise_choices(
    generations: pd.DataFrame, calibration_outputs: pd.DataFrame, test_questions: pd.DataFrame, model_name: str
) -> pd.DataFrame:
    """Per pair: the parsed choice beside each question's (own-model) correctness and (base) consistency."""
    return evaluation.score_pairwise_outputs(generations, calibration_outputs, test_questions, model_name)


def compute_calibration_metrics(
    calibration_outputs: pd.DataFrame, pairwise_outputs: pd.DataFrame, methods: list[str], metrics: dict
) -> pd.DataFrame:
    """One model's metrics per method and domain, and pooled, with bootstrap intervals (schema: package docstring)."""
    return evaluation.model_metrics(
        calibration_outputs, pairwise_outputs, metrics["ece_bins"], metrics["bootstrap"], methods, metrics["min_n"]
    )


def compare_with_base(
    calibration_outputs: pd.DataFrame,
    pairwise_outputs: pd.DataFrame,
    base_calibration_outputs: pd.DataFrame,
    base_pairwise_outputs: pd.DataFrame,
    methods: list[str],
    metrics: dict,
) -> pd.DataFrame:
    """Fine-tuned minus base per method, metric and domain, on the questions both have a confidence for."""
    return evaluation.differences_from_base(
        calibration_outputs,
        pairwise_outputs,
        base_calibration_outputs,
        base_pairwise_outputs,
        metrics["ece_bins"],
        metrics["bootstrap"],
        methods,
        metrics["min_n"],
    )


def combine_calibration_metrics(*tables: pd.DataFrame) -> pd.DataFrame:
    """Every model's metrics and every fine-tune's differences from base, in one long table."""
    return evaluation.combine_tables(*tables)


def summarize_calibration_metrics(table: pd.DataFrame) -> dict:
    """The metrics table as nested JSON, ``{model: {domain: {metric: {value, ci_low, ci_high, n, note}}}}``."""
    return evaluation.nested_summary(table)


def plot_reliability_diagrams(n_bins: int, method: str, *calibration_outputs: pd.DataFrame) -> Figure:
    """Reliability diagrams of every model under one elicitation method, side by side (all domains pooled)."""
    outputs = pd.concat([evaluation.with_method_confidence(o, method) for o in calibration_outputs], ignore_index=True)
    return calibration_plots.reliability_diagrams(outputs, n_bins)


def plot_risk_coverage(method: str, *calibration_outputs: pd.DataFrame) -> Figure:
    """Risk-coverage curves of every model under one elicitation method (all domains pooled)."""
    outputs = pd.concat([evaluation.with_method_confidence(o, method) for o in calibration_outputs], ignore_index=True)
    return calibration_plots.risk_coverage_curves(outputs)


def plot_metrics_by_domain(calibration_metrics_table: pd.DataFrame, method: str) -> Figure:
    """Each metric per domain and model under one elicitation method, with bootstrap intervals."""
    return calibration_plots.metrics_by_domain(evaluation.method_rows(calibration_metrics_table, method))


def capture_residual_activations(
    model: LanguageModel, stated_outputs: pd.DataFrame, test_questions: pd.DataFrame, probe_settings: dict, dtype: str
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """The residual stream at the probed layers while the model reads each test prompt and its own greedy answer."""
    questions = test_questions.set_index("id").loc[stated_outputs["question_id"]].reset_index()
    layers = probes.probe_layers(probe_settings["layers"], model.model.config.get_text_config().num_hidden_layers)
    prompts = render_prompts(
        model.tokenizer, [confidence_messages(question) for question in questions.to_dict("records")]
    )
    captured = probes.residual_activations(
        computing_in(model, dtype), prompts, list(stated_outputs["raw_output"]), layers, probe_settings["batch_size"]
    )
    index = pd.DataFrame(
        {"question_id": stated_outputs["question_id"], "empty_completion": captured.pop("empty_completion")}
    )
    return {name: torch.from_numpy(np.asarray(array)) for name, array in captured.items()}, index


def probe_correctness(
    activations: dict[str, torch.Tensor],
    activation_index: pd.DataFrame,
    calibration_outputs: pd.DataFrame,
    probe_settings: dict,
    metrics: dict,
) -> pd.DataFrame:
    """Probe AUROC by layer and token position, beside the AUROC of each confidence the model states."""
    correct = calibration_outputs.set_index("question_id").loc[activation_index["question_id"], "correct"]
    return probes.probe_table(
        {position: activations[position].numpy() for position in probes.POSITIONS},
        activations["layers"].tolist(),
        correct.to_numpy(dtype=bool),
        probe_settings["n_folds"],
        metrics["bootstrap"],
    )


def sample_open_answers(model: LanguageModel, open_prompts: pd.DataFrame, settings: dict, dtype: str) -> pd.DataFrame:
    """Answers sampled at the settings' temperature to each open prompt: the model's empirical distribution."""
    return distributional.sample_open_answers(
        computing_in(model, dtype),
        open_prompts,
        settings["n_samples"],
        settings["temperature"],
        settings["max_new_tokens"],
        settings["batch_size"],
        settings["seed"],
    )


def report_open_distributions(
    model: LanguageModel, open_prompts: pd.DataFrame, settings: dict, dtype: str
) -> pd.DataFrame:
    """The model's greedy report of its five most likely answers to each open prompt, with probabilities."""
    return distributional.report_distributions(
        computing_in(model, dtype), open_prompts, settings["report_max_new_tokens"], len(open_prompts)
    )


def measure_distributional_calibration(
    open_answers: pd.DataFrame, reports: pd.DataFrame, settings: dict, metrics: dict
) -> tuple[pd.DataFrame, dict]:
    """KL(sampled || reported) per open prompt, and its mean over prompts with a bootstrap interval."""
    bootstrap = metrics["bootstrap"]
    return distributional.distributional_calibration(
        open_answers, reports, settings["epsilon"], bootstrap["n_resamples"], bootstrap["confidence_level"],
        bootstrap["seed"],
    )  # fmt: skip


def generate_judgments(model: LanguageModel, test_questions: pd.DataFrame, generation: dict) -> pd.DataFrame:
    """Greedy can / uncertain / cannot judgment for each test question, up to the line that settles it (the
    answer the prompt asks for after it is not scored)."""
    judgment.check_ability_columns(test_questions)  # before generating, not after
    records = evaluation.check_test_questions(test_questions).to_dict("records")
    outputs = generate(
        computing_in(model, generation["dtype"]),
        render_prompts(model.tokenizer, [judgment.judgment_messages(question) for question in records]),
        generation["judgment_max_new_tokens"],
        batch_size=generation["batch_size"],
        settled=judgment.judgment_settled,
        progress="judgments",
    )
    return pd.DataFrame({"question_id": [question["id"] for question in records], "raw_output": outputs.texts})


def score_judgments(generations: pd.DataFrame, test_questions: pd.DataFrame) -> pd.DataFrame:
    """Per test question: the class read from the judgment, and the base model's ability class (the truth)."""
    return judgment.judgment_outputs(generations, test_questions)


def measure_judgments(judgment_outputs: pd.DataFrame, metrics: dict) -> pd.DataFrame:
    """Exact match, parse rate and per-class recall of the judgments, with intervals over questions."""
    return judgment.judgment_estimates(judgment_outputs, metrics["min_n"], metrics["bootstrap"])


def plot_judgment_confusion(**judgment_outputs: pd.DataFrame) -> Figure:
    """Each model's 3x3 confusion of judged against true ability class, side by side."""
    return judgment.confusion_figure(
        {
            model: judgment.confusion_matrix(outputs["predicted"], outputs["truth"])
            for model, outputs in judgment_outputs.items()
        }
    )


def combine_by_model(**tables: pd.DataFrame) -> pd.DataFrame:
    """Per-model tables stacked, each row labelled with its model."""
    return pd.concat([table.assign(model=model) for model, table in tables.items()], ignore_index=True)


def combine_distributional_summaries(**summaries: dict) -> pd.DataFrame:
    """Each model's mean KL over open prompts with its interval and n, one row per model."""
    return pd.DataFrame([{"model": model, **summary} for model, summary in summaries.items()])
