"""The ``tfbdl bdl`` Click group and the options several of its commands share.

Every command module of this package adds its command to :data:`bdl` with ``@bdl.command``.
"""

from __future__ import annotations

import click

__all__ = ["bdl", "strategy_option"]


@click.group("bdl")
def bdl():
    """Bayesian Deep Learning and a Probabilistic Perspective of Generalization (Wilson & Izmailov 2020)."""


strategy_option = click.option(
    "--strategy", type=click.Choice(["default", "mirrored", "multi-worker"]), default="default", show_default=True,
    help="tf.distribute strategy: several GPUs (mirrored) or machines (multi-worker).")
