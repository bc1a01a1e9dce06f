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
model, domain and metric:

- ``model`` (str): ``base`` or a fine-tuned variant.
- ``domain`` (str): a question domain, or ``"all"`` for every test question pooled.
- ``metric`` (str): ``accuracy``, ``parse_rate``, ``ece``, ``ece_equal_mass``, ``brier``, ``auroc``, ``aurc``
  (single-question task); ``pairwise_parse_rate``, ``auc_a``, ``auc_c`` (pairwise task); and, for each
  fine-tuned variant, the paired difference ``<metric>_minus_base`` (variant minus base) of each of these.
- ``value`` (float): NaN when undefined (see ``note``).
- ``ci_low``, ``ci_high`` (float): percentile bootstrap interval (``calibration.metrics.bootstrap``) over
  resampled questions (pairs for pairwise metrics), the same resamples for every model; NaN when undefined.
- ``n`` (int): items the value rests on: outputs for accuracy and parse rates, parsed outputs for the
  calibration metrics, eligible pairs for AUC_a / AUC_c; for a difference, the smaller of the two models' n.
- ``note`` (str): why the value is undefined, or "".
"""

from metasyn.pipelines.calibration.pipeline import create_pipeline

__all__ = ["create_pipeline"]
