"""Thin Prefect tasks, one per pipeline stage: load inputs, call charlm/storage, publish.

The command line calls the same functions through `.fn`, so a run from the
terminal and a run in a Prefect flow perform exactly the same operations.
"""
