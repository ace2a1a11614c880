"""Datasets: the catalogue of where data lives (datasets.yaml), readers and samplers."""
