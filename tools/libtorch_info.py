#!/usr/bin/env python3
"""Find a LibTorch and describe it for meson (bindings/torch/meson.build).

usage: libtorch_info.py [--min X.Y] --root DIR
           DIR: a LibTorch root, the torch/ folder of a torch wheel or an
           unpacked libtorch archive (include/, lib/, share/cmake/)
       libtorch_info.py [--min X.Y] --python PYTHON
           the LibTorch inside the torch package that PYTHON imports

Prints seven lines on success (exit 0), in this order (meson reads them by
position):
  the version (major.minor.patch), the ABI flag (0 or 1), where the ABI flag
  was read, the absolute root, the library directory (<root>/lib, or lib64,
  lib/<multiarch>), the include directories <root>/include and
  <root>/include/torch/csrc/api/include.
On failure prints one line naming what is missing to stderr and exits 1;
with --min, a LibTorch older than X.Y is a failure that names both versions.

The C++ ABI flag (-D_GLIBCXX_USE_CXX11_ABI) is read, in this order, from the
torch package itself (torch._C._GLIBCXX_USE_CXX11_ABI, when found through
--python), from TORCH_CXX_FLAGS in share/cmake/Torch/TorchConfig.cmake (set
by LibTorch releases that offered both ABIs), and else from the symbols of
libc10.so (std::__cxx11 names appear only in a library built with the new ABI).
"""
import argparse
import os
import re
import subprocess
import sys
import sysconfig

LIBS = ("torch", "torch_cpu", "c10")
VERSION_HEADERS = (
    "include/torch/headeronly/version.h",        # 2.9 and later
    "include/torch/csrc/api/include/torch/version.h",
    "include/torch/version.h",
)


def fail(msg):
    print("libtorch_info: " + msg, file=sys.stderr)
    sys.exit(1)


def from_python(python):
    code = ("import os, torch; print(os.path.dirname(torch.__file__)); "
            "print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)")
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    except OSError as e:
        fail("cannot run the Python interpreter %s: %s" % (python, e))
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        fail("%s cannot import torch (%s): run tools/setup.sh, or pass -Dlibtorch=<LibTorch root>" % (python, last))
    root, abi, version = r.stdout.split()[:3]
    return root, int(abi), version


def read_version(root):
    for rel in VERSION_HEADERS:
        path = os.path.join(root, rel)
        try:
            text = open(path, encoding="utf-8", errors="replace").read()
        except OSError:
            continue
        parts = [re.search(r"#define\s+TORCH_VERSION_%s\s+(\d+)" % k, text) for k in ("MAJOR", "MINOR", "PATCH")]
        if all(parts):
            return ".".join(p.group(1) for p in parts)
    # Releases before the macros: the CMake package's version.
    path = os.path.join(root, "share/cmake/Torch/TorchConfigVersion.cmake")
    try:
        m = re.search(r'set\(PACKAGE_VERSION\s+"([0-9.]+)', open(path).read())
        if m:
            return m.group(1)
    except OSError:
        pass
    fail("%s: no LibTorch version found (none of %s)" % (root, ", ".join(VERSION_HEADERS)))


def vtuple(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def abi_from_cmake(root):
    path = os.path.join(root, "share/cmake/Torch/TorchConfig.cmake")
    try:
        text = open(path).read()
    except OSError:
        return None
    m = re.search(r"_GLIBCXX_USE_CXX11_ABI=([01])", text)
    return int(m.group(1)) if m else None


def abi_from_symbols(libdir):
    path = os.path.join(libdir, "libc10.so")
    with open(path, "rb") as f:
        data = f.read()
    return 1 if b"__cxx11" in data else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root")
    ap.add_argument("--python")
    ap.add_argument("--min", help="the oldest LibTorch accepted, e.g. 2.6")
    a = ap.parse_args()
    abi = abi_source = None
    if a.root:
        root = os.path.abspath(os.path.expanduser(a.root))
        if not os.path.isdir(root):
            fail("LibTorch root %s: no such directory" % root)
    elif a.python:
        root, abi, _ = from_python(a.python)
        abi_source = "torch._C._GLIBCXX_USE_CXX11_ABI of " + a.python
    else:
        fail("give --root or --python")

    header = os.path.join(root, "include/torch/csrc/api/include/torch/torch.h")
    if not os.path.isfile(header):
        fail("LibTorch root %s has no include/torch/csrc/api/include/torch/torch.h "
             "(expected the torch/ folder of a wheel or an unpacked libtorch archive)" % root)
    version = read_version(root)
    if a.min and vtuple(version) < vtuple(a.min):
        fail("LibTorch %s at %s is too old: ckptdb_torch needs LibTorch >= %s "
             "(tools/setup.sh installs torch 2.13.0; or pass -Dlibtorch=<root of a newer LibTorch>)"
             % (version, root, a.min))
    # lib/ in a wheel or an archive; lib/<multiarch> in a distribution's layout.
    candidates = [os.path.join(root, d) for d in ("lib", "lib64", "lib/" + (sysconfig.get_config_var("MULTIARCH") or ""))]
    libdir = next((d for d in candidates if os.path.exists(os.path.join(d, "libtorch_cpu.so"))), candidates[0])
    for lib in LIBS:
        if not os.path.exists(os.path.join(libdir, "lib%s.so" % lib)):
            fail("LibTorch root %s has no %s/lib%s.so" % (root, os.path.relpath(libdir, root), lib))
    if abi is None:
        abi = abi_from_cmake(root)
        abi_source = "TORCH_CXX_FLAGS in share/cmake/Torch/TorchConfig.cmake"
    if abi is None:
        abi = abi_from_symbols(libdir)
        abi_source = "the symbols of lib/libc10.so"
    for line in (version, str(abi), abi_source, root, libdir, os.path.join(root, "include"),
                 os.path.join(root, "include/torch/csrc/api/include")):
        if "\n" in line:
            fail("a path with a newline: %r" % line)
        print(line)


if __name__ == "__main__":
    main()
