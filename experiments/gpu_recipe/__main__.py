"""``python -m experiments.gpu_recipe [OUT.sh]``: print (or write) the GPU recipe as a bash script."""

from __future__ import annotations

import sys

from experiments.gpu_recipe.recipe import shell_script
from moesched_base.atomic import atomic_write_text


def main(argv: list[str]) -> int:
    """Print the script, or write it to ``argv[0]``."""
    if not argv:
        print(shell_script())
    else:
        atomic_write_text(argv[0], shell_script() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
