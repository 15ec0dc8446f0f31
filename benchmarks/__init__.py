"""Baselines and speed benchmarks for charlm (not part of the installed package).

Importable as ``benchmarks.*`` from the repository root; the scripts also run directly
(``.venv/bin/python benchmarks/ngram.py``).
"""
