"""Evaluation of trained models (placeholder, filled below)."""
