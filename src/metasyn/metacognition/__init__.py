"""Metacognition (Steyvers et al. 2025, arXiv 2510.05126): consistency targets, the two training tasks, LoRA
fine-tuning and merging, calibration metrics and their figures.

Modules: ``sampling`` (the consistency samples, a batch of questions at a time, resumable), ``targets``
(consistency, bins, target confidences), ``examples`` (the training examples), ``finetuning`` (LoRA through
TRL/PEFT, merge check), ``calibration`` (ECE, Brier, AUROC, AURC, pairwise AUC, bootstrap intervals),
``evaluation`` (question pairs, scoring outputs, per-model metric tables, paired differences from base),
``binning`` (the equal-width bins both use), ``plots``.
"""
