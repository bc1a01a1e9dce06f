"""Models side by side: statistics between models, the plain-language verdict and report, their figures."""
