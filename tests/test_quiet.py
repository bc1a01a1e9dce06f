"""Only the listed third-party warnings are silenced: the same text from another module still shows."""

import warnings

from metasyn.quiet import silence_third_party_warnings


def test_listed_warnings_are_silenced_and_others_are_not():
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        silence_third_party_warnings()
        warnings.warn_explicit("The set_bad function will be deprecated", PendingDeprecationWarning, "matrix.py", 1,
                               module="seaborn.matrix")  # fmt: skip
        warnings.warn_explicit("The set_bad function will be deprecated", PendingDeprecationWarning, "ours.py", 1,
                               module="metasyn.synergy.plots")  # fmt: skip
        warnings.warn_explicit("something new", FutureWarning, "modeling_utils.py", 1,
                               module="transformers.modeling_utils")  # fmt: skip
    assert [(str(w.message), w.filename) for w in caught] == [
        ("The set_bad function will be deprecated", "ours.py"),
        ("something new", "modeling_utils.py"),
    ]
