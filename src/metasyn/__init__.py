"""metasyn: metacognition fine-tuning and the synergistic structure of attention heads."""

__version__ = "0.1.0"
