# Async save of a CUDA model (about 1 GiB of float32) through the Python
# binding: how long save() blocks the training loop, against the
# device-to-host copy alone, and that the committed bytes equal the model's
# at the moment of the save while the loop goes on training.
#   CKPTDB_LIBRARY=build/capi/libckptdb.so.1 PYTHONPATH=bindings/python \
#     python3 bench/bench_python_cuda.py
# Exits 0 without measuring where torch has no CUDA (CPU_DRY_RUN=1 runs a
# small CPU model instead, to check the script itself).
import os, sys, time, tempfile, statistics
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), flush=True)
dev = "cuda" if torch.cuda.is_available() else "cpu"
if dev == "cpu" and not os.environ.get("CPU_DRY_RUN"):
    sys.exit(0)
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
import ckptdb, ckptdb.torch as ct
print(torch.cuda.get_device_name(0) if dev == "cuda" else "cpu dry run", flush=True)
d = tempfile.mkdtemp(dir=os.environ.get("OUT", "/tmp"))
cat = ckptdb.Catalog(os.path.join(d, "ckpts"))
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(16 if dev == "cuda" else 2)]).to(dev)   # ~1 GiB of float32
opt = torch.optim.SGD(model.parameters(), lr=1e-3)
x = torch.randn(256, 4096, device=dev)
def step():
    opt.zero_grad(); model(x).square().mean().backward(); opt.step()
for _ in range(3): step()
sync()
size = sum(p.numel() * p.element_size() for p in model.state_dict().values())
print("state: %.0f MiB" % (size / 2**20), flush=True)
copy, blocked = [], []
saver = ct.AsyncSaver(cat)
for r in range(4):
    sync(); t0 = time.perf_counter()
    snap = ct.snapshot(model.state_dict()); sync()
    copy.append(time.perf_counter() - t0); del snap
    step(); sync()
    ref = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    saver.save({"model": model.state_dict(), "step": r}, kind="step", epoch=0, step=r)
    blocked.append(time.perf_counter() - t0)
    for _ in range(5): step()          # the loop goes on changing the weights while the save is written
    sync()
    e = saver.wait()
    got = torch.load(e.path if hasattr(e, "path") else e["path"], map_location="cpu")
    same = all(torch.equal(got["model"][k], ref[k]) for k in ref)
    print("rep %d: copy %.3f s, save() blocked %.3f s, committed bytes equal the state at save time: %s"
          % (r, copy[-1], blocked[-1], same), flush=True)
    assert same
c, b = statistics.median(copy[1:]), statistics.median(blocked[1:])
print("RESULT cuda async save: loop blocked %.3f s, host copy alone %.3f s, ratio %.3fx (target <= 1.2x)" % (b, c, b / c))
