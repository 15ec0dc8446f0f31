"""Headline sources -> clean rows."""
