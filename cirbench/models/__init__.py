"""Backbones and heads. A task model maps inputs to features (``forward``), exposes ``head``
(features -> logits, or ``None``) and ``embed`` (the features used at evaluation)."""
