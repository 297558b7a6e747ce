"""Stories in and stored: settings, sources, fetching, parsing, normalizing, dedupe, storage.

Imports no other project package and no ML library (see tests/check_imports.py).
"""
