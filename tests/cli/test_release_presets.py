"""The presets of three commands pinned against the releases they were written from.

- ``convnet-gp finite-width`` against ``cambridge-mlg/cnn-gp`` (Garriga-Alonso et al.): its
  ``exp_random_nn`` experiment and the ``configs`` it runs.
- ``bdl posterior-adaptivity`` against ``izmailovpavel/understandingbdl``'s notebook
  ``experiments/priors/cifar_posterior_predictions.ipynb``. Cells are numbered from 0 over all
  cells of the notebook (markdown ones included), with the code cell's ``In [n]`` beside.
- ``bdl prior-variance`` against the same repository's README ("Prior Experiments") and
  ``experiments/train/run_swag.py``.

Each assertion says which release file (and line or cell) the value was read from. Nothing here
trains; where tfbdl knowingly differs from a release, the preset module says so (not pinned here).
"""

import math

import numpy as np
import pytest

from tfbdl.cli.bdl.prior_presets import ADAPTIVITY_PRESETS, PRIOR_VARIANCE_MODELS, PRIOR_VARIANCE_PRESETS
from tfbdl.cli.convnet_gp.finite_width import FINITE_PRESETS, load_images
from tfbdl.kernels import paper_network
from tfbdl.kernels.finite import plan_network
from tfbdl.kernels.layers import BranchSum, Conv2d, Identity, Readout, ReLU, Sequential
from tfbdl.train.weight_decay import weight_decay_for_prior

# --------------------------------------------------------------------------- cnn-gp: finite width


def test_finite_width_paper_preset_is_the_release_experiment():
    paper = FINITE_PRESETS["paper"]
    # cambridge-mlg/cnn-gp exp_random_nn/run.bash line 11: `for chans in 3 10 30 100`
    assert paper.widths == (3, 10, 30, 100)
    # exp_random_nn/run.bash line 4: `n_samples=10000` networks per width (here all replicates together)
    assert paper.draws == (10000,) * 4 and all(d % paper.replicates == 0 for d in paper.draws)
    # exp_random_nn/random_comparison.py lines 18-19: the first batch of a DataLoader with batch_size=100
    assert paper.images == 100
    # README.md lines 183-190 (Experiment 2): figures for the ResNet-32 GP (configs/mnist_as_tf.py),
    # the ConvNet GP (configs/mnist_paper_convnet_gp.py) and the Residual CNN GP
    # (configs/mnist_paper_residual_cnn_gp.py), all on MNIST
    assert set(paper.kernels) == {"resnet_gp", "convnet_gp", "residual_cnn_gp"}
    # the smaller scales keep the release's widths (a prefix of them at tiny)
    assert FINITE_PRESETS["smoke"].widths == paper.widths
    assert FINITE_PRESETS["tiny"].widths == paper.widths[:len(FINITE_PRESETS["tiny"].widths)]


def test_finite_width_images_are_the_first_of_the_release_training_range(shared_data_dir):
    from tfbdl.data import load_for_run

    x, indices, labels, _ = load_images("smoke", shared_data_dir, 5)
    # configs/mnist_paper_convnet_gp.py line 4 (and the other two MNIST configs): train_range =
    # range(5000, 55000); random_comparison.py line 18: an unshuffled DataLoader over it, so the
    # images are official training images 5000, 5001, ...
    assert indices.tolist() == [5000, 5001, 5002, 5003, 5004]
    full = load_for_run("mnist", "train", "smoke", shared_data_dir)
    assert full.labels.size == 60000
    assert np.array_equal(labels, full.labels[5000:5005])
    # cnn_gp/data.py line 143: torchvision's ToTensor, i.e. pixels / 255 in [0, 1]
    np.testing.assert_array_equal(x, full.images[5000:5005].astype(np.float64) / 255.0)


def _affine_layers(layer):
    """The Conv2d / Readout layers of a kernel description, in order."""
    if isinstance(layer, (Conv2d, Readout)):
        return [layer]
    if isinstance(layer, Sequential):
        return [a for part in layer.layers for a in _affine_layers(part)]
    if isinstance(layer, BranchSum):
        return [a for branch in layer.branches for a in _affine_layers(branch)]
    return []


def _variances(layer):
    return float(np.asarray(layer.var_weight)), float(np.asarray(layer.var_bias))


