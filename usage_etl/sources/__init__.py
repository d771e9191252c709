"""Readers of raw usage rows: one time window at a time, as Polars frames."""
