"""Equal-width bins on [0, 1], shared by the consistency targets and the calibration metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd


def equal_width_bin(values: pd.Series | np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin index in [0, n_bins - 1] of values in [0, 1]; 1.0 falls in the top bin."""
    return np.minimum((np.asarray(values, dtype=float) * n_bins).astype(int), n_bins - 1)
