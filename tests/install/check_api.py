"""Every public function, class and method of the ckptdb package has a
docstring and type annotations on every parameter and its return.

Usage: python check_api.py [--torch]   (ckptdb importable; --torch: also
ckptdb.torch and ckptdb.distributed, which need torch).  Exit 1 with one
line per gap."""

import importlib
import inspect
import sys

MODULES = ["ckptdb", "ckptdb.catalog", "ckptdb.signals", "ckptdb.errors"]
if "--torch" in sys.argv[1:]:
    MODULES += ["ckptdb.torch", "ckptdb.distributed"]

# Methods whose meaning is the protocol's own: no docstring asked for.
PROTOCOL = {"__init__", "__new__", "__enter__", "__exit__", "__del__", "__repr__", "__eq__"}

gaps = []
checked = 0


def check_callable(where, f, need_doc=True):
    global checked
    checked += 1
    if need_doc and not (inspect.getdoc(f) or "").strip():
        gaps.append("%s: no docstring" % where)
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    for p in params:
        if p.annotation is inspect.Parameter.empty:
            gaps.append("%s: parameter %s has no annotation" % (where, p.name))
    if sig.return_annotation is inspect.Signature.empty:
        gaps.append("%s: no return annotation" % where)


for name in MODULES:
    mod = importlib.import_module(name)
    if not (mod.__doc__ or "").strip():
        gaps.append("%s: no module docstring" % name)
    for attr in getattr(mod, "__all__", []):
        obj = getattr(mod, attr)
        where = "%s.%s" % (name, attr)
        if inspect.isclass(obj):
            if getattr(obj, "__module__", "").split(".")[0] != "ckptdb":
                continue
            if not (obj.__doc__ or "").strip():
                gaps.append("%s: no class docstring" % where)
            for m, v in vars(obj).items():
                if m.startswith("_") and m not in PROTOCOL:
                    continue
                if isinstance(v, property):
                    if not (v.__doc__ or "").strip():
                        gaps.append("%s.%s: property without docstring" % (where, m))
                    if v.fget is not None:
                        check_callable("%s.%s" % (where, m), v.fget, need_doc=False)
                    continue
                if isinstance(v, (staticmethod, classmethod)):
                    v = v.__func__
                if inspect.isfunction(v):
                    if m == "__init__" and obj.__init__ is not v:
                        continue
                    check_callable("%s.%s" % (where, m), v, need_doc=m not in PROTOCOL)
        elif inspect.isfunction(obj):
            if obj.__module__.split(".")[0] != "ckptdb":
                continue
            check_callable(where, obj)

for g in gaps:
    print(g)
print("check_api: %d callables in %s, %d gaps" % (checked, ", ".join(MODULES), len(gaps)))
sys.exit(1 if gaps or checked < 40 else 0)
