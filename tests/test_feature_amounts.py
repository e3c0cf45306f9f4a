"""The feature-amounts VGG family: totals, depths, stable ids, the skew-normal masses."""

import numpy as np
import pytest
from scipy import integrate

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import feature_amounts as fa


@pytest.mark.parametrize("depth, count", [(10, 118), (13, 181), (16, 222), (19, 180)])
def test_every_variant_keeps_the_reference_total_and_depth(depth, count):
    ref = fa.reference_widths(depth)
    variants = fa.enumerate_variants(depth)
    assert len(variants) == count  # VGG-16: "about 200" in the paper
    for v in variants:
        assert len(v.widths) == depth - 1 and v.depth == depth
        assert sum(v.conv_widths) == sum(ref[:-2])
        assert v.widths[-2:] == (512, 512)
        assert min(v.conv_widths) >= fa.MIN_LAYER_FEATURES
    ids = [v.id for v in variants]
    assert len(set(ids)) == len(ids)


def test_reference_widths_are_vgg_d_and_e():
    assert fa.reference_widths(16) == [64, 64, 128, 128, 256, 256, 256] + [512] * 8
    assert fa.reference_widths(19) == [64, 64, 128, 128] + [256] * 4 + [512] * 10
    assert sum(fa.reference_widths(16)[:-2]) == 4224
    with pytest.raises(InvalidOptionError, match="7 \\+ 3k"):
        fa.reference_widths(15)


def test_ids_are_a_pure_function_of_the_parameters():
    for v in fa.enumerate_variants(13):
        assert v.id == fa.variant_id(v.depth, v.mean, v.scale, v.skew)
        assert fa.parse_variant_id(v.id) == (v.depth, v.mean, v.scale, v.skew)
        assert list(v.widths) == fa.variant_widths(v.depth, v.mean, v.scale, v.skew)
    assert fa.variant_id(16, 3, 1.5, -12) == "d16-m3-s1.5-a-12"
    assert fa.variant_id(16) == "d16-ref"
    # the same variant whatever else is listed with it
    assert fa.get_variant("d16-m6-s3-a0") == next(v for v in fa.enumerate_variants(16) if v.id == "d16-m6-s3-a0")


def test_masses_are_the_integrated_skew_normal_density():
    mean, scale, skew = 3.0, 1.5, -12.0

    def pdf(x):
        z = (x - mean) / scale
        from scipy.special import ndtr
        return 2 / scale * np.exp(-z * z / 2) / np.sqrt(2 * np.pi) * ndtr(skew * z)

    masses = fa.layer_masses(13, mean, scale, skew)
    expected = [integrate.quad(pdf, i, i + 1)[0] for i in range(13)]
    np.testing.assert_allclose(masses, expected, atol=1e-10)


def test_skew_moves_features_early_or_late():
    variants = fa.enumerate_variants(16)
    early = min(variants, key=lambda v: -v.early_fraction)
    late = min(variants, key=lambda v: v.early_fraction)
    assert early.skew > 0 and early.mean <= 1 and early.early_fraction > 0.75
    assert late.skew < 0 and late.mean >= 12 and late.early_fraction < 0.25
    assert early.conv_widths[0] > early.conv_widths[-1] and late.conv_widths[0] < late.conv_widths[-1]
    # a symmetric density centred on the middle of the 13 layers keeps half in each half
    mid = fa.variant_widths(16, 6.5, 2.0, 0.0)
    assert np.abs(np.subtract(mid[:13], mid[:13][::-1])).max() <= 1  # symmetric up to rounding
    assert fa.early_fraction(mid[:13]) == pytest.approx(0.5, abs=0.001)


def test_apportion_is_exact_and_respects_minimum():
    assert fa.apportion([1, 1, 1], 10) == [4, 3, 3]
    assert fa.apportion([0.0, 1.0, 0.0], 5, minimum=1) == [1, 3, 1]
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = rng.random(9)
        total = int(rng.integers(9, 5000))
        out = fa.apportion(p, total, minimum=1)
        assert sum(out) == total and min(out) >= 1
        assert np.all(np.abs(np.array(out) - p / p.sum() * total) < 1 + 1e-9) or min(out) == 1


def test_width_scale_keeps_the_scaled_total_and_the_set():
    full = fa.enumerate_variants(10)
    narrow = fa.enumerate_variants(10, 1 / 8)
    assert [v.id for v in full] == [v.id for v in narrow]
    ref = fa.reference_widths(10, 1 / 8)
    assert ref == [8, 8, 16, 16, 32, 64, 64, 64, 64]
    for v in narrow:
        assert sum(v.conv_widths) == sum(ref[:-2]) == 208 and min(v.widths) >= 1


def test_unknown_ids_and_truncated_densities_give_errors():
    with pytest.raises(InvalidOptionError, match="not a variant id"):
        fa.parse_variant_id("vgg16")
    with pytest.raises(InvalidOptionError, match="not one of the 222 variants of depth 16"):
        fa.get_variant("d16-m0-s0.5-a-40")
    with pytest.raises(InvalidOptionError, match="outside the conv layers"):
        fa.variant_widths(16, 0.0, 0.5, -40.0)


def test_select_spread_covers_early_and_late():
    variants = fa.enumerate_variants(10, include_reference=True)
    picked = fa.select_spread(variants, 6)
    assert len(picked) == 6 and picked[0].id == "d10-ref"
    fractions = [v.early_fraction for v in picked[1:]]
    assert fractions == sorted(fractions) and fractions[0] < 0.2 and fractions[-1] > 0.8


def test_build_variant_has_the_widths_and_selected_init():
    import keras

    v = fa.get_variant("d10-m2-s2.5-a4", 1 / 16)
    model = fa.build_variant(v, 10, (32, 32, 1), seed=0)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert [l.filters for l in convs] == list(v.conv_widths)
    assert [l.units for l in dense] == [32, 32, 10]
    assert model.output.shape[-1] == 10
    uni = fa.build_variant(v, 10, (32, 32, 1), seed=0, init="xavier-uniform")
    k = np.asarray([l for l in uni.layers if isinstance(l, keras.layers.Dense)][0].kernel.numpy())
    bound = np.sqrt(6 / (k.shape[0] + k.shape[1]))
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.8 * bound
    with pytest.raises(InvalidOptionError):
        fa.build_variant(v, init="orthogonal")
