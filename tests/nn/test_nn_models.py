"""Model zoo: parameter counts against the reference architectures (computed by hand below),
output shapes, channels, custom VGG widths, seeding, the registry and the batch-norm helper."""

import math

import keras
import numpy as np
import pytest

from tfbdl import nn
from tfbdl.errors import InvalidOptionError, ShapeError


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def dense(fin, fout, bias=True):
    return fin * fout + (fout if bias else 0)


# ---- hand counts of the reference architectures ------------------------------------------------
# LeNet5 (understandingbdl swag/models/lenet5.py) on 28x28x1: 28 -conv5-> 24 -pool-> 12 -conv5-> 8
# -pool-> 4, so the first dense layer sees 50 * 4 * 4 = 800 features.
#   conv1 1*20*25 + 20 = 520; conv2 20*50*25 + 50 = 25,050; fc1 800*500 + 500 = 400,500;
#   fc2 500*10 + 10 = 5,010                                                    total 431,080
LENET5 = conv(1, 20, 5) + conv(20, 50, 5) + dense(800, 500) + dense(500, 10)
assert LENET5 == 431_080

# VGG16 (swag/models/vgg.py, cfg 16) on 32x32x3: 13 3x3 convs with bias, 32 / 2**5 = 1 so the
# classifier sees 512 features; classifier 512 -> 512 -> 512 -> 10.
#   convs: 1,792 + 36,928 + 73,856 + 147,584 + 295,168 + 2 * 590,080 + 1,180,160 + 5 * 2,359,808
#        = 14,714,688;  classifier 262,656 + 262,656 + 5,130 = 530,442      total 15,245,130
VGG16_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
VGG16_CONVS = sum(conv(cin, cout, 3) for cin, cout in zip([3] + VGG16_WIDTHS[:-1], VGG16_WIDTHS))
VGG16 = VGG16_CONVS + dense(512, 512) + dense(512, 512) + dense(512, 10)
assert VGG16_CONVS == 14_714_688 and VGG16 == 15_245_130
# VGG16-BN adds gamma and beta per conv channel (sum of widths 4,224): 8,448 trainable, and
# 8,448 moving mean / variance values (PyTorch buffers, Keras non-trainable weights).
BN_CHANNELS = sum(VGG16_WIDTHS)
assert BN_CHANNELS == 4_224

# PreResNet20 (swag/models/preresnet.py, depth 20 -> 3 basic blocks per stage), 32x32x3, 10 classes;
# convs have no bias, a BN has 2 trainable values per channel.
#   stem conv 3->16:                                                             432
#   stage 1, 3 x [bn 16, conv 16->16, bn 16, conv 16->16] = 3 * 4,672       = 14,016
#   stage 2, [bn 16, conv 16->32, bn 32, conv 32->32, 1x1 shortcut 16->32] = 14,432
#            + 2 x [bn 32, conv 32->32, bn 32, conv 32->32] = 2 * 18,560    = 51,552
#   stage 3, [bn 32, conv 32->64, bn 64, conv 64->64, 1x1 shortcut 32->64] = 57,536
#            + 2 x [bn 64, conv 64->64, bn 64, conv 64->64] = 2 * 73,984    = 205,504
#   final bn 64: 128; dense 64 -> 10: 650                                 total 272,282 (~0.27M)
BASIC = lambda cin, cout: 2 * cin + conv(cin, cout, 3, False) + 2 * cout + conv(cout, cout, 3, False)  # noqa: E731
PRERESNET20 = (conv(3, 16, 3, False)
               + 3 * BASIC(16, 16)
               + BASIC(16, 32) + conv(16, 32, 1, False) + 2 * BASIC(32, 32)
               + BASIC(32, 64) + conv(32, 64, 1, False) + 2 * BASIC(64, 64)
               + 2 * 64 + dense(64, 10))
assert PRERESNET20 == 272_282
# BN channels: stage 1: 3 * (16 + 16); stage 2: (16 + 32) + 2 * 64; stage 3: (32 + 64) + 2 * 128; final 64
PRERESNET20_BN_CHANNELS = 3 * 32 + (48 + 128) + (96 + 256) + 64
assert PRERESNET20_BN_CHANNELS == 688

