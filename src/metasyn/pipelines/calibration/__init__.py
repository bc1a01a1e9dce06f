"""calibration: does each model state calibrated confidence on the held-out test questions?

Every evaluated model (``Variants.evaluated_models``: ``base`` and each fine-tune) answers each
test question with a stated confidence (``prompts.confidence_messages``) and, for seeded same-domain pairs of
test questions, says which one it is more likely to answer correctly (``prompts.pairwise_messages``), by
greedy generation in the format the fine-tunes were trained on. Metric definitions: ``metasyn.metacognition.calibration``.

Outputs per model ``m``:

- ``m.calibration_outputs`` (one row per test question): ``question_id, domain, model, raw_output, answer``
  (None when unreadable), ``confidence`` (NaN when unreadable or outside [0, 1]), ``correct``, ``parsed``
  (answer and confidence both read).
- ``m.pairwise_outputs`` (one row per pair): ``pair_id, domain, question_id_1, question_id_2, raw_output,
  model, preferred`` (1, 2, or missing), ``parsed``, ``correct_1, correct_2`` (the same model's single-task
  correctness), ``consistency_1, consistency_2`` (the base model's, from data_prep).
- ``m.calibration_metrics``: this model's rows of the table below.

``calibration_metrics_table`` (parquet; also as nested JSON in ``calibration_metrics_summary``), one row per
model, method, domain and metric:

- ``model`` (str): ``base`` or a fine-tuned variant.
- ``method`` (str): how the confidence was elicited (``calibration.methods``: ``stated``, ``forced``,
  ``p_true``; ``metasyn.lm.elicitation``), ``answer`` for the method-free accuracy, ``pairwise`` for the
  pairwise task.
- ``domain`` (str): a question domain, or ``"all"`` for every test question pooled.
- ``metric`` (str): ``accuracy`` (answer); ``parse_rate`` (share of questions with a confidence under the
  method: format compliance for ``stated``), ``ece``, ``ece_equal_mass``, ``squared_ce_debiased``, ``brier``,
  ``auroc``, ``aurc`` (per method); ``pairwise_parse_rate``, ``auc_a``, ``auc_c`` (pairwise); and, for each fine-tuned variant,
  the paired difference ``<metric>_minus_base`` (variant minus base) of each of these, computed on the
  questions where both models have a confidence under that method (pairwise: the pairs both read).
- ``value`` (float): NaN when undefined (see ``note``), including every metric on fewer than
  ``calibration.metrics.min_n`` questions (readable pairs).
- ``ci_low``, ``ci_high`` (float): percentile bootstrap interval (``calibration.metrics.bootstrap``) over
  resampled *questions* (pairwise metrics too: a pair counts as often as both its questions are drawn), the
  same resamples for every model and method; NaN when undefined.
- ``n`` (int): items the value rests on: outputs for accuracy and parse rates, outputs with a confidence for
  the calibration metrics, readable eligible pairs for AUC_a / AUC_c; for a difference, the common items.
- ``note`` (str): why the value is undefined, or "".
"""

from metasyn.pipelines.calibration.pipeline import create_pipeline

__all__ = ["create_pipeline"]
