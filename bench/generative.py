#!/usr/bin/env python3
"""PyTorch references for bench/generative.sh: examples/vae.nn,
examples/conv_vae.nn and examples/gan.nn written in PyTorch (the same layers,
initial-weight families, optimizers, batches and losses), on Fashion-MNIST
preloaded as tensors. Prints one JSON object per epoch with the keys the
nnc binaries print (elbo, recon, kl and test_elbo per image in nats for the
VAEs; d_loss, d_acc and g_loss for the GAN) and the epoch's seconds."""
import argparse, json, math, os, time

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_ref import idx


def he(m):  # nnc's dense/conv default: he_normal weights, zero bias
    if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(m.bias)


class Vae(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        if conv:
            self.enc = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(),
                                     nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.Flatten())
            self.mu, self.lv = nn.Linear(64 * 49, 16), nn.Linear(64 * 49, 16)
            self.dec = nn.Sequential(nn.Linear(16, 64 * 49), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
                                     nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1), nn.Flatten())
        else:
            self.enc = nn.Sequential(nn.Linear(784, 400), nn.ReLU())
            self.mu, self.lv = nn.Linear(400, 20), nn.Linear(400, 20)
            self.dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))
        self.apply(he)

    def terms(self, x):
        h = self.enc(x.view(-1, 1, 28, 28) if self.conv else x)
        mu, logvar = self.mu(h), self.lv(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(1)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
        return recon, kl


def gan_nets():
    g = nn.Sequential(nn.Linear(64, 256), nn.LeakyReLU(0.2), nn.Linear(256, 512), nn.LeakyReLU(0.2),
                      nn.Linear(512, 784), nn.Sigmoid())
    d = nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2),
                      nn.Linear(256, 1))
    g.apply(he)
    d.apply(he)
    return g, d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["vae", "conv_vae", "gan"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = torch.tensor(idx("train-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    tx = torch.tensor(idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784), dtype=torch.float32) / 255
    if a.model == "gan":
        gen, disc = gan_nets()
        og = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
        od = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
        batch = 64
        for epoch in range(1, a.epochs + 1):
            perm = torch.randperm(len(x))
            sums, n, t0 = [0.0, 0.0, 0.0], 0, time.perf_counter()
            for i in range(0, len(x), batch):
                xb = x[perm[i:i + batch]]
                b = len(xb)
                real = disc(xb)
                fake = disc(gen(torch.randn(b, 64)).detach())
                d_loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) +
                          F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
                d_acc = ((real > 0).float().mean() + (fake <= 0).float().mean()) / 2
                od.zero_grad()
                d_loss.backward()
                od.step()
                out = disc(gen(torch.randn(b, 64)))
                g_loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
                og.zero_grad()
                g_loss.backward()
                og.step()
                for k, v in enumerate((d_loss, d_acc, g_loss)):
                    sums[k] += v.item() * b
                n += b
            print(json.dumps({"epoch": epoch, "d_loss": sums[0] / n, "d_acc": sums[1] / n,
                              "g_loss": sums[2] / n, "seconds": time.perf_counter() - t0}),
                  flush=True)
        return
    net = Vae(a.model == "conv_vae")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = 128
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(len(x))
        sums, n, t0 = [0.0, 0.0], 0, time.perf_counter()
        for i in range(0, len(x), batch):
            xb = x[perm[i:i + batch]]
            recon, kl = net.terms(xb)
            loss = (recon + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums[0] += recon.sum().item()
            sums[1] += kl.sum().item()
            n += len(xb)
        secs = time.perf_counter() - t0
        with torch.no_grad():
            tr, tk = 0.0, 0.0
            for i in range(0, len(tx), 1000):
                r, k = net.terms(tx[i:i + 1000])
                tr, tk = tr + r.sum().item(), tk + k.sum().item()
        print(json.dumps({"epoch": epoch, "elbo": (sums[0] + sums[1]) / n, "recon": sums[0] / n,
                          "kl": sums[1] / n, "test_elbo": (tr + tk) / len(tx), "seconds": secs}),
              flush=True)


if __name__ == "__main__":
    main()
