"""The feature-amounts VGG families: the release's grid, conv-only totals, ids, the skew-normal masses."""

import hashlib

import numpy as np
import pytest
from scipy import integrate

from tfbdl.errors import InvalidOptionError
from tfbdl.nn import feature_amounts as fa

# Reference numbers from running the release's lib/Models/skew_normal_models.py
# (github.com/MrtnMndt/Rethinking_CNN_Layerwise_Feature_Amounts, SkewNormalModels(depth=d).get_valid_models(),
# numpy 1.26): the number of valid models and the sha256 of their list, one line per model in its order,
# "<mean> <variance> <skew>: <filters...>" (%g numbers).
RELEASE_FAMILY = {
    10: (153, "72b6fbdfa77f2922c55e6824d1b4c663ae2336d818268708574cd86b3bef2052"),
    13: (194, "7b88a021889d14771431424e25620c8e459b769248cd49818de83a8e7c74c15e"),
    16: (193, "0a4761476c9a445e7e9d1384f938f878c06079f3b4437136d504d966dc02c890"),
    19: (139, "81ef36c7e911ab851ccb130ae9b335851e56d3a7d100138832a73f474f35984a"),
}
# Some of those models in full: (depth, position in the list, mean, variance, skew, filters).
RELEASE_MODELS = [
    (16, 0, 0.0, 4.0, 8.0, "823 961 852 708 552 405 279 181 110 63 34 17 9 4 2"),
    (16, 50, 1.0, 4.5, 28.0, "56 855 871 789 681 560 438 326 231 156 101 62 36 20 11"),
    (16, 96, 7.0, 3.5, 0.0, "107 173 260 359 458 539 585 585 540 459 360 261 174 107 61"),
    (16, 150, 14.0, 5.5, -40.0, "38 58 85 123 170 229 298 375 457 539 615 679 726 712 42"),
    (16, 192, 15.0, 5.5, -12.0, "24 38 58 85 123 170 229 298 375 457 539 615 679 724 617"),
    (19, 0, 0.0, 5.0, 8.0, "782 971 910 808 689 564 445 336 245 171 115 74 46 28 16 9 5 3"),
    (19, 69, 9.0, 3.0, 0.0, "16 39 84 162 280 436 606 756 844 845 757 608 437 282 163 84 39 17"),
    (19, 138, 18.0, 5.5, -12.0, "6 11 18 30 47 72 106 152 212 285 370 467 569 671 765 845 900 767"),
    (10, 152, 9.0, 4.0, -24.0, "56 92 143 207 282 362 436 494 493"),
]


@pytest.mark.parametrize("depth", sorted(RELEASE_FAMILY))
def test_default_family_is_the_releases(depth):
    count, digest = RELEASE_FAMILY[depth]
    variants = fa.enumerate_variants(depth)
    assert len(variants) == count
    text = "\n".join(f"{v.mean:g} {v.scale:g} {v.skew:g}: {' '.join(map(str, v.widths))}" for v in variants)
    assert hashlib.sha256(text.encode()).hexdigest() == digest
    assert all(v.family == "release" for v in variants)


@pytest.mark.parametrize("depth, index, mean, scale, skew, widths", RELEASE_MODELS)
def test_release_models_in_full(depth, index, mean, scale, skew, widths):
    expected = tuple(int(w) for w in widths.split())
    v = fa.enumerate_variants(depth)[index]
    assert (v.mean, v.scale, v.skew, v.widths) == (mean, scale, skew, expected)
    assert tuple(fa.variant_widths(depth, mean, scale, skew)) == expected
    assert fa.get_variant(fa.variant_id(depth, mean, scale, skew)) == v


def test_last_vgg_d_variant_spreads_into_the_classifier():
    v = fa.enumerate_variants(16)[-1]
    assert v.id == "d16-m15-s5.5-a-12"
    assert v.widths == (24, 38, 58, 85, 123, 170, 229, 298, 375, 457, 539, 615, 679, 724, 617)
    assert v.conv_widths == v.widths[:13]


@pytest.mark.parametrize("depth", [10, 13, 16, 19])
def test_release_family_invariants(depth):
    ref = fa.reference_widths(depth)
    total = sum(ref)  # the budget includes the two 512-unit classifier layers: 5248 for VGG-D
    assert total == {10: 2688, 13: 3968, 16: 5248, 19: 6528}[depth]
    for v in fa.enumerate_variants(depth):
        assert len(v.widths) == depth - 1 and v.depth == depth
        assert min(v.widths) >= fa.MIN_LAYER_FEATURES
        # ceil(mass * total) with masses summing to more than 0.95 (and at most ~0.99: each layer's
        # trapezoid covers [i, i + 0.99]) keeps more than 95% of the budget and never exceeds it
        assert 0.95 * total < sum(v.widths) <= total
        masses = fa.sampled_layer_masses(depth - 1, v.mean, v.scale, v.skew)
        assert masses.sum() > fa.MIN_AREA
        assert list(v.widths) == np.ceil(masses * total).astype(int).tolist()
    ids = [v.id for v in fa.enumerate_variants(depth)]
    assert len(set(ids)) == len(ids)


