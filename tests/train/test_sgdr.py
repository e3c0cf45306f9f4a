"""SGDR (cosine annealing with warm restarts) against its closed formula, restarts included."""

import math

import pytest

from tfbdl.errors import InvalidOptionError
from tfbdl.train.sgdr import make_sgdr, sgdr_cycle, sgdr_restarts, sgdr_schedule


def closed_form(epoch, eta_max, eta_min, t_cur, t_i):
    return eta_min + 0.5 * (eta_max - eta_min) * (1 + math.cos(math.pi * t_cur / t_i))


# The paper's settings: T_0 = 10, T_mult = 2 -> cycles [0, 10), [10, 30), [30, 70), [70, 150).
@pytest.mark.parametrize("epoch, start, length", [
    (0.0, 0, 10), (2.5, 0, 10), (9.999, 0, 10), (10.0, 10, 20), (17.25, 10, 20), (29.5, 10, 20),
    (30.0, 30, 40), (69.0, 30, 40), (70.0, 70, 80), (149.9, 70, 80), (150.0, 150, 160)])
def test_paper_schedule_matches_formula(epoch, start, length):
    lr = sgdr_schedule(epoch, eta_max=0.01, t_0=10, t_mult=2, eta_min=1e-5)
    assert lr == pytest.approx(closed_form(epoch, 0.01, 1e-5, epoch - start, length), rel=1e-12)
    assert sgdr_cycle(epoch, 10, 2)[1:] == (start, length)


def test_restart_values():
    s = make_sgdr(0.1, 10, 2, 0.001)
    assert s(0) == pytest.approx(0.1) and s(10) == pytest.approx(0.1) and s(30) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.001 + 0.5 * 0.099)  # half-way: the mean
    assert s(20) == pytest.approx(0.001 + 0.5 * 0.099)  # half-way through the 20-epoch cycle
    assert s(10 - 1e-9) == pytest.approx(0.001, abs=1e-9)  # the end of a cycle reaches eta_min
    assert sgdr_restarts(150, 10, 2) == [10, 30, 70, 150]


def test_constant_period_and_fractional_tmult():
    assert sgdr_restarts(35, 10, 1) == [10, 20, 30]
    assert sgdr_schedule(23.0, 1.0, 10, 1) == pytest.approx(closed_form(23, 1.0, 0.0, 3, 10))
    # T_mult = 1.5: cycles of 4, 6, 9 -> starts 0, 4, 10, 19.
    assert sgdr_restarts(20, 4, 1.5) == [4, 10, 19]
    assert sgdr_schedule(12.0, 1.0, 4, 1.5) == pytest.approx(closed_form(12, 1.0, 0.0, 2, 9))


def test_per_epoch_is_constant_within_an_epoch():
    assert sgdr_schedule(12.7, 1.0, 10, 2, per_epoch=True) == sgdr_schedule(12.0, 1.0, 10, 2)


@pytest.mark.parametrize("kwargs", [dict(eta_max=0), dict(t_0=0), dict(t_mult=0.5), dict(eta_min=0.2)])
def test_bad_parameters(kwargs):
    params = dict(eta_max=0.1, t_0=10, t_mult=2, eta_min=0.0)
    params.update(kwargs)
    with pytest.raises(InvalidOptionError):
        make_sgdr(**params)
