"""cirbench: a reproduction benchmark for losses and feature regularizers (CIR and its neighbours)."""

__version__ = "0.1.0"
