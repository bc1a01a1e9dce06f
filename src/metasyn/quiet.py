"""Third-party warnings this project cannot act on, silenced once for every kedro command (``settings.py``).

Each entry names the warning's category, the module that issues it and the start of its message, so a new
warning, or one of these from our own code, still shows.
"""

from __future__ import annotations

import warnings

THIRD_PARTY_WARNINGS = [
    # TRL calls transformers' deprecated property on every training step.
    (FutureWarning, r"transformers\.modeling_utils", r"`is_gradient_checkpointing` is deprecated"),
    # seaborn's heatmap still calls a Colormap method that matplotlib deprecates.
    (PendingDeprecationWarning, r"seaborn\.matrix", r"The set_bad function"),
    # Kedro's own config loader registers its resolvers with the API it deprecates.
    (UserWarning, r"kedro\.config\.omegaconf_config", r"register_new_resolver\(\) is deprecated"),
    # Dotted dataset names are how Kedro namespaces name their datasets (``metacog.model``).
    (UserWarning, r"kedro\.pipeline\.node", r"One or more dataset names contain '\.'"),
]


def silence_third_party_warnings() -> None:
    """Ignore exactly the warnings listed in ``THIRD_PARTY_WARNINGS``."""
    for category, module, message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
