"""Tests of tfbdl.data.corruptions: the 19 CIFAR-10-C corruptions, corrupt() and make_corrupted_set().

Real grey images come from the embedded Fashion-MNIST subset (28x28x1); colour paths use a
synthetic 32x32x3 batch (colour gradients with discs and rectangles). Frost reads small
synthetic textures written once per session.
"""

import colorsys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tfbdl.data import corruptions as C
from tfbdl.data import load_embedded
from tfbdl.errors import DataFormatError, DatasetNotFound, InvalidOptionError, ShapeError

NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "defocus_blur",
         "glass_blur", "motion_blur", "zoom_blur", "snow", "frost", "fog", "spatter", "brightness", "contrast",
         "saturate", "elastic_transform", "pixelate", "jpeg_compression")
DETERMINISTIC = {"gaussian_blur", "defocus_blur", "zoom_blur", "brightness", "contrast", "saturate", "pixelate",
                 "jpeg_compression"}
RANDOM = [name for name in NAMES if name not in DETERMINISTIC]

# Steps (k, k + 1) where the change to the image need not grow because the reference's
# per-severity parameters are not monotone (see the module docstring); "all" = every step.
NOT_MONOTONE = {
    "saturate": "all",  # severities 1-2 desaturate, 3-5 oversaturate
    "glass_blur": "all",  # sigma drops at severity 4 while the passes double; 1-2 differ by a tiny blur
    "elastic_transform": "all",  # the affine part shrinks while the elastic part grows
    "frost": {(3, 4), (4, 5)},  # the image weight falls while the frost weight rises
    "spatter": {(3, 4)},  # water at severities 1-3, mud at 4-5
    "pixelate": {(2, 3)},  # 28 vs 27 px on 32x32 images: the box-resampling error depends on edge phase
}
PSNR_TOLERANCE_DB = 0.1  # motion_blur 3 and 4 are the same blur; pixelate's resampling phase


def _colour_batch(n=64, size=32, seed=0):
    """Colour gradients with discs and rectangles, of moderate saturation like photographs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = np.empty((n, size, size, 3))

    def muted(colour):
        return 0.5 * colour + 0.5 * colour.mean()

    for i in range(n):
        base, slopes = muted(rng.uniform(0.1, 0.9, 3)), rng.uniform(-0.3, 0.3, (2, 3))
        image = np.clip(base + xx[..., None] * slopes[0] + yy[..., None] * slopes[1], 0, 1)
        for _ in range(3):
            colour = muted(rng.uniform(0, 1, 3))
            if rng.random() < 0.5:
                top, left = rng.integers(0, size - 8, 2)
                height, width = rng.integers(5, 14, 2)
                image[top:top + height, left:left + width] = colour
            else:
                cy, cx = rng.uniform(6, size - 6, 2)
                image[(yy * (size - 1) - cy) ** 2 + (xx * (size - 1) - cx) ** 2 <= rng.uniform(3, 8) ** 2] = colour
        out[i] = image
    return np.rint(out * 255).astype(np.uint8)


GREY = load_embedded("fashion_mnist", "test")[0][:48]
COLOUR = _colour_batch()
BATCHES = {"grey": GREY, "colour": COLOUR}


def _write_textures(folder, size=(210, 230), seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in C.FROST_FILES:
        blocks = rng.random((size[0] // 5 + 1, size[1] // 5 + 1))
        grey = np.kron(blocks, np.ones((5, 5)))[:size[0], :size[1]]
        texture = np.clip(80 + 170 * grey[..., None] * np.array([0.85, 0.93, 1.0]), 0, 255).astype(np.uint8)
        Image.fromarray(texture).save(folder / name)
    return folder


@pytest.fixture(scope="session")
def frost_dir(tmp_path_factory):
    return _write_textures(tmp_path_factory.mktemp("frost"))


@pytest.fixture(autouse=True)
def _frost_env(monkeypatch, frost_dir):
    monkeypatch.setenv(C.FROST_DIR_ENV, str(frost_dir))


@pytest.fixture(scope="module")
def outputs(frost_dir):
    """{(name, kind): [output at severity 1..5]} with one seed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(C.FROST_DIR_ENV, str(frost_dir))
        return {(name, kind): [C.corrupt(images, name, s, seed=3) for s in C.SEVERITIES]
                for name in NAMES for kind, images in BATCHES.items()}


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# ----------------------------------------------------------------------------- registry and shapes