def test_convnet_gp_is_the_release_config():
    network = paper_network("convnet_gp")
    *hidden, readout = network.layers
    # configs/mnist_paper_convnet_gp.py lines 16-17: var_bias = 7.86, var_weight = 2.79
    var_bias, var_weight = 7.86, 2.79
    # lines 20-25: 7 x (Conv2d(kernel_size=7, padding="same", var_weight=var_weight * 7**2, var_bias), ReLU())
    assert [type(layer) for layer in hidden] == [Conv2d, ReLU] * 7
    for conv in hidden[::2]:
        assert conv.kernel_size == 7 and conv.stride == 1 and conv.padding == "same"
        assert _variances(conv) == pytest.approx((var_weight * 7**2, var_bias))
    # lines 28-29: Conv2d(kernel_size=28, padding=0, var_weight=var_weight, var_bias=var_bias) over
    # the whole 28 x 28 map, i.e. a readout
    assert isinstance(readout, Readout) and _variances(readout) == pytest.approx((var_weight, var_bias))


def test_residual_cnn_gp_is_the_release_config():
    network = paper_network("residual_cnn_gp")
    # configs/mnist_paper_residual_cnn_gp.py lines 30-31: var_bias = 4.69, var_weight = 7.27
    var_bias, var_weight = 4.69, 7.27
    *blocks, conv, relu, readout = network.layers
    # lines 33-39: 8 x Sum([Sequential(), Sequential(Conv2d(kernel_size=4, ...), ReLU())]): the sum
    # after the ReLU, as the paper (the config's docstring, lines 4-10)
    assert len(blocks) == 8
    for block in blocks:
        identity, branch = block.branches
        assert isinstance(identity, Identity) and [type(x) for x in branch.layers] == [Conv2d, ReLU]
        assert branch.layers[0].kernel_size == 4
        assert _variances(branch.layers[0]) == pytest.approx((var_weight * 4**2, var_bias))
    # lines 40-42: Conv2d(kernel_size=4, padding="same", var_weight=var_weight * 4**2, var_bias), ReLU()
    assert isinstance(conv, Conv2d) and conv.kernel_size == 4 and isinstance(relu, ReLU)
    assert _variances(conv) == pytest.approx((var_weight * 4**2, var_bias))
    # lines 43-44: Conv2d(kernel_size=28, padding=0, var_weight=var_weight, var_bias=var_bias)
    assert isinstance(readout, Readout) and _variances(readout) == pytest.approx((var_weight, var_bias))
    # cnn_gp/kernels.py lines 71-84: "same" padding of an even kernel pads k // 2 and zeroes the
    # first row and column of a (k + 1)-wide kernel: the patch is offsets -1, 0, 1, 2 for k = 4
    assert conv.taps().tolist() == [-1, 0, 1, 2]


def test_resnet_gp_is_the_release_config():
    network = paper_network("resnet_gp")
    first, *stages, last_mean, relu, readout = network.layers
    # cnn_gp/kernels.py lines 61-62: Conv2d defaults var_weight=1., var_bias=0., which every layer
    # of configs/mnist_as_tf.py keeps
    for layer in _affine_layers(network):
        assert _variances(layer) == (1.0, 0.0)
    # configs/mnist_as_tf.py line 21: Conv2d(kernel_size=3)
    assert isinstance(first, Conv2d) and first.kernel_size == 3
    # lines 23-42: three stages of resnet_block(stride=s, projection_shortcut=True) then four
    # resnet_block(stride=1), strides 1, 2, 2
    assert len(stages) == 15
    for stage, stride in zip(range(3), (1, 2, 2)):
        projection, *identities = stages[5 * stage:5 * stage + 5]
        # cnn_gp/kernels.py lines 285-295: ReLU, then Sum([Conv2d(1, stride), Sequential(Conv2d(3, stride),
        # ReLU, Conv2d(3))])
        relu_in, branches = projection.layers
        shortcut, residual = branches.branches
        assert isinstance(relu_in, ReLU) and (shortcut.kernel_size, shortcut.stride) == (1, stride)
        assert [type(x) for x in residual.layers] == [Conv2d, ReLU, Conv2d]
        assert (residual.layers[0].kernel_size, residual.layers[0].stride, residual.layers[2].kernel_size) == (
            3, stride, 3)
        # cnn_gp/kernels.py lines 275-284: Sum([Sequential(), Sequential(ReLU, Conv2d(3), ReLU, Conv2d(3))])
        for block in identities:
            identity, branch = block.branches
            assert isinstance(identity, Identity)
            assert [type(x) for x in branch.layers] == [ReLU, Conv2d, ReLU, Conv2d]
            assert [x.kernel_size for x in branch.layers[1::2]] == [3, 3]
    # lines 44-48: Conv2d(kernel_size=7, padding=0) over the 7 x 7 map (a mean), ReLU, Conv2d(kernel_size=1)
    assert isinstance(last_mean, Readout) and isinstance(relu, ReLU) and isinstance(readout, Readout)


