"""Metric kernels: array-in, numbers-out functions every convention builds on (no files, no conventions)."""