# FConv of the deep weight prior code (models/lenet.py FConvMNIST, hid_dim 32, 64) on 28x28x1:
# 28 -conv7-> 22 -pool-> 11 -conv5-> 7 -pool-> 3, dense 64 * 9 -> 10.
#   conv1 1*32*49 + 32 = 1,600; conv2 32*64*25 + 64 = 51,264; dense 576*10 + 10 = 5,770  total 58,634
FCONV = conv(1, 32, 7) + conv(32, 64, 5) + dense(64 * 9, 10)
assert FCONV == 58_634


@pytest.fixture(scope="module")
def vgg16_model():
    return nn.vgg16(seed=0)


@pytest.fixture(scope="module")
def vgg16_bn_model():
    return nn.vgg16_bn(seed=0)


@pytest.fixture(scope="module")
def preresnet20_model():
    return nn.preresnet20(seed=0)


def _images(shape, n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def _conv_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


# ---- parameter counts --------------------------------------------------------------------------

def test_lenet5_matches_reference_count():
    model = nn.lenet5()
    assert nn.count_params(model) == LENET5
    assert [layer.filters for layer in _conv_layers(model)] == [20, 50]
    assert model.get_layer("fc1").kernel.shape == (800, 500)


def test_vgg16_matches_reference_count(vgg16_model):
    assert nn.count_params(vgg16_model) == VGG16
    assert nn.count_params(vgg16_model, include_non_trainable=True) == VGG16
    assert [layer.filters for layer in _conv_layers(vgg16_model)] == VGG16_WIDTHS
    assert [layer.rate for layer in vgg16_model.layers if isinstance(layer, keras.layers.Dropout)] == [0.5, 0.5]


def test_vgg16_bn_matches_reference_count(vgg16_bn_model):
    assert nn.count_params(vgg16_bn_model) == VGG16 + 2 * BN_CHANNELS
    assert nn.count_params(vgg16_bn_model, include_non_trainable=True) == VGG16 + 4 * BN_CHANNELS


def test_preresnet20_matches_reference_count(preresnet20_model):
    assert nn.count_params(preresnet20_model) == PRERESNET20
    assert nn.count_params(preresnet20_model, include_non_trainable=True) == PRERESNET20 + 2 * PRERESNET20_BN_CHANNELS
    convs = _conv_layers(preresnet20_model)
    assert len(convs) == 19 + 2  # 19 weighted 3x3 convs + 2 shortcut 1x1 convs
    assert not any(layer.use_bias for layer in convs)


def test_fconv_matches_reference_count():
    model = nn.fconv()
    assert nn.count_params(model) == FCONV
    assert [layer.kernel_size for layer in _conv_layers(model)] == [(7, 7), (5, 5)]


def test_ntk_lenet_count_initialisation_and_errors():
    # conv 5x5x3x6, conv 5x5x6x16 ('same'), two 2x2 average pools: 8 * 8 * 16 = 1024 features on 32x32.
    model = nn.ntk_lenet(1, (32, 32, 3), seed=0)
    assert nn.count_params(model) == (75 * 6 + 6) + (150 * 16 + 16) + dense(1024, 120) + dense(120, 84) + dense(84, 1)
    assert model(_images((32, 32, 3))).shape == (2, 1)
    fc1 = model.get_layer("fc1")
    assert np.var(fc1.kernel.numpy()) == pytest.approx(1 / 1024, rel=0.05)  # LeCun normal: variance 1 / fan_in
    assert not np.any(fc1.bias.numpy())
    gelu = nn.build_model("ntk_lenet", 10, (28, 28, 1), activation="gelu", seed=0)
    assert gelu(_images((28, 28, 1))).shape == (2, 10)
    with pytest.raises(InvalidOptionError, match="4 widths"):
        nn.ntk_lenet(widths=(6, 16))
    with pytest.raises(InvalidOptionError, match="activation"):
        nn.ntk_lenet(activation="no-such")
    with pytest.raises(ShapeError):
        nn.ntk_lenet(input_shape=(3, 3, 1))


def test_mlp_count_and_shapes():
    model = nn.mlp((50, 50), 1, (1,))
    assert nn.count_params(model) == dense(1, 50) + dense(50, 50) + dense(50, 1)
    x = np.linspace(-1, 1, 7, dtype="float32")[:, None]
    assert model(x).shape == (7, 1)
    assert nn.mlp((), 3, (4,))(np.zeros((2, 4), "float32")).shape == (2, 3)  # linear model
    images = nn.mlp((16,), 10, (28, 28, 1), activation="tanh")
    assert images(_images((28, 28, 1))).shape == (2, 10)


def test_preresnet_deeper_counts():
    # PreResNet110 uses bottlenecks (depth >= 44): 12 blocks per stage, 4x expansion.
    def bottleneck(cin, w):
        return 2 * cin + conv(cin, w, 1, False) + 2 * w + conv(w, w, 3, False) + 2 * w + conv(w, 4 * w, 1, False)

    expected = conv(3, 16, 3, False)
    cin = 16
    for w in (16, 32, 64):
        expected += conv(cin, 4 * w, 1, False)  # every stage's first block changes the width
        for _ in range(12):
            expected += bottleneck(cin, w)
            cin = 4 * w
    expected += 2 * 256 + dense(256, 10)
    assert nn.count_params(nn.preresnet(110)) == expected
    # No-skip variant (BasicBlockNoSkip): conv-BN-ReLU-conv-BN-ReLU, so each block's first BN has the
    # block's output width (32, 64 instead of 16, 32 at the stage changes) and there are no shortcuts.
    no_skip = nn.preresnet20(skip_connections=False)

    def no_skip_block(cin, cout):
        return conv(cin, cout, 3, False) + 2 * cout + conv(cout, cout, 3, False) + 2 * cout

    expected = (conv(3, 16, 3, False) + 3 * no_skip_block(16, 16) + no_skip_block(16, 32) + 2 * no_skip_block(32, 32)
                + no_skip_block(32, 64) + 2 * no_skip_block(64, 64) + 2 * 64 + dense(64, 10))
    assert nn.count_params(no_skip) == expected
    assert expected == PRERESNET20 - conv(16, 32, 1, False) - conv(32, 64, 1, False) + 2 * (16 + 32)
    assert not any(isinstance(layer, keras.layers.Add) for layer in no_skip.layers)


# ---- shapes and channels -----------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", [
    ("lenet5", (28, 28, 1)), ("lenet5", (28, 28, 3)), ("fconv", (28, 28, 1)), ("fconv", (28, 28, 3)),
    ("vgg16", (32, 32, 1)), ("vgg16", (32, 32, 3)), ("vgg16_bn", (32, 32, 3)),
    ("preresnet20", (32, 32, 1)), ("preresnet20", (32, 32, 3)),
])
def test_output_shape_batch_by_classes(name, shape):
    model = nn.build_model(name, num_classes=7, input_shape=shape, seed=1)
    out = model(_images(shape, n=3), training=False)
    assert out.shape == (3, 7)
    assert out.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(out)))


