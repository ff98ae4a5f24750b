"""Ember training: data, the three stages, metrics, plots and distributed helpers."""
