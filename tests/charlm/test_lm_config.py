import pytest

from charlm.config import (
    IngestConfig,
    ModelConfig,
    SampleConfig,
    TrainConfig,
    from_dict,
    to_dict,
)

BAD = [
    (ModelConfig, "cell", "xyz"),
    (ModelConfig, "hidden", 0),
    (ModelConfig, "depth", 0),
    (ModelConfig, "embedding", -1),
    (ModelConfig, "dropout", 1.0),
    (ModelConfig, "dropout", -0.1),
    (ModelConfig, "gru_variant", "cudnn"),
    (TrainConfig, "batch_size", 0),
    (TrainConfig, "epochs", 0),
    (TrainConfig, "truncate_length", 0),
    (TrainConfig, "patience", 0),
    (TrainConfig, "max_minutes", 0),
    (TrainConfig, "learning_rate", 0),
    (TrainConfig, "min_learning_rate", -1e-3),
    (TrainConfig, "checkpoint_minutes", 0),
    (TrainConfig, "clip_norm", 0),
    (TrainConfig, "validation_limit", -1),
    (SampleConfig, "top_p", 0),
    (SampleConfig, "top_p", 1.5),
    (SampleConfig, "temperature", 0),
    (SampleConfig, "top_k", -1),
    (SampleConfig, "max_new_chars", 0),
    (IngestConfig, "max_headline_length", 0),
    (IngestConfig, "validation_percent", 96),
    (IngestConfig, "test_percent", -1),
]


@pytest.mark.parametrize("cls,name,value", BAD, ids=[f"{c.__name__}.{n}={v}" for c, n, v in BAD])
def test_bad_value_names_the_field(cls, name, value):
    with pytest.raises(ValueError) as info:
        cls(**{name: value})
    message = str(info.value)
    assert name in message
    assert repr(value) in message or str(value) in message


def test_defaults_are_valid_and_round_trip():
    for cls in (ModelConfig, TrainConfig, SampleConfig, IngestConfig):
        config = cls()
        assert from_dict(cls, to_dict(config)) == config
    config = ModelConfig(cell="gru", hidden=8, depth=3, embedding=0)
    assert from_dict(ModelConfig, to_dict(config)) == config


def test_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(ValueError, match="hiden"):
        from_dict(ModelConfig, {"hiden": 8, "cell": "gru"})
    with pytest.raises(ValueError, match="lr"):
        from_dict(TrainConfig, {"lr": 0.1})


def test_from_dict_still_validates():
    with pytest.raises(ValueError, match="depth"):
        from_dict(ModelConfig, {"depth": 0})


def test_recency_weightings_default_window_is_the_recent_views() -> None:
    """charlm does not import storage: its "about a month of news" default is kept equal here."""
    from storage.datasets import RECENT_DAYS

    assert TrainConfig().recent_days == RECENT_DAYS
