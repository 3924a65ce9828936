"""A checkpoint written by the LibTorch trainer (examples/cpp/train.cpp) is a
plain dict for Python's torch.load, and Python continues the training from
it with torch.optim.Adam: one more epoch in Python lands where the C++
trainer's own next epoch landed.

usage: /usr/bin/python3 python_interop.py TRAINER   (exit 77: no torch here)
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


def main():
    trainer = sys.argv[1]
    torch.set_num_threads(1)
    seed, samples, batch, hidden, epochs = 1, 256, 32, 64, 7
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = os.path.join(tmp, "ckpts")
        subprocess.run([trainer, "--dir", ckpts, "--epochs", str(epochs), "--samples", str(samples),
                        "--batch", str(batch), "--hidden", str(hidden), "--seed", str(seed),
                        "--lr-step", "3", "--save-every-epochs", "1", "--save-every-seconds", "0"],
                       check=True, stdout=subprocess.DEVNULL)
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
