"""A checkpoint written by the LibTorch trainer (examples/cpp/train.cpp) is a
plain dict for Python's torch.load, and Python continues the training from
it with torch.optim.Adam: one more epoch in Python lands where the C++
trainer's own next epoch landed.

Every load is plain torch.load(path), torch's default arguments: on torch >=
2.6 that is the safe weights-only unpickler.  Files of write_state (RNG, an
enabled grad scaler, extras of every plain kind; written by a synchronous
save, an asynchronous one and training_state::write) load the same way, and
every value comes back exactly.

usage: python_interop.py TRAINER WRITE_STATE   (exit 77: no torch here)
"""
import os
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("skip: this Python has no torch")
    sys.exit(77)

M = (1 << 64) - 1
FEATURES = 16


def mix(z):
    z = (z + 0x9E3779B97F4A7C15) & M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def uniform(seed, k):
    return (mix((seed * 0x100000001B3 + k) & M) >> 11) * 2.0 ** -53 * 2.0 - 1.0


def make_data(seed, samples):
    xs, ys = [], []
    for i in range(samples):
        t = 0.0
        row = []
        for j in range(FEATURES):
            v = uniform(seed, i * FEATURES + j)
            row.append(v)
            t += ((j % 5) - 2) * 0.25 * v
        xs.extend(row)
        ys.append(t + 0.5 * row[0] * row[1])
    x = torch.tensor(xs, dtype=torch.float64).reshape(samples, FEATURES).float()
    y = torch.tensor(ys, dtype=torch.float64).reshape(samples, 1).float()
    return x, y


def order(seed, samples, epoch):
    p = list(range(samples))
    s = seed ^ (((epoch + 1) * 0xD1B54A32D192ED03) & M)
    for i in range(samples - 1, 0, -1):
        s = mix(s)
        j = s % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        sys.exit(1)


