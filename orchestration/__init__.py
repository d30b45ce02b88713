"""Dagster wiring of the vmas library (assets, Great Expectations checks, sensors, schedules)."""
