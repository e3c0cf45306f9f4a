"""``python -m tfbdl.cli``: the same commands as the ``tfbdl`` console script."""

import sys

from tfbdl.cli.main import main

if __name__ == "__main__":
    main(sys.argv[1:])
