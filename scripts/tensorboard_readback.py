"""Opens a candle-mtl run in TensorBoard and reads its scalars back over TensorBoard's HTTP API.

Not run by CI. Needs `pip install tensorboard` (PyPI) and a built example:

    python3 -m venv v && v/bin/pip install tensorboard
    v/bin/python scripts/tensorboard_readback.py --data-dir data/mnist

It trains `mnist_cls_reg` for one epoch with `--tensorboard-dir`, starts `tensorboard --logdir`
on the folder, asks `/data/plugin/scalars/tags` for the tags and
`/data/plugin/scalars/scalars?run=.&tag=...` for their values, prints a few, and checks that
the per-task losses, weights and evaluation metrics are there with one value per step (per
epoch for evaluations).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True, help="MNIST IDX files")
    p.add_argument("--train-limit", default="2000")
    p.add_argument("--port", type=int, default=6066)
    p.add_argument("--tensorboard", default=os.path.join(os.path.dirname(sys.executable), "tensorboard"))
    a = p.parse_args()

    logdir = tempfile.mkdtemp(prefix="candle-mtl-tb-")
    subprocess.run(
        ["cargo", "run", "--release", "--example", "mnist_cls_reg", "--",
         "--data-dir", a.data_dir, "--epochs", "1", "--train-limit", a.train_limit,
         "--weighting", "upgrad", "--tensorboard-dir", logdir, "--cpu"],
        check=True,
    )
    server = subprocess.Popen(
        [a.tensorboard, "--logdir", logdir, "--port", str(a.port), "--bind_all"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        tags = {}
        for _ in range(60):
            try:
                tags = get(a.port, "/data/plugin/scalars/tags")
                if tags.get(".") or any(tags.values()):
                    break
            except OSError:
                pass
            time.sleep(1)
        run = "." if "." in tags else next(iter(tags))
        names = sorted(tags[run])
        print(f"{len(names)} scalar tags in run {run!r}")
        steps = None
        for tag in names:
            q = urllib.parse.urlencode({"run": run, "tag": tag})
            points = get(a.port, f"/data/plugin/scalars/scalars?{q}")
            print(f"  {tag}: {len(points)} points, last step {points[-1][1]} value {points[-1][2]:.5g}")
            if tag == "train/loss/digit":
                steps = len(points)
        for needed in ["train/loss/digit", "train/loss/value", "train/weight/digit",
                       "gradients/cosine/digit-value", "eval/digit/accuracy", "eval/value/mae"]:
            assert needed in names, f"missing tag {needed}"
        assert steps and steps > 10, "expected one loss per step"
        print("ok: TensorBoard serves the run's scalars")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
