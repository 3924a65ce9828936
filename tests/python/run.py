"""Runs one pytest file of the python suite; exits 77 (skipped) when this
interpreter lacks pytest, or torch for a file that needs it."""
import sys

needs_torch = sys.argv[1] == "--needs-torch"
try:
    import pytest
except ImportError:
    print("skipped: this interpreter has no pytest", file=sys.stderr)
    sys.exit(77)
if needs_torch:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: this interpreter has no torch", file=sys.stderr)
        sys.exit(77)
sys.exit(pytest.main(["-q", "-s", "-p", "no:cacheprovider", "-rs", *sys.argv[2:]]))
