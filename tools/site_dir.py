"""Where `meson install` puts the Python package: the directory under PREFIX
that this interpreter has on its sys.path (Debian's python3 reads
/usr/local/lib/python3.X/dist-packages for /usr/local, and
/usr/lib/python3/dist-packages for /usr; a venv's python its own
site-packages).  Prints it relative to PREFIX, or nothing when no directory
of sys.path lies under PREFIX (meson then uses its own default).

Usage: python site_dir.py PREFIX"""

import os
import sys

prefix = os.path.realpath(sys.argv[1])
found = []
for p in sys.path:
    if not p or os.path.basename(p.rstrip(os.sep)) not in ("site-packages", "dist-packages"):
        continue
    real = os.path.realpath(p)
    if real.startswith(prefix + os.sep):
        found.append(os.path.relpath(real, prefix))
# PREFIX's own lib/ before a directory of another prefix below it (/usr has
# /usr/local/lib/... on the path too); then a versioned directory (python3.11)
# before a shared one (python3).
found.sort(key=lambda d: (not d.startswith("lib"), "python3." not in d, d))
print(found[0] if found else "")
