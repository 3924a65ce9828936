"""A user's first script after `pip install`: save, resume, list with the
command.  Run from a directory outside the source tree with no PYTHONPATH,
LD_LIBRARY_PATH or CKPTDB_LIBRARY.  Usage: user.py VERSION VENV"""

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import ckptdb


def main() -> None:
    version, venv = sys.argv[1], os.path.realpath(sys.argv[2])
    for var in ("PYTHONPATH", "LD_LIBRARY_PATH", "CKPTDB_LIBRARY"):
        assert var not in os.environ, var
    # Package, library and command all come from the environment.
    assert os.path.realpath(ckptdb.__file__).startswith(venv), ckptdb.__file__
    lib_path = os.path.realpath(ckptdb._lib.lib._name)
    assert lib_path.startswith(venv), lib_path
    assert importlib.metadata.version("ckptdb") == version, importlib.metadata.version("ckptdb")
    assert ckptdb.__version__ == version == ckptdb.version(), ckptdb.__version__
    requires = importlib.metadata.requires("ckptdb") or []
    assert any(r.startswith("torch") and 'extra == "torch"' in r for r in requires), requires
    share = os.path.join(os.path.dirname(ckptdb.__file__), "share")
    for data in ("schema/0001_initial.sql", "cookbook/newest_per_kind.sql", "bash-completion/ckptdb"):
        assert os.path.isfile(os.path.join(share, data)), data
    command = shutil.which("ckptdb")
    assert command is not None and os.path.realpath(command).startswith(venv), command

    # torch is an extra: without it, the catalog works and ckptdb.torch says why it cannot.
    try:
        importlib.import_module("ckptdb.torch")
    except ImportError as e:
        assert "torch" in str(e), e
        print("ckptdb.torch without torch:", str(e).split(":")[0])

    # Save twice, resume from the newest, verified.
    with ckptdb.Catalog("ckpts", retention="default") as cat:
        for epoch in (1, 2):
            with cat.save(kind="epoch", epoch=epoch, step=10 * epoch, metrics={"loss": 1.0 / epoch}) as f:
                f.write(b"state of epoch %d" % epoch)
    with ckptdb.Catalog("ckpts") as cat:
        latest = cat.latest()
        assert latest is not None and latest.name == "epoch_002.pt", latest
        assert cat.read(latest) == b"state of epoch 2"
        cat.mark_resumed(latest)
        print("resumed from", latest.name, "at step", latest.step)

    # The command on PATH lists them.
    r = subprocess.run(["ckptdb", "ls", "--json", "ckpts"], capture_output=True, text=True, check=True)
    doc = json.loads(r.stdout)
    names = sorted(row["name"] for row in doc["checkpoints"])
    assert names == ["epoch_001.pt", "epoch_002.pt"], r.stdout
    r = subprocess.run(["ckptdb", "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "ckptdb " + version, r.stdout
    r = subprocess.run(["ckptdb", "show", "ckpts", "no-such-checkpoint"], capture_output=True, text=True)
    assert r.returncode == 4, (r.returncode, r.stderr)  # the command's own exit codes pass through
    print("ckptdb ls --json:", names)


if __name__ == "__main__":
    main()
