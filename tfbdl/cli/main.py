"""The ``tfbdl`` console script: a Click group whose sub-groups live in this package."""

import sys

import click

import tfbdl
from tfbdl.errors import TfbdlError


class TfbdlGroup(click.Group):
    """A group that prints a user-caused error as one line and exits non-zero, no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TfbdlError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=TfbdlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(tfbdl.__version__, prog_name="tfbdl")
def cli():
    """Bayesian deep learning research: five papers reproduced in TensorFlow, Keras 3, TFP and GPflow.

    Every experiment writes OUT/<experiment>/<run-id>/ with config.json, metrics, figures and
    summary.md; rerunning the same command resumes it. `tfbdl run-all` runs them all.
    """


def _register_commands() -> None:
    from tfbdl.cli import (  # noqa: F401
        bdl, convnet_gp, data_commands,
        deep_weight_prior, feature_amounts, linearized, run_all)

    cli.add_command(data_commands.data)
    cli.add_command(convnet_gp.convnet_gp)
    cli.add_command(bdl.bdl)
    cli.add_command(deep_weight_prior.dwp)
    cli.add_command(linearized.linearized)
    cli.add_command(feature_amounts.feature_amounts)
    cli.add_command(run_all.run_all)


_register_commands()


def main(argv=None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="tfbdl")


if __name__ == "__main__":
    main(sys.argv[1:])