def test_registry_holds_the_19_corruptions():
    assert set(C.CORRUPTIONS) == set(NAMES) and len(C.CORRUPTIONS) == 19
    assert list(C.CORRUPTIONS)[:15][-1] == "jpeg_compression"  # the 15 benchmark ones come first


@pytest.mark.parametrize("kind", ["grey", "colour"])
@pytest.mark.parametrize("severity", [1, 5])
@pytest.mark.parametrize("name", NAMES)
def test_keeps_shape_dtype_and_changes_the_image(outputs, name, severity, kind):
    images = BATCHES[kind]
    out = outputs[name, kind][severity - 1]
    assert out.shape == images.shape and out.dtype == np.uint8
    assert 0 <= out.min() and out.max() <= 255
    if name == "saturate" and kind == "grey":
        np.testing.assert_array_equal(out, images)  # documented no-op
    else:
        assert not np.array_equal(out, images)


@pytest.mark.parametrize("name", NAMES)
def test_input_is_not_modified(name):
    images = COLOUR[:4].copy()
    C.CORRUPTIONS[name](images, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(images, COLOUR[:4])


@pytest.mark.parametrize("name", ["gaussian_noise", "glass_blur", "motion_blur", "fog", "pixelate"])
def test_non_square_and_empty_batches(name):
    images = np.random.default_rng(0).integers(0, 256, (3, 20, 36, 3), dtype=np.uint8)
    assert C.CORRUPTIONS[name](images, 3, np.random.default_rng(0)).shape == images.shape
    assert C.corrupt(images[:0], name, 3).shape == (0, 20, 36, 3)


# ----------------------------------------------------------------------------- severity


@pytest.mark.parametrize("kind", ["grey", "colour"])
@pytest.mark.parametrize("name", NAMES)
def test_change_grows_with_severity(outputs, name, kind):
    images = BATCHES[kind]
    psnr = [_psnr(out, images) for out in outputs[name, kind]]
    if name == "saturate" and kind == "grey":
        assert psnr == [np.inf] * 5
        return
    if name == "elastic_transform":
        assert psnr[0] < psnr[4], psnr  # documented inversion: severity 1 is a pure affine warp
        return
    assert psnr[0] > psnr[4], psnr
    skipped = NOT_MONOTONE.get(name, set())
    if skipped != "all":
        for k in range(1, 5):
            if (k, k + 1) not in skipped:
                assert psnr[k] <= psnr[k - 1] + PSNR_TOLERANCE_DB, (k, psnr)


def test_elastic_transform_trades_affine_for_local_displacement():
    affine, local = [], []
    for severity in C.SEVERITIES:
        src, dst, dx, dy = C._elastic_fields(np.random.default_rng(0), 200, 32, 32, severity)
        affine.append(np.abs(dst - src).mean())
        local.append(np.sqrt(dx ** 2 + dy ** 2).mean())
    assert all(b < a for a, b in zip(affine, affine[1:])), affine
    assert local[0] == 0 and all(b > a for a, b in zip(local, local[1:])), local


def test_saturate_scales_hsv_saturation():
    images = COLOUR[:4]
    hsv = C._rgb_to_hsv(images / 255.0)
    out = C._rgb_to_hsv(C.saturate(images, 2, np.random.default_rng(0)) / 255.0)
    mask = hsv[..., 2] > 0.2  # quantisation blurs the saturation of dark pixels
    np.testing.assert_allclose(out[..., 1][mask], 0.1 * hsv[..., 1][mask], atol=0.03)


def test_brightness_on_grey_equals_the_replicated_rgb_computation():
    grey = GREY[:4]
    for severity in C.SEVERITIES:
        one = C.brightness(grey, severity, np.random.default_rng(0))
        three = C.brightness(np.repeat(grey, 3, axis=-1), severity, np.random.default_rng(0))
        np.testing.assert_array_equal(np.repeat(one, 3, axis=-1), three)


def test_hsv_conversions_match_colorsys():
    rgb = np.random.default_rng(0).random((200, 3))
    hsv = C._rgb_to_hsv(rgb)
    np.testing.assert_allclose(hsv, [colorsys.rgb_to_hsv(*p) for p in rgb], atol=1e-12)
    np.testing.assert_allclose(C._hsv_to_rgb(hsv), rgb, atol=1e-12)


# ----------------------------------------------------------------------------- approximations


@pytest.mark.parametrize("severity", [1, 5])
def test_motion_blur_is_the_line_kernel_correlation(severity):
    radius, sigma = ((6, 1.0), None, None, None, (9, 2.5))[severity - 1]
    image = GREY[:1]
    angle = np.random.default_rng(7).uniform(-45, 45, size=1)[0]  # motion_blur's first draw
    out = C.motion_blur(image, severity, np.random.default_rng(7))
    kernel = C.line_kernel(radius, sigma, angle)
    expected = ndimage.correlate(image[0, ..., 0] / 255.0, kernel, mode="nearest")
    np.testing.assert_array_equal(out[0, ..., 0], np.rint(np.clip(expected, 0, 1) * 255).astype(np.uint8))


def test_line_kernel_is_one_sided_and_normalised():
    kernel = C.line_kernel(6, 2.0, 0.0)
    centre = kernel.shape[0] // 2
    assert kernel.sum() == pytest.approx(1.0)
    assert kernel[centre, centre:].sum() == pytest.approx(1.0)  # angle 0: along +x from the pixel
    assert np.count_nonzero(kernel) == 13  # ImageMagick width 2 * ceil(6) + 1
    diagonal = C.line_kernel(6, 2.0, 45.0)
    rows, cols = np.nonzero(diagonal)
    assert np.all(rows >= centre) and np.all(cols >= centre)  # +45 deg: towards +x and +y (down)


@pytest.mark.parametrize("factor", [1.0, 1.06, 1.15, 1.75, 2.25, np.arange(1, 1.26, 0.01)[-1]])
def test_clipped_zoom_matches_scipy_zoom(factor):
    x = np.random.default_rng(0).random((2, 28, 32, 3))
    h, w = x.shape[1:3]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = ndimage.zoom(x[:, top:top + ch, left:left + cw], (1, factor, factor, 1), order=1)
    th, tw = (zoomed.shape[1] - h) // 2, (zoomed.shape[2] - w) // 2
    np.testing.assert_array_equal(C._clipped_zoom(x, factor), zoomed[:, th:th + h, tw:tw + w])


def test_affine_warp_of_a_translation_shifts_the_image():
    x = np.random.default_rng(0).random((2, 32, 32, 1))
    src = np.array([[26.0, 26.0], [26.0, 6.0], [6.0, 6.0]])
    out = C._affine_warp(x, src, src[None] + np.array([2.0, 1.0]))  # 2 px right, 1 px down
    np.testing.assert_allclose(out[:, 1:, 2:], x[:, :-1, :-2], atol=1e-12)


def test_plasma_fractal_range_determinism_and_roughness():
    smooth = C._plasma_fractal(np.random.default_rng(0), 16, 32, 3.0)
    rough = C._plasma_fractal(np.random.default_rng(0), 16, 32, 1.75)
    assert smooth.shape == (16, 32, 32) and smooth.min() == 0.0 and smooth.max() == 1.0
    np.testing.assert_array_equal(smooth, C._plasma_fractal(np.random.default_rng(0), 16, 32, 3.0))
    def step(a):
        return np.abs(np.diff(a, axis=2)).mean()
    assert step(rough) > step(smooth)


def test_defocus_disk_kernel():
    kernel = C._disk_kernel(1.5, 0.1)
    assert kernel.shape == (5, 5) and kernel.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(kernel, kernel.T)
    assert C._disk_kernel(0.3, 0.4).shape == (3, 3)  # a single pixel, anti-aliased


def test_equalize_hist_spreads_levels_and_keeps_constant_images():
    ramp = np.tile(np.arange(10, 74, dtype=np.uint8), (64, 1))[None]
    out = C._equalize_hist(np.concatenate([ramp, np.full_like(ramp, 7)]))
    assert out[0].min() == 0 and out[0].max() == 255
    assert np.all(out[1] == 7)


def test_canny_finds_the_border_of_a_square():
    image = np.zeros((1, 16, 16))
    image[0, 4:12, 4:12] = 200.0
    edges = C._canny(image, 50, 150)[0]
    assert edges[4:12, 3:5].any() and edges[4:12, 11:13].any()
    assert not edges[7:9, 7:9].any() and not edges[:2].any()


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(name):
    for images in (GREY[:6], COLOUR[:6]):
        np.testing.assert_array_equal(C.corrupt(images, name, 3, seed=11), C.corrupt(images, name, 3, seed=11))
        a = C.CORRUPTIONS[name](images, 3, np.random.default_rng(5))
        np.testing.assert_array_equal(a, C.CORRUPTIONS[name](images, 3, np.random.default_rng(5)))


@pytest.mark.parametrize("name", RANDOM)
def test_different_seed_different_output(name):
    assert not np.array_equal(C.corrupt(COLOUR[:6], name, 3, seed=1), C.corrupt(COLOUR[:6], name, 3, seed=2))


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_corruptions_ignore_the_seed(name):
    np.testing.assert_array_equal(C.corrupt(COLOUR[:4], name, 3, seed=1), C.corrupt(COLOUR[:4], name, 3, seed=2))


def test_corrupt_seeds_each_block_separately(monkeypatch):
    monkeypatch.setattr(C, "CHUNK", 4)
    out = C.corrupt(GREY[:10], "gaussian_noise", 2, seed=9)
    blocks = [C.gaussian_noise(GREY[start:min(start + 4, 10)], 2, C._block_rng(9, "gaussian_noise", 2, block))
              for block, start in enumerate(range(0, 10, 4))]
    np.testing.assert_array_equal(out, np.concatenate(blocks))


# ----------------------------------------------------------------------------- errors


def test_unknown_name_is_named():
    with pytest.raises(InvalidOptionError, match="unknown corruption 'gaussian'.*gaussian_noise"):
        C.corrupt(GREY[:2], "gaussian", 1)


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, "3", True, None])
def test_bad_severity(severity):
    with pytest.raises(InvalidOptionError, match="severity must be an integer in 1..5"):
        C.corrupt(GREY[:2], "contrast", severity)
    with pytest.raises(InvalidOptionError, match="severity"):
        C.contrast(GREY[:2], severity, np.random.default_rng(0))


