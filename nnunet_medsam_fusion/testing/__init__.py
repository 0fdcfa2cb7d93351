"""Fixtures for tests and benchmarks: tiny checkpoints in official layouts, synthetic planned sets, the blob
transfer procedure, nnU-Net environment helpers. Both ``tests/`` and ``benchmarks/`` import from here; pytest's
fixtures stay in ``tests/conftest.py``."""