@pytest.mark.parametrize("kernel, var_weight, var_bias, k", [("convnet_gp", 2.79, 7.86, 7),
                                                              ("residual_cnn_gp", 7.27, 4.69, 4)])
def test_finite_networks_draw_the_release_weight_and_bias_scales(kernel, var_weight, var_bias, k):
    width = 10
    plan, readout = plan_network(paper_network(kernel), (28, 28, 1), width)

    def affines(node):
        if hasattr(node, "kernel_shape"):
            return [node]
        if isinstance(node, tuple) and node[0] in ("seq", "sum"):
            return [a for part in node[1] for a in affines(part)]
        return []

    convs = [a for a in affines(plan) if a.kind == "conv"]
    # cnn_gp/kernels.py lines 115-116: weights ~ N(0, (sqrt(var_weight / in_channels) / kernel_size)^2)
    # with the config's var_weight * k**2; line 121: biases ~ N(0, var_bias). random_comparison.py
    # lines 31-32: model.nn(channels, in_channels=1, out_channels=1)
    assert convs[0].kernel_shape == (k, k, 1, width)
    for conv in convs:
        in_channels = conv.kernel_shape[2]
        assert conv.weight_std == pytest.approx(math.sqrt(var_weight * k**2 / in_channels) / k)
        assert conv.bias_std == pytest.approx(math.sqrt(var_bias))
    # the 28 x 28 readout conv: sqrt(var_weight / channels) / 28, one output
    assert readout.kernel_shape == (28, 28, width, 1)
    assert readout.weight_std == pytest.approx(math.sqrt(var_weight / width) / 28)
    assert readout.bias_std == pytest.approx(math.sqrt(var_bias))


# --------------------------------------------------------------------------- posterior-adaptivity


def test_posterior_adaptivity_paper_preset_is_the_notebook():
    paper = ADAPTIVITY_PRESETS["paper"]
    notebook = "izmailovpavel/understandingbdl experiments/priors/cifar_posterior_predictions.ipynb"
    # cell 2 (In [3]): model_cfg = models.PreResNet20NoAug on "CIFAR10" (no augmentation)
    assert (paper.model, paper.dataset) == ("preresnet20", "cifar10"), notebook
    # cell 5 (In [4]): perclass = 100 training examples of each class (the notebook's one size;
    # the others are the paper figure's)
    assert 100 in paper.per_class
    # cell 7 (In [6]): perclass = 20 test images of each class
    assert paper.test_per_class == 20
    # cells 9 and 14 (In [8], In [12]): sigma = np.sqrt(10), weights ~ N(0, sigma^2)
    assert paper.prior_var == pytest.approx(10.0)
    # cell 9 (In [8]): samples = 500 prior draws
    assert paper.prior_draws == 500
    # cell 14 (In [12]): resample(model, sigma=sigma) before the chain, and epochs = 0 SGD epochs
    assert paper.init == "prior" and paper.warmup_steps == 0
    # cell 14 (In [12]): sgld_epochs = 5000, each one full-batch step: cell 2's loader batch of 10000
    # holds every training set (at most 1000 per class of 10 classes)
    assert paper.sgld_steps == 5000 and paper.batch_size >= 10 * max(paper.per_class)
    # cell 13 (In [11]): SGLD(model.parameters(), lr=1e-3, ...)
    assert paper.sgld_lr == pytest.approx(1e-3)


