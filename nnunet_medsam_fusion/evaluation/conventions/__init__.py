"""Scoring conventions: one module per challenge or convention."""
