"""Kedro settings: the defaults."""
