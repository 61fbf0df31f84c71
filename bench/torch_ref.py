#!/usr/bin/env python3
"""PyTorch reference for bench/run.sh: the same networks, optimizers and
batch sizes as examples/*.nn, on Fashion-MNIST preloaded as tensors.
Prints one JSON object per epoch, with the keys the nnc binaries print."""
import argparse, gzip, json, os, struct, time

import numpy as np
import torch
import torch.nn as nn

DATA = "/usr/share/datasets/fashion-mnist"


def idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    nd = raw[3]
    dims = struct.unpack(">" + "I" * nd, raw[4:4 + 4 * nd])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


class RowReader(nn.Module):
    """examples/lstm_fashion.nn and gru_fashion.nn: each image as 28 steps of
    28 pixels, an LSTM (GRU) of 128 units, its last state classified."""

    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(28, 128, batch_first=True)
        self.out = nn.Linear(128, 10)

    def forward(self, x):
        _, h = self.rnn(x.reshape(-1, 28, 28))
        h = h[0] if isinstance(h, tuple) else h
        return self.out(h[-1])


def model_for(name):
    if name == "lstm_fashion":
        return RowReader(nn.LSTM)
    if name == "gru_fashion":
        return RowReader(nn.GRU)
    if name == "fashion_mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                             nn.ReLU(), nn.Linear(128, 10))
    if name == "fashion_mlp_bn":  # nn.BatchNorm1d defaults: momentum 0.1, eps 1e-5
        return nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(128, 10))
    if name == "mlp_small":
        return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    if name == "softmax_regression":
        return nn.Linear(784, 10)
    if name == "lenet":
        return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                             nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                             nn.Linear(84, 10))
    raise SystemExit("unknown model " + name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--epochs", type=int, default=1,
                    help="0: only time inference (fresh weights, one warm-up pass)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--infer", action="store_true",
                    help="time inference on the test set at batch 1000")
    ap.add_argument("--infer-batch", type=int, default=0,
                    help="with --epochs 0: forward passes alone at this batch "
                    "(batch 1: the first 2000 test images), median of 5 passes, "
                    "like examples/classify.c --bench")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = torch.tensor(idx("train-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    y = torch.tensor(idx("train-labels-idx1-ubyte.gz"), dtype=torch.long)
    tx = torch.tensor(idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    ty = torch.tensor(idx("t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    net = model_for(a.model)
    if a.model in ("fashion_mlp", "fashion_mlp_bn", "lstm_fashion", "gru_fashion"):
        opt, batch = torch.optim.Adam(net.parameters(), lr=1e-3), 128
    elif a.model == "lenet":
        opt, batch = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), 64
    else:
        opt, batch = torch.optim.SGD(net.parameters(), lr=0.1), 32
    lossf = nn.CrossEntropyLoss()
    # fashion_mlp_bn's cosine schedule, stepped once per epoch (t_max 10).
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
             if a.model == "fashion_mlp_bn" else None)

    def infer():
        with torch.no_grad():
            net.eval()
            t1 = time.perf_counter()
            tc = sum((net(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item()
                     for i in range(0, len(tx), 1000))
            return tc, time.perf_counter() - t1

    if a.epochs == 0 and a.infer_batch:
        b = a.infer_batch
        rows = tx[:2000] if b == 1 else tx
        n = len(rows) // b * b
        rates = []
        with torch.no_grad():
            net.eval()
            net(rows[:b])
            for _ in range(5):
                t1 = time.perf_counter()
                for i in range(0, n, b):
                    net(rows[i:i + b])
                rates.append(n / (time.perf_counter() - t1))
        print(json.dumps({"infer_batch": b,
                          "infer_samples_per_s": sorted(rates)[2]}), flush=True)
        return
    if a.epochs == 0:
        infer()
        tc, isecs = infer()
        print(json.dumps({"test_accuracy": tc / len(tx),
                          "infer_samples_per_s": len(tx) / isecs}), flush=True)
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(len(x))
        total, correct, t0 = 0.0, 0, time.perf_counter()
        net.train()
        for i in range(0, len(x), batch):
            idxs = perm[i:i + batch]
            xb, yb = x[idxs], y[idxs]
            out = net(xb)
            loss = lossf(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idxs)
            correct += (out.argmax(1) == yb).sum().item()
        secs = time.perf_counter() - t0
        if sched:
            sched.step()
        tc, isecs = infer()
        print(json.dumps({"epoch": epoch, "loss": total / len(x), "accuracy": correct / len(x),
                          "test_accuracy": tc / len(tx), "seconds": secs,
                          "samples_per_s": len(x) / secs,
                          "infer_samples_per_s": len(tx) / isecs}), flush=True)


if __name__ == "__main__":
    main()