def test_posterior_adaptivity_sampler_is_the_notebook_sgld():
    from tfbdl.cli.bdl.adaptivity_fit import cosine_lr

    # cell 14 (In [12]): CosineAnnealingLR(opt_sgld, T_max=sgld_epochs), stepped once an epoch:
    # torch's closed form lr_t = lr (1 + cos(pi t / T_max)) / 2 (eta_min = 0)
    steps, block = 5000, 100
    schedule = cosine_lr(1e-3, steps, block)
    for t in (0, 1, 1250, 2500, 4999, 5000):
        assert schedule(t / block) == pytest.approx(1e-3 * (1 + math.cos(math.pi * t / steps)) / 2, abs=1e-15)
    # cell 14 (In [12]): regularizer = sum |p|^2 / (2 sigma^2 N) added to the mean loss
    assert weight_decay_for_prior(10.0, 1000) == pytest.approx(1 / (2 * 10.0 * 1000))


def test_posterior_adaptivity_noise_is_the_notebook_noise_factor():
    import tensorflow as tf

    from tfbdl.cli.bdl.adaptivity_fit import LangevinNoise

    # cell 13 (In [11]): noise_factor = 1 / np.sqrt(N); swag/posteriors/sgld.py line 37:
    # p += noise_factor * sqrt(2 lr) * N(0, 1) after each step: standard deviation sqrt(2 lr / N)
    weights = tf.Variable(tf.zeros([200000]))
    noise = LangevinNoise([weights], data_size=1000, seed=0)

    class Trainer:
        class optimizer:  # noqa: N801 - stands in for the Trainer's optimizer attribute
            learning_rate = 1e-3

    noise.on_step_end(Trainer(), 0)
    drawn = weights.numpy()
    assert abs(drawn.mean()) < 1e-5
    assert drawn.std() == pytest.approx(math.sqrt(2 * 1e-3 / 1000), rel=0.01)


# --------------------------------------------------------------------------- prior-variance


def test_prior_variance_models_and_no_weight_decay_are_the_readme():
    # izmailovpavel/understandingbdl README.md lines 132-134: "prior variance dependence in Lenet-5,
    # VGG-16 and PreResNet-20 ... setting `--wd=0.` and varying `--prior_var`"
    assert set(PRIOR_VARIANCE_MODELS) == {"lenet5", "vgg16", "preresnet20"}
    for model in PRIOR_VARIANCE_MODELS:
        for scale, preset in PRIOR_VARIANCE_PRESETS[model].items():
            assert preset.member.weight_decay == 0.0, (model, scale)
            assert preset.member.prior_var is None  # set per value of the sweep
    # README.md line 97: the LeNet5 command's --prior_var=1e-1 is one of the paper sweep's values
    assert 0.1 in PRIOR_VARIANCE_PRESETS["lenet5"]["paper"].prior_vars
    # experiments/train/run_swag.py lines 135-136: regularizer |w|^2 / (2 prior_var N) on the mean loss
    assert weight_decay_for_prior(0.1, 60000) == pytest.approx(1 / (2 * 0.1 * 60000))


@pytest.mark.parametrize("model, expected", [
    # README.md lines 93-97: --epochs=50 --model=LeNet5 --lr_init=0.05 --swag_start=25 --swag_lr=0.01 on MNIST
    ("lenet5", ("mnist", 50, 25, 0.05, 0.01)),
    # README.md lines 76-83: --epochs=300 --dataset=CIFAR10 --model=PreResNet20 --lr_init=0.1
    # --swag_start=161 --swag_lr=0.01
    ("preresnet20", ("cifar10", 300, 161, 0.1, 0.01)),
    # README.md lines 86-90: --epochs=300 --dataset=CIFAR10 --model=VGG16 --lr_init=0.05 --swag_start=161
    # --swag_lr=0.01
    ("vgg16", ("cifar10", 300, 161, 0.05, 0.01)),
])
def test_prior_variance_paper_members_are_the_readme_commands(model, expected):
    member = PRIOR_VARIANCE_PRESETS[model]["paper"].member
    assert (member.dataset, member.epochs, member.swa_start, member.lr_init, member.swa_lr) == expected
    # experiments/train/run_swag.py line 22: --batch_size default 128; line 46: --max_num_models
    # default 20 (the covariance rank)
    assert (member.batch_size, member.max_rank) == (128, 20)
    # README.md lines 79, 83, 89, 96: --use_test, so the whole training set and no held-out split
    assert member.n_train is None and member.n_val == 0
    # the models' transform_train: swag/models/lenet5.py lines 50-55, swag/models/preresnet.py
    # lines 265-271 (PreResNet20), swag/models/vgg.py lines 110-117: 4-pixel padded random crops
    # and horizontal flips
    assert member.augment
