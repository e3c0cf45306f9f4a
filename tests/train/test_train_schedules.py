"""Tests of tfbdl.train.schedules: exact values of every schedule, SWAG endpoints."""

import math
import subprocess
import sys

import pytest

from tfbdl.errors import InvalidOptionError
from tfbdl.train.schedules import (
    SCHEDULES,
    constant_schedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    step_schedule,
    swag_schedule,
)


def test_import_does_not_load_tensorflow():
    code = "import sys, tfbdl.train.schedules; assert 'tensorflow' not in sys.modules, 'tf loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_constant():
    assert constant_schedule(0, 0.1) == 0.1
    assert constant_schedule(17.5, 0.1) == 0.1


def test_step():
    lr = lambda e: step_schedule(e, 0.1, milestones=(10, 15), gamma=0.5)  # noqa: E731
    assert lr(0) == 0.1
    assert lr(9.99) == 0.1
    assert lr(10) == 0.05
    assert lr(14) == 0.05
    assert lr(15) == 0.025
    assert lr(100) == 0.025


def test_cosine():
    assert cosine_schedule(0, 0.2, 10) == pytest.approx(0.2, abs=1e-15)
    assert cosine_schedule(5, 0.2, 10) == pytest.approx(0.1, abs=1e-15)
    assert cosine_schedule(2.5, 0.2, 10, lr_min=0.02) == pytest.approx(
        0.02 + 0.18 * 0.5 * (1 + math.cos(math.pi / 4)), abs=1e-15)
    assert cosine_schedule(10, 0.2, 10, lr_min=0.02) == pytest.approx(0.02, abs=1e-15)
    assert cosine_schedule(12, 0.2, 10, lr_min=0.02) == pytest.approx(0.02, abs=1e-15)


def _reference(epoch, lr_init, swa_lr, swa_start, epochs, swa):
    # schedule() of experiments/train/run_swag.py (wjmaddox/swa_gaussian), written out again.
    t = epoch / (swa_start if swa else epochs)
    lr_ratio = swa_lr / lr_init if swa else 0.01
    if t <= 0.5:
        factor = 1.0
    elif t <= 0.9:
        factor = 1.0 - (1.0 - lr_ratio) * (t - 0.5) / 0.4
    else:
        factor = lr_ratio
    return lr_init * factor


def test_swag_schedule_values():
    kw = dict(lr_init=0.1, swa_lr=0.01, swa_start=10, epochs=20)
    assert swag_schedule(0, **kw) == 0.1
    assert swag_schedule(5, **kw) == 0.1  # t = 0.5 is still the flat part
    assert swag_schedule(7, **kw) == pytest.approx(0.1 * (1 - 0.9 * 0.2 / 0.4), rel=1e-15)
    assert swag_schedule(9, **kw) == pytest.approx(0.01, rel=1e-12)  # t = 0.9: swa_lr reached
    assert swag_schedule(9.5, **kw) == pytest.approx(0.01, rel=1e-15)
    assert swag_schedule(10, **kw) == pytest.approx(0.01, rel=1e-15)  # collection phase
    assert swag_schedule(19, **kw) == pytest.approx(0.01, rel=1e-15)


def test_swag_schedule_matches_reference_everywhere():
    for e in [0, 1, 3.5, 80, 80.5, 81, 100, 120, 144.9, 145, 160, 161, 200, 299]:
        got = swag_schedule(e, 0.05, 0.01, 161, 300)
        assert got == _reference(e, 0.05, 0.01, 161, 300, swa=True), e
        got_sgd = swag_schedule(e, 0.05, None, None, 300)
        assert got_sgd == _reference(e, 0.05, 0.01, 161, 300, swa=False), e


def test_swag_schedule_sgd_mode_endpoints():
    assert swag_schedule(0, 0.1, None, None, 100) == 0.1
    assert swag_schedule(70, 0.1, None, None, 100) == pytest.approx(0.1 * (1 - 0.99 * 0.5), rel=1e-15)
    assert swag_schedule(99, 0.1, None, None, 100) == pytest.approx(0.001, rel=1e-15)


@pytest.mark.parametrize("call", [
    lambda: swag_schedule(1, 0.1, 0.01, 0, 10),
    lambda: swag_schedule(1, 0.1, None, 5, 10),
    lambda: swag_schedule(1, 0.1, None, None, None),
    lambda: swag_schedule(-1, 0.1, 0.01, 5, 10),
    lambda: constant_schedule(0, -0.1),
    lambda: cosine_schedule(0, 0.1, 0),
    lambda: step_schedule(0, 0.1, milestones=(5, 2)),
    lambda: make_schedule("nope"),
    lambda: make_schedule("cosine", lr_init=0.1),
])
def test_bad_values_raise(call):
    with pytest.raises(InvalidOptionError):
        call()


def test_make_schedule_binds_parameters():
    lr = make_schedule("swag", lr_init=0.1, swa_lr=0.01, swa_start=10, epochs=20)
    assert lr(7) == swag_schedule(7, 0.1, 0.01, 10, 20)
    assert set(SCHEDULES) == {"constant", "step", "cosine", "linear", "swag"}


def test_linear_schedule_is_the_release_lr_linear():
    """lr * (1 - floor(epoch) / epochs): constant within an epoch, 0 from the last epoch on."""
    assert [linear_schedule(e, 0.1, 4) for e in (0, 0.5, 1, 2.999, 3, 4, 9)] == pytest.approx(
        [0.1, 0.1, 0.075, 0.05, 0.025, 0.0, 0.0])
    assert make_schedule("linear", lr_init=0.2, epochs=2)(1.5) == pytest.approx(0.1)
