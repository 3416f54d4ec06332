"""staffml-dagster: a backward-designed, verified corpus of Staff-level ML systems questions."""

__version__ = "0.1.0"