def test_release_rejections():
    # truncated: the density's mass inside the 15 layers is at most 95%
    assert not fa.sampled_layer_masses(15, 0.0, 0.5, -40.0).sum() > fa.MIN_AREA
    with pytest.raises(InvalidOptionError, match="outside the layers"):
        fa.variant_widths(16, 0.0, 0.5, -40.0)
    # untruncated but a layer would get fewer than 2 features
    assert fa.sampled_layer_masses(15, 7.0, 1.5, 0.0).sum() > fa.MIN_AREA
    assert fa.variant_widths(16, 7.0, 1.5, 0.0) == [1, 3, 18, 98, 354, 836, 1285, 1288, 841, 358, 99, 18, 3, 1, 1]
    assert "d16-m7-s1.5-a0" not in {v.id for v in fa.enumerate_variants(16)}
    with pytest.raises(InvalidOptionError, match="not one of the 193 release variants of depth 16"):
        fa.get_variant("d16-m7-s1.5-a0")
    assert "d16-m7-s2-a0" in {v.id for v in fa.enumerate_variants(16)}  # its smallest layers get exactly 2
    assert min(fa.variant_widths(16, 7.0, 2.0, 0.0)) == 2


def test_sampled_masses_are_the_trapezoid_over_each_layers_samples():
    mean, scale, skew = 3.0, 1.5, -12.0
    masses = fa.sampled_layer_masses(9, mean, scale, skew)
    for i in (0, 2, 5):
        x = i + 0.01 * np.arange(100)
        np.testing.assert_allclose(masses[i], integrate.trapezoid(fa.skewnorm_pdf(x, mean, scale, skew), x),
                                   rtol=1e-12)
    # an untruncated density: about 99% of it (each layer's last 0.01 is not covered)
    assert fa.sampled_layer_masses(15, 7.0, 2.0, 0.0).sum() == pytest.approx(0.99, abs=2e-3)


@pytest.mark.parametrize("depth, count", [(10, 118), (13, 181), (16, 222), (19, 180)])
def test_conv_only_family_keeps_the_reference_conv_total(depth, count):
    ref = fa.reference_widths(depth)
    variants = fa.enumerate_variants(depth, family="conv-only")
    assert len(variants) == count
    for v in variants:
        assert len(v.widths) == depth - 1 and v.depth == depth and v.family == "conv-only"
        assert sum(v.conv_widths) == sum(ref[:-2])
        assert v.widths[-2:] == (512, 512)
        assert min(v.conv_widths) >= fa.MIN_LAYER_FEATURES
        assert v.id.startswith(f"d{depth}-conv-m")
    ids = [v.id for v in variants]
    assert len(set(ids)) == len(ids)


def test_reference_widths_are_vgg_d_and_e():
    assert fa.reference_widths(16) == [64, 64, 128, 128, 256, 256, 256] + [512] * 8
    assert fa.reference_widths(19) == [64, 64, 128, 128] + [256] * 4 + [512] * 10
    assert sum(fa.reference_widths(16)[:-2]) == 4224
    with pytest.raises(InvalidOptionError, match="7 \\+ 3k"):
        fa.reference_widths(15)


@pytest.mark.parametrize("family", fa.FAMILIES)
def test_ids_are_a_pure_function_of_the_parameters(family):
    for v in fa.enumerate_variants(13, family=family):
        assert v.id == fa.variant_id(v.depth, v.mean, v.scale, v.skew, family)
        assert fa.parse_variant_id(v.id) == (v.depth, v.mean, v.scale, v.skew, family)
        assert list(v.widths) == fa.variant_widths(v.depth, v.mean, v.scale, v.skew, family=family)
        assert fa.get_variant(v.id) == v
    # the same variant whatever else is listed with it
    vid = fa.variant_id(16, 6, 3, 0, family)
    assert fa.get_variant(vid) == next(v for v in fa.enumerate_variants(16, family=family) if v.id == vid)


def test_id_format():
    assert fa.variant_id(16, 3, 1.5, -12) == "d16-m3-s1.5-a-12"
    assert fa.variant_id(16, 3, 1.5, -12, "conv-only") == "d16-conv-m3-s1.5-a-12"
    assert fa.variant_id(16) == "d16-ref"
    assert fa.parse_variant_id("d16-ref") == (16, None, None, None, "release")
    # the same parameters give different widths in the two families
    assert fa.get_variant("d16-m6-s3-a0").widths != fa.get_variant("d16-conv-m6-s3-a0").widths
    with pytest.raises(InvalidOptionError, match="--family"):
        fa.enumerate_variants(16, family="paper")


