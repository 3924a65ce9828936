"""The ``ckptdb`` command of a pip-installed package.

pip puts this console script on the environment's PATH; it replaces itself
(``os.execv``) with the compiled command that lies inside the package, next
to the library it links, so exit codes, signals and the terminal are the
command's own.
"""

import importlib
import os
import sys



def main() -> None:
    """Run the ckptdb command inside this package with this process's arguments."""
    try:
        path = str(importlib.import_module("._installed", __package__).COMMAND)
    except ImportError:  # the source tree
        path = ""
    if not path:
        sys.stderr.write("ckptdb: this installation of the Python package carries no ckptdb command "
                         "(install the ckptdb command itself, e.g. with meson install)\n")
        sys.exit(1)
    os.execv(path, [path] + sys.argv[1:])


if __name__ == "__main__":
    main()
