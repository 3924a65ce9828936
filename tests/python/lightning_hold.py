"""Runs examples/lightning/train.py (argv[1]) with its arguments (argv[3:]),
holding at global step argv[2] until a line arrives on stdin.  The test sends
its signal while the child holds there, so the signal lands mid-training
however fast or busy the machine is; then it writes the line."""

import importlib.util
import sys


def main():
    path, hold_at, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    spec = importlib.util.spec_from_file_location("lightning_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    step = example.Regressor.training_step
    held = []

    def training_step(self, batch, batch_idx):
        if not held and self.trainer.global_step == hold_at:
            held.append(hold_at)
            print("holding at step %d" % hold_at, flush=True)
            sys.stdin.readline()
        return step(self, batch, batch_idx)

    example.Regressor.training_step = training_step
    example.main(args)


if __name__ == "__main__":
    main()