def test_masses_are_the_integrated_skew_normal_density():
    mean, scale, skew = 3.0, 1.5, -12.0

    def pdf(x):
        z = (x - mean) / scale
        from scipy.special import ndtr
        return 2 / scale * np.exp(-z * z / 2) / np.sqrt(2 * np.pi) * ndtr(skew * z)

    masses = fa.layer_masses(13, mean, scale, skew)
    expected = [integrate.quad(pdf, i, i + 1)[0] for i in range(13)]
    np.testing.assert_allclose(masses, expected, atol=1e-10)


@pytest.mark.parametrize("family", fa.FAMILIES)
def test_skew_moves_features_early_or_late(family):
    variants = fa.enumerate_variants(16, family=family)
    early = min(variants, key=lambda v: -v.early_fraction)
    late = min(variants, key=lambda v: v.early_fraction)
    assert early.skew > 0 and early.mean <= 1 and early.early_fraction > 0.75
    assert late.skew < 0 and late.mean >= 12 and late.early_fraction < 0.25
    assert early.conv_widths[0] > early.conv_widths[-1] and late.conv_widths[0] < late.conv_widths[-1]


def test_symmetric_profiles_are_symmetric():
    # release: skew 0 centred at x = 7, between layer 6 ([6, 6.99]) and layer 7 ([7, 7.99]), so layers
    # 0..13 mirror each other (up to ceil) and layer 14 is left over
    mid = fa.variant_widths(16, 7.0, 3.5, 0.0)
    assert np.abs(np.subtract(mid[:14], mid[:14][::-1])).max() <= 1 and mid[14] < mid[0]
    # conv-only: centred on the middle of the 13 conv layers keeps half in each half
    mid = fa.variant_widths(16, 6.5, 2.0, 0.0, family="conv-only")
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


def test_width_scale_scales_every_layer_and_keeps_the_set():
    full = fa.enumerate_variants(10)
    narrow = fa.enumerate_variants(10, 1 / 16)
    assert [v.id for v in full] == [v.id for v in narrow]
    for big, small in zip(full, narrow):
        assert list(small.widths) == [max(1, round(w / 16)) for w in big.widths]
    assert narrow[0].widths == (45, 44, 32, 20, 11, 5, 2, 1, 1)  # from 722 708 517 322 172 78 31 10 3


def test_width_scale_keeps_the_scaled_conv_total_in_the_conv_only_family():
    full = fa.enumerate_variants(10, family="conv-only")
    narrow = fa.enumerate_variants(10, 1 / 8, family="conv-only")
    assert [v.id for v in full] == [v.id for v in narrow]
    ref = fa.reference_widths(10, 1 / 8)
    assert ref == [8, 8, 16, 16, 32, 64, 64, 64, 64]
    for v in narrow:
        assert sum(v.conv_widths) == sum(ref[:-2]) == 208 and min(v.widths) >= 1


def test_unknown_ids_and_truncated_densities_give_errors():
    with pytest.raises(InvalidOptionError, match="not a variant id"):
        fa.parse_variant_id("vgg16")
    with pytest.raises(InvalidOptionError, match="not one of the 193 release variants of depth 16"):
        fa.get_variant("d16-m0-s0.5-a-40")
    with pytest.raises(InvalidOptionError, match="not one of the 222 conv-only variants of depth 16"):
        fa.get_variant("d16-conv-m0-s0.5-a-40")
    with pytest.raises(InvalidOptionError, match="outside the conv layers"):
        fa.variant_widths(16, 0.0, 0.5, -40.0, family="conv-only")


@pytest.mark.parametrize("family", fa.FAMILIES)
def test_select_spread_covers_early_and_late(family):
    variants = fa.enumerate_variants(10, include_reference=True, family=family)
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
    assert [l.units for l in dense] == [*v.widths[-2:], 10] and v.widths[-2:] != (32, 32)  # the variant's own
    assert model.output.shape[-1] == 10
    conv_only = fa.build_variant(fa.get_variant("d10-conv-m2-s2.5-a4", 1 / 16), 10, (32, 32, 1), seed=0)
    assert [l.units for l in conv_only.layers if isinstance(l, keras.layers.Dense)] == [32, 32, 10]
    uni = fa.build_variant(v, 10, (32, 32, 1), seed=0, init="xavier-uniform")
    k = np.asarray([l for l in uni.layers if isinstance(l, keras.layers.Dense)][0].kernel.numpy())
    bound = np.sqrt(6 / (k.shape[0] + k.shape[1]))
    assert np.abs(k).max() <= bound and np.abs(k).max() > 0.8 * bound
    with pytest.raises(InvalidOptionError):
        fa.build_variant(v, init="orthogonal")
