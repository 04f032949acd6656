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
    first, *rest = str(err.value).splitlines()
    assert needle in first
    # one line, except an unknown key's list of valid keys (grouped: each line a group or its rest)
    if first.startswith("unknown key"):
        assert first.endswith("Valid keys:") and rest and all(line.startswith("  ") for line in rest)
    else:
        assert rest == []


def test_nullable_options_accept_none_and_objects_pass_for_model_and_data():
    cfg = build_config(FinetuneConfig, {"max_grad_norm": None, "max_steps": None, "data": [{"text": "a"}]})
    assert cfg.max_grad_norm is None and cfg.data == [{"text": "a"}]


def test_help_lists_every_key_with_default_and_meaning():
    text = config_help()
    for f in dataclasses.fields(FinetuneConfig):
        line = next(line for line in text.splitlines() if line.split()[0] == f.name)
        assert "default" in line and f.metadata["help"] in line
    assert text.splitlines()[0].split()[0] != "max_steps"  # model/data-level keys come first


# -- Hugging Face Trainer's argument names ---------------------------------------------------------


def test_trainer_names_are_aliases_of_our_keys():
    from nbkit.core.config import TRAINER_ALIASES

    trainer = yaml.safe_load("learning_rate: 3e-5\nnum_train_epochs: 2\nper_device_train_batch_size: 8\n"
                             "gradient_accumulation_steps: 4\nwarmup_ratio: 0.1\neval_steps: 50\n"
                             "weight_decay: 0.01\nmax_steps: 200\nlr_scheduler_type: cosine\nrun_name: sweep\n")
    cfg = build_config(FinetuneConfig, trainer)
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.grad_accum, cfg.warmup, cfg.eval_every) == (
        3e-5, 2, 8, 4, 0.1, 50)
    assert (cfg.weight_decay, cfg.max_steps, cfg.scheduler, cfg.name) == (0.01, 200, "cosine", "sweep")
    assert build_config(FinetuneConfig, {"warmup_steps": 10}).warmup == 10.0  # transformers 5: steps if >= 1
    assert set(TRAINER_ALIASES.values()) <= {f.name for f in dataclasses.fields(FinetuneConfig)}
    # A keyword argument overrides the same key given under the other name in `values`.
    assert build_config(FinetuneConfig, {"lr": 1e-3}, learning_rate=2e-3).lr == 2e-3


@pytest.mark.parametrize(("values", "needle"), [
    ({"learning_rate": 1e-3, "lr": 1e-3}, "'learning_rate' and 'lr' are the same key (learning_rate is "
                                          "Trainer's name for lr); give one: lr"),
    ({"bf16": True}, "'bf16' is a Hugging Face Trainer argument; here write precision: bf16"),
    ({"optim": "adamw_torch"}, "here write optimizer: one of adamw, adam, sgd"),
    ({"logging_steps": 10}, "nbkit logs the loss at every optimizer step"),
    ({"warmup_ratio": 1.0}, "'warmup_ratio' must be a fraction in [0, 1), got 1.0"),
    ({"num_train_epochs": 0}, "'epochs' must be an integer >= 1, got 0"),
    ({"learning_rat": 1e-3}, "unknown key 'learning_rat' (did you mean 'lr'?)"),
])
def test_trainer_names_that_do_not_fit_get_one_line(values, needle):
    with pytest.raises(ConfigError) as err:
        build_config(FinetuneConfig, values)
    first, *rest = str(err.value).splitlines()
    assert needle in first
    # one line; an unknown key's grouped list of valid keys follows it on lines of its own
    assert bool(rest) == first.startswith("unknown key") == first.endswith("Valid keys:")


def test_help_shows_the_trainer_aliases():
    lines = {line.split()[0]: line for line in config_help().splitlines()}
    assert "alias learning_rate" in lines["lr"]
    assert "alias num_train_epochs" in lines["epochs"]
    assert "alias warmup_steps, warmup_ratio" in lines["warmup"]
    assert "alias per_device_train_batch_size" in lines["batch_size"]