@pytest.mark.parametrize("images", [GREY[:2].astype(np.float32) / 255, GREY[:2].astype(np.int16), GREY[:2].tolist()])
def test_bad_dtype(images):
    with pytest.raises(InvalidOptionError, match="uint8"):
        C.corrupt(images, "contrast", 1)


@pytest.mark.parametrize("shape", [(28, 28, 1), (2, 28, 28), (2, 28, 28, 2), (2, 28, 28, 4), (2, 4, 28, 1)])
def test_bad_shape(shape):
    with pytest.raises(ShapeError):
        C.corrupt(np.zeros(shape, dtype=np.uint8), "contrast", 1)


def test_bad_seed_and_rng():
    with pytest.raises(InvalidOptionError, match="seed"):
        C.corrupt(GREY[:2], "contrast", 1, seed=-1)
    with pytest.raises(InvalidOptionError, match="Generator"):
        C.gaussian_noise(GREY[:2], 1, 0)


def test_frost_without_textures_names_the_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(C.FROST_DIR_ENV)
    with pytest.raises(DatasetNotFound, match=C.FROST_DIR_ENV):
        C.frost(GREY[:2], 1, np.random.default_rng(0))
    empty = tmp_path / "no-frost-here"
    empty.mkdir()
    with pytest.raises(DatasetNotFound, match="no-frost-here.*frost1.png.*hendrycks/robustness"):
        C.frost(GREY[:2], 1, np.random.default_rng(0), texture_dir=empty)
    monkeypatch.setenv(C.FROST_DIR_ENV, str(empty))
    with pytest.raises(DatasetNotFound, match="no-frost-here"):
        C.corrupt(COLOUR[:2], "frost", 1)