def test_channel_count_changes_only_the_first_layer():
    assert nn.count_params(nn.lenet5(input_shape=(28, 28, 3))) == LENET5 + 2 * 20 * 25
    assert nn.count_params(nn.fconv(input_shape=(28, 28, 3))) == FCONV + 2 * 32 * 49
    assert nn.count_params(nn.preresnet20(input_shape=(32, 32, 1))) == PRERESNET20 - 2 * 16 * 9


def test_vgg_custom_widths():
    stages = ((16, 48), (200,), (7, 7, 7))
    model = nn.vgg(stages, 10, (32, 32, 3), dense_widths=(32,), dropout=0.0)
    convs = _conv_layers(model)
    assert len(convs) == 6
    assert [layer.filters for layer in convs] == [16, 48, 200, 7, 7, 7]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 3
    # 32 / 2**3 = 4, so the classifier sees 7 * 4 * 4 = 112 features.
    expected = (conv(3, 16, 3) + conv(16, 48, 3) + conv(48, 200, 3) + conv(200, 7, 3) + 2 * conv(7, 7, 3)
                + dense(112, 32) + dense(32, 10))
    assert nn.count_params(model) == expected
    assert model(_images((32, 32, 3))).shape == (2, 10)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def test_vgg_layerwise_follows_the_flat_width_list():
    widths = nn.vgg_layer_widths(16)
    assert widths == [64, 64, 128, 128, 256, 256, 256] + [512] * 6 + [512, 512]
    model = nn.vgg_layerwise(widths, 10, seed=0)
    convs = _conv_layers(model)
    assert [layer.filters for layer in convs] == VGG16_WIDTHS
    assert not any(layer.use_bias for layer in convs)
    # No conv / hidden dense biases; batch norm after each of the 13 convs and 2 hidden dense layers.
    expected = (VGG16_CONVS - BN_CHANNELS + 2 * BN_CHANNELS
                + dense(512, 512, False) + 2 * 512 + dense(512, 512, False) + 2 * 512 + dense(512, 10))
    assert nn.count_params(model) == expected
    bns = nn.batch_norm_layers(model)
    assert len(bns) == 15 and all(bn.epsilon == pytest.approx(1e-4) for bn in bns)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.5]
    # A redistributed depth-10 network: stages of 2, 2, 1, 1, 1 convolutions.
    skewed = nn.vgg_layerwise([200, 150, 100, 60, 30, 10, 5, 64, 32], 10, (32, 32, 1), batch_norm_epsilon=0)
    assert [layer.filters for layer in _conv_layers(skewed)] == [200, 150, 100, 60, 30, 10, 5]
    assert nn.batch_norm_layers(skewed) == []
    assert skewed(_images((32, 32, 1))).shape == (2, 10)
    with pytest.raises(InvalidOptionError):
        nn.vgg_layerwise([64] * 14)


