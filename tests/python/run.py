"""Runs one pytest file of the python suite; exits 77 (skipped) when this
interpreter lacks pytest, or torch (at least the version ckptdb.torch needs,
2.0) for a file that needs it."""
import re
import sys

MIN_TORCH = (2, 0)  # ckptdb.torch.MIN_TORCH; not imported: that import refuses an older torch

needs_torch = sys.argv[1] == "--needs-torch"
try:
    import pytest
except ImportError:
    print("skipped: this interpreter has no pytest", file=sys.stderr)
    sys.exit(77)
if needs_torch:
    try:
        import torch
    except ImportError:
        print("skipped: this interpreter has no torch", file=sys.stderr)
        sys.exit(77)
    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if not m or (int(m.group(1)), int(m.group(2))) < MIN_TORCH:
        print("skipped: this interpreter (%s) has torch %s; ckptdb.torch needs %d.%d or later"
              % ((sys.executable, torch.__version__) + MIN_TORCH), file=sys.stderr)
        sys.exit(77)
sys.exit(pytest.main(["-q", "-s", "-p", "no:cacheprovider", "-rs", *sys.argv[2:]]))
