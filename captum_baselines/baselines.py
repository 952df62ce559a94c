"""Baseline generators (filled in by the foundation)."""