def test_frost_reads_texture_dir_and_rejects_small_textures(tmp_path, frost_dir):
    images = COLOUR[:3]
    from_env = C.frost(images, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(from_env, C.frost(images, 4, np.random.default_rng(0), texture_dir=frost_dir))
    small = _write_textures(tmp_path / "small", size=(100, 100))  # 20x20 after the 0.2 scaling
    with pytest.raises(DataFormatError, match="not larger than the 32x32 images"):
        C.frost(images, 1, np.random.default_rng(0), texture_dir=small)


# ----------------------------------------------------------------------------- make_corrupted_set


def test_make_corrupted_set_writes_resumes_and_recomputes_missing(tmp_path, capsys):
    images, labels = GREY[:6], np.arange(6) % 3
    names = ["gaussian_noise", "contrast", "frost"]
    out = tmp_path / "cifar10c"
    paths = C.make_corrupted_set(images, labels, out, names=names, seed=4, progress=True)
    assert "corruptions:" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.npz" for n in names)  # no temp files left
    for name in names:
        with np.load(paths[name]) as archive:
            assert {f"severity_{s}" for s in C.SEVERITIES} | {"labels", "seed", "source_sha256"} == set(archive.files)
            assert str(archive["source_sha256"]) == C.images_fingerprint(images)
            np.testing.assert_array_equal(archive["labels"], labels)
            for s in C.SEVERITIES:
                np.testing.assert_array_equal(archive[f"severity_{s}"], C.corrupt(images, name, s, seed=4))
    mtimes = {name: paths[name].stat().st_mtime_ns for name in names}

    def boom(*args, **kwargs):
        raise AssertionError("recomputed a complete file")

    with pytest.MonkeyPatch.context() as patch:
        for name in names:
            patch.setitem(C.CORRUPTIONS, name, boom)
        C.make_corrupted_set(images, labels, out, names=names, seed=4, progress=False)
    assert {name: paths[name].stat().st_mtime_ns for name in names} == mtimes

    before = np.load(paths["contrast"])["severity_3"]
    paths["contrast"].unlink()
    C.make_corrupted_set(images, labels, out, names=names, seed=4, progress=False)
    assert paths["gaussian_noise"].stat().st_mtime_ns == mtimes["gaussian_noise"]
    assert paths["frost"].stat().st_mtime_ns == mtimes["frost"]
    np.testing.assert_array_equal(np.load(paths["contrast"])["severity_3"], before)

    C.make_corrupted_set(images, labels, out, names=["gaussian_noise"], seed=5, progress=False)
    assert paths["gaussian_noise"].stat().st_mtime_ns != mtimes["gaussian_noise"]  # another seed: redone
    with np.load(paths["gaussian_noise"]) as archive:
        assert int(archive["seed"]) == 5


def test_make_corrupted_set_checks_before_writing(tmp_path, monkeypatch):
    images, labels = GREY[:4], np.zeros(4, dtype=np.int64)
    out = tmp_path / "out"
    with pytest.raises(ShapeError, match="labels"):
        C.make_corrupted_set(images, labels[:3], out)
    with pytest.raises(InvalidOptionError, match="unknown corruption"):
        C.make_corrupted_set(images, labels, out, names=["contrast", "fogg"])
    with pytest.raises(InvalidOptionError, match="severity"):
        C.make_corrupted_set(images, labels, out, names=["contrast"], severities=(1, 7))
    monkeypatch.delenv(C.FROST_DIR_ENV)
    with pytest.raises(DatasetNotFound, match="frost"):
        C.make_corrupted_set(images, labels, out, names=["contrast", "frost"], progress=False)
    assert not out.exists() or not any(out.iterdir())


def test_make_corrupted_set_defaults_to_all_19_and_redoes_a_damaged_file(tmp_path):
    images, labels = GREY[:3], np.array([1, 2, 3])
    paths = C.make_corrupted_set(images, labels, tmp_path, severities=(1, 5), progress=False)
    assert list(paths) == list(C.CORRUPTIONS)
    for path in paths.values():
        with np.load(path) as archive:
            assert set(archive.files) == {"severity_1", "severity_5", "labels", "seed", "source_sha256"}
            assert archive["severity_5"].shape == images.shape
    paths["fog"].write_bytes(b"not a zip file")
    C.make_corrupted_set(images, labels, tmp_path, names=["fog"], severities=(1, 5), progress=False)
    with np.load(paths["fog"]) as archive:
        np.testing.assert_array_equal(archive["severity_5"], C.corrupt(images, "fog", 5, seed=0))


def test_informative_corruptions_skip_frost_without_textures_and_saturate_on_grey(tmp_path):
    grey, grey_skipped = C.informative_corruptions(1)
    assert grey_skipped == ["frost", "saturate"] and len(grey) == 17
    colour, colour_skipped = C.informative_corruptions(3, texture_dir=tmp_path)
    assert colour_skipped == [] and colour == list(C.CORRUPTIONS)
    # Saturate really leaves a grey image unchanged, which is why it is skipped there.
    image = np.random.default_rng(0).integers(0, 256, size=(2, 12, 12, 1), dtype=np.uint8)
    np.testing.assert_array_equal(C.corrupt(image, "saturate", 5), image)


# ----------------------------------------------------------------------------- the generator, pixel for pixel
# Oracles: the formulas of make_cifar_c.py (hendrycks/robustness) written out per image in plain
# numpy / scipy / Pillow, without the module's helpers; each result is stored as the generator
# stores it, np.uint8(...) of the float in [0, 255] (truncation).


def _oracle_images():
    rng = np.random.default_rng(2024)
    noise = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    blocks = np.kron(rng.integers(0, 256, (2, 4, 4, 3)), np.ones((1, 8, 8, 1))).astype(np.uint8)
    blocks[1, :12] = 255  # flat white and black areas: the values on which truncation is fragile
    blocks[1, 20:] = 0
    return np.concatenate([noise, blocks, COLOUR[:3]])


ORACLE_RGB = _oracle_images()
ORACLE_GREY = np.concatenate([GREY[:3], ORACLE_RGB[:3, :28, :28, :1], ORACLE_RGB[4:5, 2:30, 2:30, :1]])


def _store(x):
    return np.uint8(x)


def _sk_rgb2hsv(arr):
    out = np.empty_like(arr)
    out_v = arr.max(-1)
    delta = np.ptp(arr, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_s = delta / out_v
        out_s[delta == 0.] = 0.
        idx = arr[:, :, 0] == out_v
        out[idx, 0] = (arr[idx, 1] - arr[idx, 2]) / delta[idx]
        idx = arr[:, :, 1] == out_v
        out[idx, 0] = 2. + (arr[idx, 2] - arr[idx, 0]) / delta[idx]
        idx = arr[:, :, 2] == out_v
        out[idx, 0] = 4. + (arr[idx, 0] - arr[idx, 1]) / delta[idx]
    out_h = (out[:, :, 0] / 6.) % 1.
    out_h[delta == 0.] = 0.
    out[:, :, 0], out[:, :, 1], out[:, :, 2] = out_h, out_s, out_v
    out[np.isnan(out)] = 0
    return out


def _sk_hsv2rgb(arr):
    hi = np.floor(arr[:, :, 0] * 6)
    f = arr[:, :, 0] * 6 - hi
    p = arr[:, :, 2] * (1 - arr[:, :, 1])
    q = arr[:, :, 2] * (1 - f * arr[:, :, 1])
    t = arr[:, :, 2] * (1 - (1 - f) * arr[:, :, 1])
    v = arr[:, :, 2]
    hi = np.dstack([hi, hi, hi]).astype(np.uint8) % 6
    return np.choose(hi, [np.dstack((v, t, p)), np.dstack((q, v, p)), np.dstack((p, v, t)),
                          np.dstack((p, q, v)), np.dstack((t, p, v)), np.dstack((v, p, q))])


def _oracle_contrast(img, severity):
    c = [.75, .5, .4, .3, 0.15][severity - 1]
    x = np.array(img) / 255.
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return _store(np.clip((x - means) * c + means, 0, 1) * 255)


def _oracle_brightness(img, severity):
    c = [.05, .1, .15, .2, .3][severity - 1]
    grey = img.shape[-1] == 1
    x = np.array(np.repeat(img, 3, axis=-1) if grey else img) / 255.
    x = _sk_rgb2hsv(x)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    x = _sk_hsv2rgb(x)
    out = _store(np.clip(x, 0, 1) * 255)
    return out[..., :1] if grey else out


def _oracle_saturate(img, severity):
    c = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
    x = _sk_rgb2hsv(np.array(img) / 255.)
    x[:, :, 1] = np.clip(x[:, :, 1] * c[0] + c[1], 0, 1)
    return _store(np.clip(_sk_hsv2rgb(x), 0, 1) * 255)


def _oracle_gaussian_blur(img, severity):
    c = [.4, .6, 0.7, .8, 1][severity - 1]
    # skimage.filters.gaussian(multichannel=True): scipy's gaussian_filter, sigma 0 on the channels
    x = ndimage.gaussian_filter(np.array(img) / 255., (c, c, 0), mode="nearest", truncate=4.0)
    return _store(np.clip(x, 0, 1) * 255)


def _cv2_gaussian_kernel_f32(n, sigma):
    """cv2.getGaussianKernel(n, sigma, CV_32F): float taps summed in double, scaled by 1 / sum."""
    cf = [np.float32(np.exp(-0.5 / (sigma * sigma) * (i - (n - 1) * 0.5) ** 2)) for i in range(n)]
    total = 1.0 / sum(float(v) for v in cf)
    return [np.float32(float(v) * total) for v in cf]


def _oracle_disk(radius, alias_blur):
    L = np.arange(-8, 8 + 1)
    X, Y = np.meshgrid(L, L)
    d = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=np.float32)
    d /= np.sum(d)
    k1, k0, _ = _cv2_gaussian_kernel_f32(3, alias_blur)
    # cv2.GaussianBlur(ksize=(3, 3)) on float32: rows then columns, centre*k0 + (left+right)*k1, reflect-101
    rows = np.pad(d, ((0, 0), (1, 1)), mode="reflect")
    d = rows[:, 1:-1] * k0 + (rows[:, :-2] + rows[:, 2:]) * k1
    cols = np.pad(d, ((1, 1), (0, 0)), mode="reflect")
    return cols[1:-1] * k0 + (cols[:-2] + cols[2:]) * k1


def _oracle_defocus_blur(img, severity):
    c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    x = np.array(img) / 255.
    kernel = _oracle_disk(c[0], c[1]).astype(np.float64)
    # cv2.filter2D(float64, -1, kernel): correlation, BORDER_REFLECT_101
    channels = [ndimage.correlate(x[:, :, d], kernel, mode="mirror") for d in range(x.shape[-1])]
    return _store(np.clip(np.stack(channels, axis=-1), 0, 1) * 255)


def _oracle_clipped_zoom(img, zoom_factor):
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top:trim_top + h, trim_top:trim_top + h]