# --- a key written twice (issue 12, scenario 8) --------------------------------------------------

DOUBLE_LR = "epochs: 2\nlr: 1e-4\nbatch_size: 8\nlr: 3e-4\n"


def test_a_key_written_twice_is_an_error_naming_it_and_both_lines():
    from nbkit.core.config import load_yaml

    with pytest.raises(ConfigError) as err:
        load_yaml(DOUBLE_LR, where="cfg.yaml")
    assert str(err.value) == "key 'lr' is written twice in cfg.yaml (lines 2 and 4); keep one of them"
    with pytest.raises(ConfigError, match=r"key 'x' is written twice in the config \(lines 1 and 1\)"):
        load_yaml("m: {x: 1, x: 2}")  # a flow mapping on one line, nested


def test_load_yaml_is_safe_load_otherwise():
    from nbkit.core.config import load_yaml

    text = "a: 1\nb: [x, {c: 2}]\nbase: &b {x: 1}\nd:\n  <<: *b\n  x: 2\ne: 5e-5\n"
    assert load_yaml(text) == yaml.safe_load(text)  # merges may override, 5e-5 stays YAML 1.1's str
    with pytest.raises(yaml.constructor.ConstructorError):
        load_yaml("x: !!python/object/apply:os.system ['true']")  # nothing is evaluated


def test_a_config_file_with_a_key_twice_fails_in_python_and_the_cli(tmp_path, capsys):
    from nbkit.cli import main
    from nbkit.core.config import read_config
    from nbkit.core.train.finetune import finetune

    path = tmp_path / "cfg.yaml"
    path.write_text(DOUBLE_LR)
    expected = f"key 'lr' is written twice in {path} (lines 2 and 4); keep one of them"
    with pytest.raises(ConfigError) as err:
        read_config(path)
    assert str(err.value) == expected
    with pytest.raises(ConfigError) as err:
        finetune(config=path)  # before anything is loaded
    assert str(err.value) == expected
    with pytest.raises(SystemExit) as done:
        main(["finetune", str(path), "--run-dir", str(tmp_path / "run")])
    assert str(done.value) == f"nbkit: {expected}"
    assert not (tmp_path / "run").exists()
    path.write_text("epochs: 2\nlr: 3e-4\n")
    assert read_config(path) == {"epochs": 2, "lr": "3e-4"}  # as safe_load reads it; build_config coerces
def test_unknown_key_lists_valid_keys_grouped_and_never_split():
    from nbkit.core.config import ConfigError, FinetuneConfig, build_config

    with pytest.raises(ConfigError) as err:
        build_config(FinetuneConfig, {"lrate": 1e-3})
    lines = str(err.value).splitlines()
    assert lines[0] == "unknown key 'lrate' (did you mean 'lr'?). Valid keys:"
    assert lines[1].startswith("  model and data: model, data, task, text, text_pair, label, eval_split, test,")
    assert any(line.startswith("  training: epochs, max_steps, lr, ") for line in lines)
    keys = [f.name for f in __import__("dataclasses").fields(FinetuneConfig)]
    listed = [k.strip() for line in lines[1:] for k in line.split(":", 1)[-1].split(",") if k.strip()]
    assert sorted(listed) == sorted(keys)  # every key once, whole: lines break only after commas
    assert all(len(line) <= 90 for line in lines)
    assert "((" not in str(err.value) and "))" not in str(err.value)


def test_eval_split_as_a_row_count_stays_a_count():
    from nbkit.core.train.finetune import resolve_config

    assert resolve_config({"eval_split": 16}).eval_split == 16
    assert isinstance(resolve_config({"eval_split": 16}).eval_split, int)
    assert resolve_config({"eval_split": 0.2}).eval_split == 0.2
    assert resolve_config({"eval_split": 0}).eval_split == 0.0
    with pytest.raises(ConfigError, match="'eval_split' must be a number >= 0"):
        resolve_config({"eval_split": -3})
