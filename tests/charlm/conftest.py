"""Shared helpers for the charlm unit tests: tiny models and a small headline corpus."""

from __future__ import annotations

import numpy as np
import pytest

from charlm.demo_corpus import make_corpus


@pytest.fixture(scope="session")
def headlines() -> list[str]:
    """300 grammar headlines (seed 7): small, repetitive, printable ASCII."""
    return [text for _, text in make_corpus(300, np.random.default_rng(7))]


@pytest.fixture
def tiny_model():
    """Factory: a float32 model of the given config overrides (hidden 16, depth 1 by default)."""
    from charlm.config import ModelConfig
    from charlm.model import build_model

    def make(**overrides):
        params = dict(cell="gru", hidden=16, depth=1, embedding=8, dropout=0.0, seed=3)
        params.update(overrides)
        config = ModelConfig(**params)
        return build_model(config, precision="float32"), config

    return make
