#!/usr/bin/env python3
"""Side-by-side training speed: candle-mtl's seed CNN vs the same model in PyTorch.

Not run by CI. Both programs train the same model (conv 1->32 3x3, pool, conv 32->64 3x3, pool,
linear 3136->128, a 10-way cross-entropy head and an MSE regression head, Adam 1e-3) on the
same MNIST digits, in batches prepared before the clock starts, with the same batch size and
thread count. Each round runs the Rust example and the PyTorch loop once, back to back, in
alternating order, in fresh processes; the ratio is taken per round and reported as
min / median / max.

    cargo build --release --example throughput
    python3 benches/pytorch/compare.py --threads 2 --rounds 7

Needs torch and numpy (pip install torch numpy).
"""
import argparse
import gzip
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import time


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return dims, data[4 + 4 * ndim :]


def find(dir_, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(dir_, name)
        if os.path.exists(p):
            return p
    raise SystemExit(f"{stem}(.gz) not found in {dir_}")


def torch_rate(args):
    """Samples/s of `args.steps` PyTorch training steps (after `args.warmup`)."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dims, pixels = read_idx(find(args.data_dir, "train-images-idx3-ubyte"))
    _, labels = read_idx(find(args.data_dir, "train-labels-idx1-ubyte"))
    n, b = dims[0], args.batch_size
    images = np.frombuffer(pixels, dtype=np.uint8).reshape(n, 1, 28, 28).astype(np.float32)
    images = (images / 255.0 - 0.1307) / 0.3081
    labels = np.frombuffer(labels, dtype=np.uint8).astype(np.int64)
    batches = []
    for i in range(min(16, n // b)):
        x = torch.from_numpy(images[i * b : (i + 1) * b].copy())
        y = torch.from_numpy(labels[i * b : (i + 1) * b].copy())
        batches.append((x, y, y.float()))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0 = nn.Conv2d(1, 32, 3, padding=1)
            self.conv1 = nn.Conv2d(32, 64, 3, padding=1)
            self.fc = nn.Linear(3136, 128)
            self.digit = nn.Linear(128, 10)
            self.value = nn.Linear(128, 1)

        def forward(self, x):
            h = F.max_pool2d(F.relu(self.conv0(x)), 2)
            h = F.max_pool2d(F.relu(self.conv1(h)), 2)
            h = F.relu(self.fc(h.flatten(1)))
            return self.digit(h), self.value(h).squeeze(1)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(i):
        x, y, v = batches[i % len(batches)]
        logits, value = net(x)
        loss = F.cross_entropy(logits, y) + F.mse_loss(value, v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(args.warmup):
        step(i)
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    return args.steps * b / (time.perf_counter() - start)


def rust_rate(args):
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    cmd = [
        args.rust_bin,
        "--variants", "trainer",
        "--rounds", "1",
        "--steps", str(args.steps),
        "--warmup", str(args.warmup),
        "--batch-size", str(args.batch_size),
        "--data-dir", args.data_dir,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    m = re.search(r"round 1:\s+trainer (\d+(?:\.\d+)?)", out.stdout)
    if not m:
        raise SystemExit(f"no rate in the output of {args.rust_bin}:\n{out.stdout}")
    return float(m.group(1))


def torch_rate_subprocess(args):
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--torch-only"] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
        if k in ("threads", "steps", "warmup", "batch_size", "data_dir")
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"PyTorch run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["samples_per_s"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", ".."))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--data-dir", default=os.path.join(root, "data", "mnist"),
                   help="MNIST IDX files (default: data/mnist under the crate)")
    p.add_argument("--rust-bin", default=os.path.join(root, "target", "release", "examples", "throughput"))
    p.add_argument("--json", help="write the rounds and ratios here")
    p.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.torch_only:
        print(json.dumps({"samples_per_s": torch_rate(args)}))
        return
    if not os.path.exists(args.rust_bin):
        raise SystemExit(f"{args.rust_bin} missing: cargo build --release --example throughput")
    rounds = []
    for r in range(args.rounds):
        if r % 2 == 0:
            rust, torch = rust_rate(args), torch_rate_subprocess(args)
        else:
            torch, rust = torch_rate_subprocess(args), rust_rate(args)
        rounds.append({"candle_mtl": rust, "pytorch": torch, "ratio": rust / torch})
        print(f"round {r + 1}: candle-mtl {rust:.0f} samples/s, PyTorch {torch:.0f} samples/s, ratio {rust / torch:.3f}")
    ratios = [x["ratio"] for x in rounds]
    summary = {
        "threads": args.threads,
        "batch_size": args.batch_size,
        "rounds": rounds,
        "ratio_min": min(ratios),
        "ratio_median": statistics.median(ratios),
        "ratio_max": max(ratios),
    }
    print(
        f"candle-mtl / PyTorch at batch {args.batch_size}, {args.threads} thread(s): "
        f"min {summary['ratio_min']:.3f} / median {summary['ratio_median']:.3f} / max {summary['ratio_max']:.3f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