def same(a, b, where):
    """a == b, recursively, with the same Python types; tensors equal in
    dtype, shape and every value."""
    check(type(a) is type(b), "%s: %s, expected %s" % (where, type(a).__name__, type(b).__name__))
    if isinstance(a, torch.Tensor):
        check(a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), "%s: tensor %r, expected %r" % (where, a, b))
    elif isinstance(a, dict):
        check(set(a) == set(b), "%s: keys %s, expected %s" % (where, sorted(map(str, a)), sorted(map(str, b))))
        for k in a:
            same(a[k], b[k], "%s[%r]" % (where, k))
    elif isinstance(a, (list, tuple)):
        check(len(a) == len(b), "%s: length %d, expected %d" % (where, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s[%d]" % (where, i))
    else:
        check(a == b, "%s: %r, expected %r" % (where, a, b))


def check_full_states(writer):
    """Files of every writer of libckptdb_torch load with plain torch.load;
    RNG, scaler and extras are exactly what was saved."""
    torch.manual_seed(1234)
    torch.rand(3)
    rng_expected = torch.get_rng_state()
    extras_expected = {
        "int": 1 << 40, "neg": -7, "float": 0.1, "str": "na\u00efve \u2713", "bool": True, "none": None,
        "complex": complex(1.5, -2.0), "device": torch.device("cpu"),
        "ints": [1, 2, 3], "floats": [0.5, 1e-300], "bools": [True, False], "strs": ["a", "b"],
        "tensors": [torch.arange(3), torch.ones(2, 2, dtype=torch.float64)],
        "tuple": (1, "x", 2.5),
        "nested": {"a": [1, "x"], "b": {3: 4.0}, "t": torch.arange(6, dtype=torch.float64).reshape(2, 3) / 3},
        "empty_list": [], "empty_dict": {},
    }
    scaler_expected = {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 100,
                       "_growth_tracker": 7}
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([writer, tmp], check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()
        paths = [line.split(" ", 1)[1] for line in out if line.startswith("file: ")]
        next_rand = [float.fromhex(x) for line in out if line.startswith("next_rand:") for x in line.split()[1:]]
        check(len(paths) == 3 and len(next_rand) == 4, "write_state printed %r" % out)
        states = []
        for path in paths:
            try:
                d = torch.load(path)  # torch's defaults: weights_only=True on torch >= 2.6
            except Exception as e:
                check(False, "plain torch.load(%s) failed: %s" % (path, e))
            # The same with the safe loader asked for by name (also on an older torch).
            same(torch.load(path, weights_only=True), d, path + " (weights_only=True)")
            states.append((path, d))
    for path, d in states:
        check(type(d) is dict, "%s: %s, not a dict" % (path, type(d)))
        check(set(d) == {"epoch", "step", "model", "optimizer", "sgd", "scheduler", "rng", "scaler", "extra"},
              "%s: keys %s" % (path, sorted(d)))
        same(d["rng"]["torch"], rng_expected, path + ": rng.torch")
        same(d["rng"]["cuda"], [], path + ": rng.cuda")
        same(d["scaler"], scaler_expected, path + ": scaler")
        same(d["extra"], extras_expected, path + ": extra")
        same({k: v for k, v in d.items() if k not in ("epoch", "step")},
             {k: v for k, v in states[0][1].items() if k not in ("epoch", "step")},
             path + " against " + states[0][0])
    check([(d["epoch"], d["step"]) for _, d in states] == [(3, 30), (4, 40), (5, 50)],
          "epoch/step %s" % [(d["epoch"], d["step"]) for _, d in states])

    # They load into torch's own objects and the RNG continues as in C++.
    d = states[0][1]
    model = torch.nn.Linear(3, 2)
    model.load_state_dict(d["model"], strict=True)
    adam = torch.optim.Adam(model.parameters(), lr=0.01)
    adam.load_state_dict(d["optimizer"])
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sgd.load_state_dict(d["sgd"])
    check(all(s["momentum_buffer"] is not None for s in sgd.state.values()) and len(sgd.state) == 2,
          "SGD momentum buffers %r" % sgd.state_dict()["state"])
    sched = torch.optim.lr_scheduler.StepLR(adam, step_size=2, gamma=0.5)
    sched.load_state_dict(d["scheduler"])
    check(sched.last_epoch == 3, "scheduler last_epoch %d" % sched.last_epoch)
    scaler = torch.amp.GradScaler("cpu")
    scaler.load_state_dict(d["scaler"])
    check(scaler.get_scale() == 1024.0 and scaler.state_dict()["_growth_tracker"] == 7,
          "GradScaler state %r" % scaler.state_dict())
    torch.set_rng_state(d["rng"]["torch"])
    got = torch.rand(4).tolist()
    check(got == next_rand, "torch.rand(4) after the loaded RNG state: %r, C++ drew %r" % (got, next_rand))
    print("ok: plain torch.load reads the sync, async and write() files; RNG, scaler and %d extras exact"
          % len(extras_expected))


def main():
    trainer = sys.argv[1]
    check_full_states(sys.argv[2])
    torch.set_num_threads(1)
    seed, samples, batch, hidden, epochs = 1, 256, 32, 64, 7
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = os.path.join(tmp, "ckpts")
        subprocess.run([trainer, "--dir", ckpts, "--epochs", str(epochs), "--samples", str(samples),
                        "--batch", str(batch), "--hidden", str(hidden), "--seed", str(seed),
                        "--lr-step", "3", "--save-every-epochs", "1", "--save-every-seconds", "0"],
                       check=True, stdout=subprocess.DEVNULL)
        # Plain torch.load: torch's default arguments (weights_only=True on torch >= 2.6).
        before = torch.load(os.path.join(ckpts, "epoch_006.pt"))
        after = torch.load(os.path.join(ckpts, "epoch_007.pt"))

    # The layout: a plain dict with the documented keys.
    check(type(before) is dict, "torch.load gave %s, not a dict" % type(before))
    check(set(before) == {"epoch", "step", "model", "optimizer", "scheduler", "rng", "scaler", "extra"},
          "keys %s" % sorted(before))
    spe = samples // batch
    check(before["epoch"] == 6 and before["step"] == 6 * spe, "epoch/step %s/%s" % (before["epoch"], before["step"]))
    check(isinstance(before["rng"]["torch"], torch.Tensor) and before["rng"]["torch"].dtype == torch.uint8,
          "rng state is not a ByteTensor")
    check(before["scaler"] == {}, "scaler %r" % before["scaler"])
    check(isinstance(before["extra"]["loss"], float), "extra %r" % before["extra"])
    check(before["scheduler"]["last_epoch"] == 6, "scheduler %r" % before["scheduler"])

    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                                torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    model.load_state_dict(before["model"], strict=True)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    opt.load_state_dict(before["optimizer"])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    sched.load_state_dict(before["scheduler"])
    torch.set_rng_state(before["rng"]["torch"])
    check(len(opt.state) == 6, "optimizer state for %d parameters" % len(opt.state))
    check(all(float(s["step"]) == 6 * spe for s in opt.state.values()), "Adam step counts")

    # Epoch 7, in Python, on the same data in the same order.
    x, y = make_data(seed, samples)
    idx_all = torch.tensor(order(seed, samples, 6), dtype=torch.long)
    for pos in range(spe):
        idx = idx_all[pos * batch:(pos + 1) * batch]
        opt.zero_grad()
        loss = F.mse_loss(model(x.index_select(0, idx)), y.index_select(0, idx))
        loss.backward()
        opt.step()
    sched.step()

    worst = 0.0
    exact = True
    for k, v in model.state_dict().items():
        ref = after["model"][k]
        worst = max(worst, float((v - ref).abs().max()))
        exact = exact and torch.equal(v, ref)
        check(torch.allclose(v, ref, rtol=1e-5, atol=1e-6), "parameter %s differs from the C++ run's epoch 7" % k)
    py_state = opt.state_dict()
    for i, s in py_state["state"].items():
        ref = after["optimizer"]["state"][i]
        check(float(s["step"]) == float(ref["step"]), "Adam step of parameter %d" % i)
        for key in ("exp_avg", "exp_avg_sq"):
            check(torch.allclose(s[key], ref[key], rtol=1e-5, atol=1e-7), "%s of parameter %d" % (key, i))
    print("ok: torch.load gives a plain dict; Python continued epoch 7 with torch.optim.Adam and matches the "
          "C++ run (%s, largest difference %.3g)" % ("bit-identical" if exact else "within 1e-5", worst))


if __name__ == "__main__":
    main()
