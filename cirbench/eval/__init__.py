"""Evaluation protocols: classification accuracy, retrieval (CMC / mAP)."""
