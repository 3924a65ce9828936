"""The README's code blocks, taken from README.md itself.

A block in c, cpp, python, cmake or meson is either a program, whose first
line names its file ("/* main.c: ...", "# train.py: ..."), or says
"Fragment:" on the line above it.  Every program has a runner in the test
suite (RUNNERS); this script runs the C and Python ones, the install tests
(cmake.sh, meson_subproject.sh) extract and build the others with --extract.

  readme.py README --extract NAME DIR     write program NAME to DIR/NAME
  readme.py README --check                every block is a program or a fragment,
                                          every program has a runner
  readme.py README --run-c CC CFLAGS... -- LIBS...   compile main.c, run it twice
  readme.py README --run-python PY        run the Python programs twice each
                                          (environment as given: PYTHONPATH, CKPTDB_LIBRARY)
"""

import os
import re
import subprocess
import sys
import tempfile

PROGRAM_LANGS = {"c", "cpp", "python", "cmake", "meson"}
NAME_RE = re.compile(r"^(?:/\*|//|#)\s*([\w.-]+\.(?:c|cpp|py|txt|build)):")

# Program -> what runs it, and what each of two runs in a fresh directory
# must print (the second run resumes from the first one's checkpoints).
RUNNERS = {
    "main.c": "readme (here), cmake-package, meson-subproject",
    "CMakeLists.txt": "cmake-package",
    "train.cpp": "cmake-package",
    "meson.build": "meson-subproject",
    "train.py": "readme (here)",
    "catalog_api.py": "readme (here)",
}
EXPECT = {
    "main.c": (["fresh start", "saved epoch checkpoint at step 12", "done at epoch 3, step 12"],
               ["resumed from epoch_003.pt at step 12", "done at epoch 3, step 12"]),
    "train.py": (["starting at epoch 0, step 0", "finished at epoch 3, step 15"],
                 ["starting at epoch 3, step 15", "finished at epoch 3, step 15"]),
    "catalog_api.py": (["loaded epoch_001.pt: epoch 1"], ["loaded epoch_002.pt: epoch 2"]),
}


def blocks(path):
    """(line, lang, name or None, fragment, text) of every fenced block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and lines[j] != "```":
            j += 1
        if j == len(lines):
            sys.exit("README line %d: a block that never ends" % (start + 1))
        body = lines[i + 1:j]
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        fragment = k >= 0 and lines[k].strip() == "Fragment:"
        nm = NAME_RE.match(body[0]) if body else None
        out.append((start + 1, lang, nm.group(1) if nm else None, fragment, "\n".join(body) + "\n"))
        i = j + 1
    return out


def programs(path):
    progs = {}
    for line, lang, name, fragment, text in blocks(path):
        if name and lang in PROGRAM_LANGS and not fragment:
            if name in progs:
                sys.exit("README line %d: a second program named %s" % (line, name))
            progs[name] = text
    return progs


def check(path):
    problems = []
    n_prog = n_frag = 0
    for line, lang, name, fragment, text in blocks(path):
        if lang not in PROGRAM_LANGS:
            continue
        if fragment and name:
            problems.append("line %d: a block marked Fragment: names a file (%s)" % (line, name))
        elif fragment:
            n_frag += 1
        elif not name:
            problems.append("line %d: a %s block neither names its file on its first line nor says "
                            "'Fragment:' above it" % (line, lang))
        elif name not in RUNNERS:
            problems.append("line %d: program %s has no runner in the test suite" % (line, name))
        else:
            n_prog += 1
    progs = programs(path)
    for name in RUNNERS:
        if name not in progs:
            problems.append("program %s, which the tests run, is not in the README" % name)
    for p in problems:
        print("README:", p)
    print("readme: %d programs, %d fragments" % (n_prog, n_frag))
    return not problems


def run_twice(name, argv, env=None):
    """Run argv twice in one fresh directory; check both outputs."""
    ok = True
    with tempfile.TemporaryDirectory(prefix="ckptdb-readme-") as d:
        for i, want in enumerate(EXPECT[name]):
            r = subprocess.run(argv, cwd=d, env=env, capture_output=True, text=True, timeout=300)
            print("--- %s, run %d (exit %d)\n%s%s" % (name, i + 1, r.returncode, r.stdout, r.stderr))
            if r.returncode != 0:
                ok = False
                continue
            for w in want:
                if w not in r.stdout:
                    print("%s run %d: expected %r in its output" % (name, i + 1, w))
                    ok = False
    return ok


def main():
    readme, cmd = sys.argv[1], sys.argv[2]
    if cmd == "--extract":
        name, outdir = sys.argv[3], sys.argv[4]
        progs = programs(readme)
        if name not in progs:
            sys.exit("README has no program %s" % name)
        with open(os.path.join(outdir, name), "w") as f:
            f.write(progs[name])
        return 0
    if cmd == "--check":
        return 0 if check(readme) else 1
    if cmd == "--run-c":
        rest = sys.argv[3:]
        sep = rest.index("--")
        compile_cmd, libs = rest[:sep], rest[sep + 1:]
        with tempfile.TemporaryDirectory(prefix="ckptdb-readme-c-") as d:
            src, exe = os.path.join(d, "main.c"), os.path.join(d, "main")
            with open(src, "w") as f:
                f.write(programs(readme)["main.c"])
            r = subprocess.run(compile_cmd + [src, "-o", exe] + libs, capture_output=True, text=True)
            if r.returncode != 0:
                print("compiling main.c failed:\n" + r.stdout + r.stderr)
                return 1
            return 0 if run_twice("main.c", [exe]) else 1
    if cmd == "--run-python":
        py = sys.argv[3]
        ok = True
        progs = programs(readme)
        with tempfile.TemporaryDirectory(prefix="ckptdb-readme-py-") as d:
            for name in ("train.py", "catalog_api.py"):
                path = os.path.join(d, name)
                with open(path, "w") as f:
                    f.write(progs[name])
                ok = run_twice(name, [py, path]) and ok
        return 0 if ok else 1
    sys.exit("readme.py: unknown command %s" % cmd)


if __name__ == "__main__":
    sys.exit(main())
