"""CIFAR ResNet18 (linearized-networks reference): parameter counts by hand, shapes, widths,
initialisation, the registry, and the subsampled projection shortcut."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbdl import nn
from tfbdl.errors import InvalidOptionError, ShapeError
from tfbdl.nn.resnet18 import Subsample2D, resnet18


def conv(cin, cout, k):
    return cin * cout * k * k  # no bias in ResNet18's convolutions


def resnet18_counts(widths, in_channels, num_classes):
    """(trainable parameters, batch-norm channels) of ResNet18 with stage ``widths``.

    Stem conv 3x3 + BN; per stage two basic blocks [conv3x3, BN, conv3x3, BN] plus, where the
    shape changes (stride 2 or new width), a 1x1 projection conv + BN; dense with bias.
    """
    params = conv(in_channels, widths[0], 3)
    bn = widths[0]
    cin = widths[0]
    for s, w in enumerate(widths):
        for b in range(2):
            stride = 2 if (s > 0 and b == 0) else 1
            params += conv(cin, w, 3) + conv(w, w, 3)
            bn += 2 * w
            if stride != 1 or cin != w:
                params += conv(cin, w, 1)
                bn += w
            cin = w
    return params + 2 * bn + widths[-1] * num_classes + num_classes, bn


# Standard CIFAR ResNet18, 10 classes, 3 channels:
#   stem 1,728 + BN 128                                                         1,856
#   stage 1: 2 x (2 * 36,864 + 2 * 128)                                       147,968
#   stage 2: (73,728 + 147,456 + 8,192 + 3 * 256) + (2 * 147,456 + 2 * 256)    525,568
#   stage 3: (294,912 + 589,824 + 32,768 + 3 * 512) + (2 * 589,824 + 2 * 512) 2,099,712
#   stage 4: (1,179,648 + 2,359,296 + 131,072 + 3 * 1,024)
#            + (2 * 2,359,296 + 2 * 1,024)                                   8,393,728
#   dense 512 * 10 + 10                                                         5,130
#                                                                     total 11,173,962
STANDARD, STANDARD_BN = resnet18_counts((64, 128, 256, 512), 3, 10)
assert STANDARD == 11_173_962
assert STANDARD_BN == 64 + 4 * 64 + (5 * 128) + (5 * 256) + (5 * 512) == 4_800


def test_standard_resnet18_parameter_count_and_output():
    model = resnet18(10, seed=0)
    assert nn.count_params(model) == 11_173_962
    # moving mean and variance of every BN channel
    assert nn.count_params(model, include_non_trainable=True) - 11_173_962 == 2 * STANDARD_BN
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    out = model(x, training=False)
    assert tuple(out.shape) == (2, 10)
    assert len(nn.batch_norm_layers(model)) == 1 + 8 * 2 + 3


@pytest.mark.parametrize("widths,shape,classes", [((8, 16, 32, 64), (16, 16, 3), 1),
                                                  ((4, 4, 8, 8), (9, 7, 1), 5)])
def test_width_option(widths, shape, classes):
    model = resnet18(classes, shape, widths=widths, seed=1)
    expected, bn = resnet18_counts(widths, shape[-1], classes)
    assert nn.count_params(model) == expected
    assert nn.count_params(model, include_non_trainable=True) == expected + 2 * bn
    x = np.random.default_rng(1).normal(size=(3, *shape)).astype("float32")
    assert tuple(model(x, training=False).shape) == (3, classes)
    assert model.get_layer("stage4_block2_conv2").kernel.shape == (3, 3, widths[3], widths[3])


def test_seeding_and_zero_init_residual():
    a, b = resnet18(3, (8, 8, 3), widths=(4, 8, 8, 8), seed=5), resnet18(3, (8, 8, 3), widths=(4, 8, 8, 8), seed=5)
    c = resnet18(3, (8, 8, 3), widths=(4, 8, 8, 8), seed=6)
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert not np.array_equal(a.get_layer("stem_conv").kernel.numpy(), c.get_layer("stem_conv").kernel.numpy())
    # Flax reference: the second BN of every block starts with scale 0, the others with 1
    for s in range(1, 5):
        for blk in (1, 2):
            np.testing.assert_array_equal(a.get_layer(f"stage{s}_block{blk}_bn2").gamma.numpy(), 0.0)
            np.testing.assert_array_equal(a.get_layer(f"stage{s}_block{blk}_bn1").gamma.numpy(), 1.0)
    ones = resnet18(3, (8, 8, 3), widths=(4, 8, 8, 8), zero_init_residual=False, seed=5)
    np.testing.assert_array_equal(ones.get_layer("stage1_block1_bn2").gamma.numpy(), 1.0)
    # LeCun normal (truncated): std close to 1 / sqrt(fan_in) on the big stage-4 kernel
    big = resnet18(10, seed=2).get_layer("stage4_block2_conv1").kernel.numpy()
    assert abs(big.std() * np.sqrt(9 * 512) - 1.0) < 0.02


def test_projection_is_a_strided_1x1_convolution():
    model = resnet18(2, (10, 10, 3), widths=(4, 6, 6, 6), seed=0)
    x = np.random.default_rng(2).normal(size=(2, 10, 10, 3)).astype("float32")
    probe = keras.Model(model.input, [model.get_layer("stage1_block2_relu2").output,
                                       model.get_layer("stage2_block1_proj_conv").output])
    before, after = probe(x)
    kernel = model.get_layer("stage2_block1_proj_conv").kernel
    expected = tf.nn.conv2d(before, kernel, strides=2, padding="SAME")
    np.testing.assert_allclose(after.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    assert Subsample2D(2).compute_output_shape((None, 5, 4, 3)) == (None, 3, 2, 3)


def test_batch_of_one_gradient_and_registry():
    model = nn.build_model("resnet18", 3, (16, 16, 3), widths=(4, 8, 8, 8), seed=0)
    assert model.name == "resnet18" and "resnet18" in nn.MODELS
    x = tf.random.normal((1, 16, 16, 3), seed=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    with pytest.raises(InvalidOptionError):
        nn.build_model("resnet18", 10, (32, 32, 3), depth=34)


def test_bad_arguments():
    with pytest.raises(InvalidOptionError):
        resnet18(10, widths=(64, 128, 256))
    with pytest.raises(InvalidOptionError):
        resnet18(10, widths=(64, 0, 256, 512))
    with pytest.raises(InvalidOptionError):
        resnet18(0)
    with pytest.raises(ShapeError):
        resnet18(10, (32, 32))
    with pytest.raises(InvalidOptionError):
        resnet18(10, zero_init_residual="yes")
