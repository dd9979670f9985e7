"""Versioned training runs: an immutable folder per run, aliases, verified model loading.

Submodules stay light to import; heavy libraries (papermill, skops, joblib, pandas) are imported
inside the functions that need them.
"""
