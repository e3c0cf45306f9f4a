"""``tfbdl data``: what data this machine has, fetching it, and the data-check experiment."""

import click

from tfbdl.cli.options import common_run_options, folder_path


@click.group()
def data():
    """Datasets: list what is on this machine, fetch files, check them."""


@data.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str), default=None, callback=folder_path,
              help="Folder searched first (then $TFBDL_DATA_DIR, the user cache, system folders).")
def info(data_dir):
    """List every dataset, its splits, where its files are, and its embedded subset."""
    from tfbdl.data import DATASETS, EMBEDDED, locate

    for name, spec in DATASETS.items():
        click.echo(f"{name}: {spec.description}")
        click.echo(f"  images {'x'.join(map(str, spec.image_shape))}, {spec.num_classes} classes; "
                   f"embedded subset: {'yes' if name in EMBEDDED else 'no'}")
        for split in spec.splits:
            paths = locate(spec, split, data_dir)
            missing = [spec.files[role].filename for role, path in paths.items() if path is None]
            where = sorted({str(path.parent) for path in paths.values() if path is not None})
            state = f"missing {', '.join(missing)}" if missing else f"found in {', '.join(where)}"
            click.echo(f"  {split:<5} {state}")


@data.command()
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=str), default=None, callback=folder_path,
              help="Where to put downloads (default $TFBDL_DATA_DIR, else ~/.cache/tfbdl/datasets).")
def fetch(name, data_dir):
    """Download NAME's official files (if missing) and verify every one."""
    from tfbdl.data import fetch as fetch_dataset

    for role, path in fetch_dataset(name, data_dir).items():
        click.echo(f"{role}: {path} (verified)")


@data.command()
@common_run_options
def check(scale, out, data_dir, seed, resume):
    """The data-check experiment: load what each paper needs, check known facts, draw samples."""
    from tfbdl.cli.data_check import run_data_check

    run = run_data_check(scale=scale, out=out, data_dir=data_dir, seed=seed, resume=resume)
    click.echo(f"data check written to {run.path}")