# ---- seeds and initialisation ------------------------------------------------------------------

def _weights(model):
    return [np.asarray(v) for v in model.weights]


@pytest.mark.parametrize("factory", [nn.lenet5, nn.preresnet20, nn.fconv,
                                     lambda seed: nn.vgg(((8, 8), (16,)), 10, (8, 8, 3), batch_norm=True, seed=seed),
                                     lambda seed: nn.mlp((20, 20), 1, (1,), seed=seed)])
def test_same_seed_same_weights_different_seed_different(factory):
    a, b, c = _weights(factory(seed=3)), _weights(factory(seed=3)), _weights(factory(seed=4))
    assert len(a) == len(b) == len(c)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    random_ones = [i for i, x in enumerate(a) if np.unique(x).size > 1]  # not constant-initialised
    assert random_ones
    assert all(not np.array_equal(a[i], c[i]) for i in random_ones)


def test_layers_of_one_model_get_different_seeds(vgg16_model):
    k2 = np.asarray(vgg16_model.get_layer("stage4_conv2").kernel)
    k3 = np.asarray(vgg16_model.get_layer("stage4_conv3").kernel)
    assert k2.shape == k3.shape and not np.array_equal(k2, k3)


def test_reference_initialisation(vgg16_model, preresnet20_model):
    # Convs: normal(0, sqrt(2 / (9 * out))) and zero bias; dense: U(+-1/sqrt(fan_in)).
    conv_layer = vgg16_model.get_layer("stage5_conv1")
    kernel = np.asarray(conv_layer.kernel)
    assert kernel.std() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.02)
    assert not np.any(np.asarray(conv_layer.bias))
    fc = vgg16_model.get_layer("fc1")
    bound = 1 / math.sqrt(512)
    assert np.abs(np.asarray(fc.kernel)).max() <= bound
    assert np.asarray(fc.kernel).std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert 0 < np.abs(np.asarray(fc.bias)).max() <= bound
    for bn in nn.batch_norm_layers(preresnet20_model):
        assert np.all(np.asarray(bn.gamma) == 1) and not np.any(np.asarray(bn.beta))
        assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-5)


