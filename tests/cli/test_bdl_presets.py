"""Pieces of the bdl experiments that need no training: presets, image preparation, splits, priors."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from tfbdl.cli.bdl.data import prepare_images, split_validation
from tfbdl.cli.bdl.member import temperature_scaled
from tfbdl.cli.bdl.presets import MULTI_PRESETS, PRESETS
from tfbdl.errors import InvalidOptionError
from tfbdl.train.weight_decay import weight_decay_for_prior


def test_every_preset_collects_at_least_one_snapshot_and_paper_keeps_the_reference_schedule():
    for model, by_scale in PRESETS.items():
        for scale, preset in by_scale.items():
            assert 1 <= preset.swa_start < preset.epochs, (model, scale)
            assert preset.model == model
    for model in ("preresnet20", "vgg16", "vgg16_bn"):
        paper = PRESETS[model]["paper"]
        assert (paper.epochs, paper.swa_start, paper.swa_lr, paper.max_rank) == (300, 161, 0.01, 20)
        assert paper.dataset == "cifar10" and paper.augment
    assert PRESETS["preresnet20"]["paper"].lr_init == 0.1 and PRESETS["vgg16"]["paper"].lr_init == 0.05
    for by_scale in MULTI_PRESETS.values():
        assert by_scale["paper"].n_corrupt is None and by_scale["paper"].models == 10


def test_images_are_scaled_and_centred_in_the_padding_the_model_needs():
    images = np.full((2, 28, 28, 1), 255, np.uint8)
    padded = prepare_images(images, "preresnet20")
    assert padded.shape == (2, 32, 32, 1) and padded.dtype == np.float32
    assert padded[:, 2:30, 2:30].min() == 1.0 and padded.sum() == 2 * 28 * 28
    unpadded = prepare_images(images[:, :, :, :], "lenet5")
    assert unpadded.shape == (2, 28, 28, 1) and unpadded.max() == 1.0
    assert prepare_images(np.zeros((1, 32, 32, 3), np.uint8), "vgg16").shape == (1, 32, 32, 3)


def test_validation_split_is_disjoint_seeded_and_of_the_asked_size():
    x = np.arange(50)[:, None].astype(np.float32)
    y = np.arange(50) % 5
    x_fit, y_fit, x_val, y_val = split_validation(x, y, 12, seed=3)
    assert len(x_val) == 12 and len(x_fit) == 38
    assert not set(x_val[:, 0]) & set(x_fit[:, 0])
    np.testing.assert_array_equal(y_val, x_val[:, 0].astype(int) % 5)
    np.testing.assert_array_equal(split_validation(x, y, 12, seed=3)[2], x_val)
    assert not np.array_equal(split_validation(x, y, 12, seed=4)[2], x_val)
    with pytest.raises(InvalidOptionError, match="would hold out more than half of the 50 training images"):
        split_validation(x, y, 50, seed=0)


def test_weight_decay_for_prior_is_the_gaussian_prior_per_example():
    w = np.random.default_rng(0).normal(size=100)
    n, v = 5000, 0.3
    # N * wd * |w|^2 must be -log N(w; 0, v I) up to its constant (its value at w = 0).
    log_prior = norm.logpdf(w, scale=math.sqrt(v)).sum() - norm.logpdf(np.zeros_like(w), scale=math.sqrt(v)).sum()
    assert n * weight_decay_for_prior(v, n) * np.sum(w ** 2) == pytest.approx(-log_prior, rel=1e-12)
    assert weight_decay_for_prior(0.1, 60000) == 1.0 / (2.0 * 0.1 * 60000)  # the formula the swag runs used


def test_temperature_scaling_fits_on_validation_and_keeps_test_classes():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4)) * 6.0  # far too confident for labels that are half noise
    labels = np.where(rng.random(300) < 0.5, logits.argmax(axis=1), rng.integers(0, 4, 300))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    scaled, temperatures = temperature_scaled({"sgd": probs[:150]}, labels[:150], {"sgd": probs[150:]})
    assert temperatures["sgd"] > 1.5
    np.testing.assert_array_equal(scaled["sgd"].argmax(axis=1), probs[150:].argmax(axis=1))
    test_nll = lambda p: -np.mean(np.log(p[np.arange(150), labels[150:]]))  # noqa: E731
    assert test_nll(scaled["sgd"]) < test_nll(probs[150:])


def _reference_collection_epochs(epochs: int, swag_start: float) -> list[int]:
    """The 1-based epochs after which run_swag.py collects: ``(epoch + 1) > swag_start``, epoch 0-based."""
    return [epoch + 1 for epoch in range(epochs) if (epoch + 1) > swag_start]


def test_snapshots_follow_the_reference_rule_for_every_preset():
    import types

    from tfbdl.bayes.swag import SWAGCollector

    class CountingSwag:
        def __init__(self):
            self.collected = []

        def collect(self, *args, **kwargs):
            self.collected.append(self.epoch)

        @property
        def count(self):  # what the collector reports after each epoch
            return types.SimpleNamespace(numpy=lambda: len(self.collected))

    for model, by_scale in PRESETS.items():
        for scale, preset in by_scale.items():
            swag = CountingSwag()
            collector = SWAGCollector(swag, start_epoch=preset.swa_start)
            for epoch in range(preset.epochs):  # the Trainer's 0-based epochs
                swag.epoch = epoch + 1
                collector.on_epoch_end(None, epoch, {})
            assert swag.collected == _reference_collection_epochs(preset.epochs, preset.swa_start), (model, scale)
    assert _reference_collection_epochs(300, 161)[0] == 162  # the CIFAR runs first collect after epoch 162
    paper = PRESETS["lenet5"]["paper"]
    assert (paper.epochs, paper.swa_start, paper.lr_init, paper.swa_lr) == (50, 25, 0.05, 0.01)
    assert (paper.weight_decay, paper.prior_var, paper.batch_size, paper.dataset) == (0.0, 0.1, 128, "mnist")


def test_the_multiswag_title_states_what_was_measured():
    from tfbdl.cli.bdl.swag_report import curve_title

    curves = {"sgd": [{"nll": 0.6}, {"nll": 0.5}], "swa": [{"nll": 0.4}, {"nll": 0.45}], "swag": [{"nll": 0.5}]}
    assert curve_title(curves).split("\n") == ["Deep ensembles falls (0.600 → 0.500)",
                                               "MultiSWA does not fall (0.400 → 0.450)",
                                               "MultiSWAG does not fall (0.500 → 0.500)"]


def test_the_swag_summary_says_whether_the_claim_was_seen():
    from tfbdl.cli.bdl.swag_report import swag_verdict

    assert swag_verdict({"sgd": {"nll": 0.30}, "swag": {"nll": 0.25}}).startswith("As in the paper")
    assert "(0.3100 vs 0.3000)" in swag_verdict({"sgd": {"nll": 0.30}, "swag": {"nll": 0.31}})
    assert swag_verdict({"sgd": {"nll": 0.30}, "swag": {"nll": 0.31}}).startswith("Unlike the paper")
