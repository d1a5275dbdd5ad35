"""Thin absl entry points: `python -m experiments.NAME --config=configs/NAME.py[:variant]`."""
