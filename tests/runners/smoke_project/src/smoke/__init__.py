"""Smoke-test Kedro project for the SLURM runner."""
