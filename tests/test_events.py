"""Events: deferred step values are read from the device in bulk, once, on first use."""

from __future__ import annotations

import json

import torch

from nbkit.core.train.events import DeviceScalars, StepEnd, event_from_dict


def deferred(pending, step, loss, norm=float("nan"), tokens=float("nan"), seconds=0.5):
    return StepEnd.deferred(torch.tensor([loss, norm, tokens]), pending, seconds, step=step, epoch=0.0,
                            lr=1e-3, samples_per_s=2.0, elapsed=float(step))


def test_first_read_fills_every_pending_step_with_one_transfer(monkeypatch):
    pending = DeviceScalars()
    a, b = deferred(pending, 1, 1.5, 2.0, 100.0), deferred(pending, 2, 0.5)
    assert len(pending) == 2 and "loss" not in a.__dict__
    stacks = []
    real = torch.stack
    monkeypatch.setattr(torch, "stack", lambda xs, *args, **kw: stacks.append(len(xs)) or real(xs, *args, **kw))
    assert b.loss == 0.5  # reading one reads both
    assert stacks == [2] and len(pending) == 0
    assert (a.loss, a.grad_norm, a.tokens_per_s) == (1.5, 2.0, 200.0)
    assert (b.grad_norm, b.tokens_per_s) == (None, None)  # NaN means "not measured"


def test_deferred_step_round_trips_through_json():
    pending = DeviceScalars()
    e = deferred(pending, 3, 0.25, 1.0)
    line = json.dumps(e.to_dict())
    back = event_from_dict(json.loads(line))
    assert back == e and back.loss == 0.25 and back.grad_norm == 1.0


def test_plain_step_has_its_defaults():
    e = StepEnd(step=1, epoch=0.0, loss=1.0, lr=1e-3, samples_per_s=1.0, tokens_per_s=None)
    assert e.grad_norm is None and e.elapsed == 0.0