def test_stride_two_convolution_pads_like_pytorch(preresnet20_model):
    # PyTorch's conv3x3(stride=2, padding=1) pads one pixel on every side; Keras's "same" would pad
    # only bottom/right. Compare the first stride-2 conv with a direct numpy convolution.
    model = preresnet20_model
    probe = keras.Model(model.input, [model.get_layer("stage2_block1_relu1").output,
                                      model.get_layer("stage2_block1_conv1").output])
    x_in, y = (np.asarray(t) for t in probe(_images((32, 32, 3), n=1), training=False))
    kernel = np.asarray(model.get_layer("stage2_block1_conv1").kernel)  # [3, 3, 16, 32]
    padded = np.pad(x_in[0], ((1, 1), (1, 1), (0, 0)))
    expected = np.empty((16, 16, 32), "float32")
    for i in range(16):
        for j in range(16):
            patch = padded[2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
            expected[i, j] = np.tensordot(patch, kernel, axes=([0, 1, 2], [0, 1, 2]))
    assert y.shape == (1, 16, 16, 32)
    np.testing.assert_allclose(y[0], expected, rtol=1e-4, atol=1e-4)


# ---- registry, batch norm helper, bad arguments ------------------------------------------------

def test_registry_names_and_errors():
    assert {"lenet5", "vgg16", "vgg16_bn", "preresnet20", "mlp"} <= set(nn.MODELS)
    with pytest.raises(InvalidOptionError, match="unknown model"):
        nn.build_model("resnet1000", 10, (32, 32, 3))
    with pytest.raises(InvalidOptionError, match="hidden_widths"):
        nn.build_model("mlp", 1, (1,))
    with pytest.raises(InvalidOptionError, match="no_such_option"):
        nn.build_model("lenet5", 10, (28, 28, 1), no_such_option=3)
    model = nn.build_model("MLP", 2, (3,), hidden_widths=(8,), activation="tanh", seed=0)
    assert model.output_shape == (None, 2)
    assert nn.build_model("vgg16-bn", 10, (32, 32, 3)).name == "vgg16_bn"


def test_batch_norm_layers(vgg16_model, vgg16_bn_model, preresnet20_model):
    bns = nn.batch_norm_layers(vgg16_bn_model)
    assert len(bns) == 13
    assert all(type(bn) is keras.layers.BatchNormalization for bn in bns)
    assert [bn.gamma.shape[0] for bn in bns] == VGG16_WIDTHS
    assert nn.batch_norm_layers(vgg16_model) == []
    assert len(nn.batch_norm_layers(preresnet20_model)) == 19  # 2 per block x 9 + the final one
    inner = nn.vgg(((4,), (4,)), 3, (8, 8, 1), batch_norm=True, dense_widths=())
    outer = keras.Sequential([keras.Input((8, 8, 1)), inner])
    assert nn.batch_norm_layers(outer) == nn.batch_norm_layers(inner) and len(nn.batch_norm_layers(inner)) == 2


@pytest.mark.parametrize("call, error", [
    (lambda: nn.vgg16(input_shape=(28, 28, 1)), ShapeError),         # 5 poolings need 32x32
    (lambda: nn.lenet5(input_shape=(12, 12, 1)), ShapeError),
    (lambda: nn.lenet5(input_shape=(28, 28)), ShapeError),
    (lambda: nn.fconv(input_shape=(17, 17, 1)), ShapeError),     # 18x18 is the smallest
    (lambda: nn.preresnet20(input_shape=(16, 16, 3)), ShapeError),   # 8x8 average pool needs 29x29
    (lambda: nn.mlp((4,), 1, ()), ShapeError),
    (lambda: nn.preresnet(21), InvalidOptionError),
    (lambda: nn.preresnet(50), InvalidOptionError),
    (lambda: nn.lenet5(num_classes=0), InvalidOptionError),
    (lambda: nn.lenet5(seed=-1), InvalidOptionError),
    (lambda: nn.vgg([], 10), InvalidOptionError),
    (lambda: nn.vgg(((64, 0),), 10), InvalidOptionError),
    (lambda: nn.vgg(((8,),), 10, (8, 8, 3), dropout=1.0), InvalidOptionError),
    (lambda: nn.vgg(((8,),), 10, (8, 8, 3), init="xavier"), InvalidOptionError),
    (lambda: nn.mlp((4,), 1, (1,), activation="no-such-activation"), InvalidOptionError),
    (lambda: nn.fconv(dropout=(0.1,)), InvalidOptionError),
])
def test_bad_arguments_raise_named_errors(call, error):
    with pytest.raises(error):
        call()


def test_preresnet_global_pool_takes_small_images():
    model = nn.preresnet(20, 10, (16, 16, 3), global_pool=True)
    assert nn.count_params(model) == PRERESNET20
    assert model(_images((16, 16, 3))).shape == (2, 10)


def test_count_params_needs_a_built_model():
    with pytest.raises(InvalidOptionError, match="not built"):
        nn.count_params(keras.Sequential([keras.layers.Dense(3)]))
