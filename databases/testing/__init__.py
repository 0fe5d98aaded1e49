"""Helpers for testing code that uses `databases` (docs/testing.md)."""