def _oracle_zoom_blur(img, severity, factors=None):
    c = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
         np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)][severity - 1] if factors is None else factors
    x = (np.array(img) / 255.).astype(np.float32)
    out = np.zeros_like(x)
    for zoom_factor in c:
        out += _oracle_clipped_zoom(x, zoom_factor)
    x = (x + out) / (len(c) + 1)
    return _store(np.clip(x, 0, 1) * 255)


def _pil(img):
    return Image.fromarray(img[..., 0], mode="L") if img.shape[-1] == 1 else Image.fromarray(img)


def _back(pil, img):
    out = np.uint8(np.asarray(pil))
    return out[..., None] if img.shape[-1] == 1 else out


def _oracle_pixelate(img, severity):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = img.shape[:2]
    x = _pil(img).resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)
    return _back(x, img)


def _oracle_jpeg_compression(img, severity):
    import io

    c = [80, 65, 58, 50, 40][severity - 1]
    output = io.BytesIO()
    _pil(img).save(output, "JPEG", quality=c)
    return _back(Image.open(output), img)


ORACLES = {"contrast": _oracle_contrast, "brightness": _oracle_brightness, "saturate": _oracle_saturate,
           "pixelate": _oracle_pixelate, "jpeg_compression": _oracle_jpeg_compression,
           "gaussian_blur": _oracle_gaussian_blur, "defocus_blur": _oracle_defocus_blur,
           "zoom_blur": _oracle_zoom_blur}


