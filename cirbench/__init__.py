"""cirbench: reproduction benchmark for losses and feature regularizers (CIR and neighbours)."""

__version__ = "0.1.0"
