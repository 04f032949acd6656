"""nbkit.core.train.metrics: metric names checked before training, with the one did-you-mean."""

from __future__ import annotations

import pytest

from nbkit.core.config import ConfigError
from nbkit.core.train.metrics import check_best_metric, resolve_metrics


def test_unknown_metric_suggests_one():
    with pytest.raises(ConfigError, match=r"^unknown metric 'acuracy' \(did you mean 'accuracy'\?\); valid: "):
        resolve_metrics(["acuracy"])


def test_best_metric_must_be_reported():
    specs = resolve_metrics(["accuracy", "f1"])
    check_best_metric("eval_accuracy", specs)
    check_best_metric("eval_loss", [])
    with pytest.raises(ConfigError) as err:
        check_best_metric("eval_acc", specs)
    assert str(err.value) == ("'best_metric' 'eval_acc' is not reported by this run (did you mean 'eval_accuracy'?); "
                              "the evaluations report eval_loss, eval_accuracy, eval_f1")
    check_best_metric("eval_anything", resolve_metrics([lambda p, y: {"anything": 1.0}]))  # a callable: any name