def test_oracles_cover_the_deterministic_corruptions():
    assert set(ORACLES) == DETERMINISTIC


@pytest.mark.parametrize("severity", C.SEVERITIES)
@pytest.mark.parametrize("name", sorted(ORACLES))
def test_matches_the_generator_pixel_for_pixel_rgb(name, severity):
    out = C.CORRUPTIONS[name](ORACLE_RGB, severity, np.random.default_rng(0))
    expected = np.stack([ORACLES[name](img, severity) for img in ORACLE_RGB])
    assert out.dtype == expected.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("severity", C.SEVERITIES)
@pytest.mark.parametrize("name", sorted(set(ORACLES) - {"saturate"}))
def test_matches_the_generator_formulas_on_grey_images(name, severity):
    out = C.CORRUPTIONS[name](ORACLE_GREY, severity, np.random.default_rng(0))
    expected = np.stack([ORACLES[name](img, severity) for img in ORACLE_GREY])
    np.testing.assert_array_equal(out, expected)


def test_saturate_leaves_grey_images_unchanged():
    for severity in C.SEVERITIES:
        np.testing.assert_array_equal(C.saturate(ORACLE_GREY, severity, np.random.default_rng(0)), ORACLE_GREY)


def test_final_conversion_truncates_like_the_generator():
    image = np.full((1, 32, 32, 3), 200, dtype=np.uint8)
    image[0, :16] = 100
    # mean 150/255; severity 1: (100/255 - m) * .75 + m = 112.5/255 -> 112 (not 113), 187.5 -> 187
    out = C.contrast(image, 1, np.random.default_rng(0))
    assert set(np.unique(out)) == {112, 187}


def test_zoom_blur_uses_the_float_arange_factors():
    factors = np.arange(1, 1.26, 0.01)
    assert len(factors) == 26 and factors[-1] != 1.25
    np.testing.assert_array_equal(C._zoom_factors(5), factors)
    # the 26-pixel crop of the last zoom: round(26 * 1.2500000000000002) = 33 px, 1.25 would give 32
    assert int(np.ceil(32 / factors[-1])) == 26
    assert int(round(26 * factors[-1])) == 33 and int(round(26 * 1.25)) == 32
    images = ORACLE_RGB
    out = C.zoom_blur(images, 5, np.random.default_rng(0))
    rounded = np.stack([_oracle_zoom_blur(img, 5, factors=np.round(factors, 2)) for img in images])
    exact = np.stack([_oracle_zoom_blur(img, 5) for img in images])
    np.testing.assert_array_equal(out, exact)
    assert np.any(out != rounded)  # the rounded factors would give a different image
