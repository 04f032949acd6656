"""The one config schema: coercion, validation messages, did-you-mean, help text."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from nbkit.core.config import ConfigError, FinetuneConfig, TrainConfig, build_config, config_help


def test_defaults_match_fit_signature():
    import inspect

    from nbkit.core.train import fit

    params = inspect.signature(fit).parameters
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f.name in params, f.name
        fit_default = params[f.name].default
        assert (list(fit_default) if isinstance(fit_default, tuple) else fit_default) == default, f.name


def test_yaml_values_are_coerced():
    cfg = build_config(FinetuneConfig, yaml.safe_load("lr: 5e-5\nmetrics: accuracy, f1\nepochs: 2\nwarmup: 1"))
    assert cfg.lr == 5e-5 and isinstance(cfg.lr, float)  # YAML 1.1 reads 5e-5 as a string
    assert cfg.metrics == ["accuracy", "f1"]
    assert cfg.warmup == 1.0 and isinstance(cfg.warmup, float)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"lrate": 1}, "unknown key 'lrate' (did you mean 'lr'?)"),
        ({"epoch": 1}, "did you mean 'epochs'?"),
        ({"optimiser": "adam"}, "did you mean 'optimizer'?"),
        ({"lr": 0}, "'lr' must be a number > 0, got 0.0"),
        ({"lr": "fast"}, "'lr' must be a number > 0, got 'fast'"),
        ({"epochs": 1.5}, "'epochs' must be an integer >= 1, got 1.5"),
        ({"epochs": True}, "'epochs' must be an integer >= 1, got True"),
        ({"batch_size": -3}, "'batch_size' must be an integer >= 1"),
        ({"optimizer": "adamm"}, "did you mean 'adam'"),
        ({"task": "classification"}, "one of sequence-classification"),
        ({"metrics": ["acc"]}, "each item of 'metrics' must be one of accuracy, f1, perplexity, exact_match, got 'acc'"),
        ({"metrics": 3}, "'metrics' must be"),
        ({"group_by_length": "yes"}, "'group_by_length' must be true or false"),
        ({"max_grad_norm": -1}, "'max_grad_norm' must be a number > 0"),
        ({"precision": "half"}, "one of auto, fp32, bf16, fp16"),
        ({"model": None}, "'model' must be a string"),
        ({"seed": -1}, "'seed' must be an integer >= 0"),
    ],
)
def test_errors_name_key_value_and_what_is_allowed(values, needle):
    with pytest.raises(ConfigError) as err:
        build_config(FinetuneConfig, values)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_nullable_options_accept_none_and_objects_pass_for_model_and_data():
    cfg = build_config(FinetuneConfig, {"max_grad_norm": None, "max_steps": None, "data": [{"text": "a"}]})
    assert cfg.max_grad_norm is None and cfg.data == [{"text": "a"}]


def test_help_lists_every_key_with_default_and_meaning():
    text = config_help()
    for f in dataclasses.fields(FinetuneConfig):
        line = next(line for line in text.splitlines() if line.split()[0] == f.name)
        assert "default" in line and f.metadata["help"] in line
    assert text.splitlines()[0].split()[0] != "max_steps"  # model/data-level keys come first
