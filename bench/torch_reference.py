#!/usr/bin/env python3
"""PyTorch CPU reference for Latent Lab's training throughput.

The networks, losses, pixel ranges, optimisers and step order mirror the Rust code:

* ``vae``   - src/model/vae.rs (784-400-20, ReLU, Bernoulli logits), src/model/losses.rs,
              ``vae_step`` in src/model/vae_objective.rs; pixels in [0, 1]; Adam lr 1e-3, betas (0.9, 0.999).
* ``gan``   - src/model/gan.rs (G z100 -> 128-256-512 -> 784 tanh, D 784 -> 512-256-128 -> 1,
              LeakyReLU 0.2 on every hidden layer of both); pixels in [-1, 1].
* ``dcgan`` - src/model/dcgan.rs with the 4x4 / stride 2 / pad 1 convolutions of
              src/model/conv_vae.rs (``down_conv`` / ``up_conv``); width 32, latent 100.
  GANs: Adam lr 2e-4, betas (0.5, 0.999); ``gan_step_with_latents`` (src/model/gan_objective.rs): one z, D on real and on detached fake
  (two separate forward passes, loss = mean BCE(real, 1) + mean BCE(fake, 0)), D update, then
  G with the non-saturating loss through the *updated* D on the same fake batch.
All Adam optimisers use eps 1e-8 and no weight decay.

Data: the built-in MNIST (assets/mnist-10k-images-idx3-ubyte.gz), images 0..9000 = train,
9000..10000 = test, as Dataset::split does for the built-in set. Every epoch is reshuffled with a
seed; the last partial batch is dropped (as BatchPlan does). Each step gathers its batch from u8
pixels and converts it to f32 (as images_to_tensor does).

Usage:
    python bench/torch_reference.py --model vae --threads 2 --seconds 20 --json
    python bench/torch_reference.py --check-loss [--check-epochs 10]
"""

import argparse
import gzip
import json
import os
import platform
import struct
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(REPO, "assets", "mnist-10k-images-idx3-ubyte.gz")
N_TRAIN = 9000


def load_mnist(path=MNIST):
    """u8 array [n, 784] from a gzip IDX3 file."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x00000803:
        raise SystemExit(f"{path}: not an IDX3 u8 image file (magic {magic:#x})")
    px = np.frombuffer(raw, dtype=np.uint8, offset=16)
    if px.size != n * rows * cols:
        raise SystemExit(f"{path}: expected {n}x{rows}x{cols} pixels, found {px.size}")
    return px.reshape(n, rows * cols), rows, cols


def torch_defs(rows=28, cols=28):
    """The networks, losses and training steps, built on torch (imported here, so that callers can set
    torch's thread counts first). Returns a namespace of them; main() and torch_samples.py use it."""
    import types

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    npix = rows * cols

    # ---------------------------------------------------------------- models
    class MlpVae(nn.Module):
        def __init__(self, d=npix, h=400, z=20):
            super().__init__()
            self.enc = nn.Linear(d, h)
            self.mu = nn.Linear(h, z)
            self.logvar = nn.Linear(h, z)
            self.dec = nn.Linear(z, h)
            self.out = nn.Linear(h, d)

        def encode(self, x):
            h = F.relu(self.enc(x))
            return self.mu(h), self.logvar(h)

        def decode_logits(self, z):
            return self.out(F.relu(self.dec(z)))

    def mlp(widths, final, act):
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), act()]
        layers.append(nn.Linear(widths[-1], final))
        return layers

    leaky = lambda: nn.LeakyReLU(0.2)

    class MlpGenerator(nn.Module):
        def __init__(self, z=100, hidden=(128, 256, 512), out=npix):
            super().__init__()
            self.net = nn.Sequential(*mlp([z, *hidden], out, leaky), nn.Tanh())

        def forward(self, z):
            return self.net(z)

    class MlpDiscriminator(nn.Module):
        def __init__(self, inp=npix, hidden=(512, 256, 128)):
            super().__init__()
            self.net = nn.Sequential(*mlp([inp, *hidden], 1, leaky))

        def forward(self, x):
            return self.net(x)

    def down_conv(cin, cout):
        return nn.Conv2d(cin, cout, 4, stride=2, padding=1)

    def up_conv(cin, cout):
        return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)

    class DcGenerator(nn.Module):
        def __init__(self, channels=1, size=rows, latent=100, width=32):
            super().__init__()
            self.w, self.q = width, size // 4
            self.fc = nn.Linear(latent, 2 * width * self.q * self.q)
            self.bn0 = nn.BatchNorm2d(2 * width)
            self.t1 = up_conv(2 * width, width)
            self.bn1 = nn.BatchNorm2d(width)
            self.t2 = up_conv(width, channels)

        def forward(self, z):
            b = z.shape[0]
            h = self.fc(z).view(b, 2 * self.w, self.q, self.q)
            h = F.relu(self.bn0(h))
            h = F.relu(self.bn1(self.t1(h)))
            return torch.tanh(self.t2(h)).flatten(1)

    class DcDiscriminator(nn.Module):
        def __init__(self, channels=1, size=rows, width=32):
            super().__init__()
            self.c, self.s = channels, size
            q = size // 4
            self.c1 = down_conv(channels, width)
            self.c2 = down_conv(width, 2 * width)
            self.bn2 = nn.BatchNorm2d(2 * width)
            self.out = nn.Linear(2 * width * q * q, 1)

        def forward(self, x):
            x = x.view(x.shape[0], self.c, self.s, self.s)
            h = F.leaky_relu(self.c1(x), 0.2)
            h = F.leaky_relu(self.bn2(self.c2(h)), 0.2)
            return self.out(h.flatten(1))

    # ---------------------------------------------------------------- losses and steps
    def vae_terms(model, x):
        b = x.shape[0]
        mu, logvar = model.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mu + torch.randn_like(std) * std
        logits = model.decode_logits(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / b
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum() / b
        return recon, kl

    def make_vae():
        model = MlpVae()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

        def step(x):
            recon, kl = vae_terms(model, x)
            loss = recon + kl  # beta = 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return torch.stack([loss.detach(), recon.detach(), kl.detach()])

        return model, step

    def bce_const(logits, real):
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)  # mean over the batch

    def bce_target(logits, target):
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def make_gan(gen, disc, latent=100, real_target=1.0):
        """real_target: D's target for real images (1.0 here; 1 - X for one-sided label smoothing)."""
        opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
        opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)

        def step(real):
            b = real.shape[0]
            z = torch.randn(b, latent)
            fake = gen(z)
            real_logits = disc(real)
            fake_logits = disc(fake.detach())
            d_real_loss = (bce_const(real_logits, True) if real_target == 1.0
                           else bce_target(real_logits, real_target))
            d_loss = d_real_loss + bce_const(fake_logits, False)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_loss = bce_const(disc(fake), True)  # non-saturating, through the updated D
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            d_real = torch.sigmoid(real_logits.detach()).mean()
            d_fake = torch.sigmoid(fake_logits.detach()).mean()
            return torch.stack([d_loss.detach(), g_loss.detach(), d_real, d_fake])

        return (gen, disc), step

    return types.SimpleNamespace(**{k: v for k, v in locals().items()
                                    if k not in ("types", "torch", "nn", "F")})


def batch_stream(train_u8, bs, gen_shuffle, signed):
    """Endless (epoch, index, batch) stream, reshuffled every epoch with gen_shuffle (a seeded
    torch.Generator); the last partial batch is dropped. Pixels in [0, 1], or [-1, 1] if signed."""
    import torch

    n = train_u8.shape[0]
    batches_per_epoch = max(n // bs, 1)  # drop the last partial batch
    epoch = 0
    while True:
        perm = torch.randperm(n, generator=gen_shuffle)
        for i in range(batches_per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            x = train_u8.index_select(0, idx).to(torch.float32).div_(255.0)
            if signed:
                x.mul_(2.0).sub_(1.0)
            yield epoch, i, x
        epoch += 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["vae", "gan", "dcgan"], default="vae")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (intra-op)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0, help="time whole steps for at least this long")
    p.add_argument("--log-every", type=int, default=50,
                   help="read the loss terms back every this many steps (never every step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--check-loss", action="store_true",
                   help="train the VAE for --check-epochs epochs and print mean train loss and test -ELBO")
    p.add_argument("--check-epochs", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads < 1 or args.batch_size < 1:
        raise SystemExit("--threads and --batch-size must be at least 1")
    # Thread settings must come before torch does any parallel work.
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set (only possible when imported and called twice)

    torch.manual_seed(args.seed)
    pixels_np, rows, cols = load_mnist()
    pixels = torch.from_numpy(pixels_np.copy())  # u8 [10000, 784]
    train_u8 = pixels[:N_TRAIN]
    test_u8 = pixels[N_TRAIN:]
    npix = rows * cols

    d = torch_defs(rows, cols)
    make_vae, make_gan, vae_terms = d.make_vae, d.make_gan, d.vae_terms
    MlpGenerator, MlpDiscriminator = d.MlpGenerator, d.MlpDiscriminator
    DcGenerator, DcDiscriminator = d.DcGenerator, d.DcDiscriminator

    model_name = "vae" if args.check_loss else args.model
    if model_name == "vae":
        nets, step = make_vae()
        signed = False
    elif model_name == "gan":
        nets, step = make_gan(MlpGenerator(), MlpDiscriminator())
        signed = True
    else:
        nets, step = make_gan(DcGenerator(), DcDiscriminator())
        signed = True

    # ---------------------------------------------------------------- data loop
    bs = args.batch_size
    n = train_u8.shape[0]
    batches_per_epoch = max(n // bs, 1)  # drop the last partial batch
    gen_shuffle = torch.Generator().manual_seed(args.seed)

    def batches():
        """Endless (epoch, index, batch) stream, reshuffled every epoch."""
        return batch_stream(train_u8, bs, gen_shuffle, signed)

    def read_back(pending):
        """One sync: all pending loss terms as Python floats; checks they are finite."""
        if not pending:
            return []
        rows_ = torch.stack(pending).tolist()
        pending.clear()
        for r in rows_:
            if not all(np.isfinite(r)):
                raise SystemExit(f"loss became non-finite: {r}")
        return rows_

    if args.check_loss:
        for m in nets if isinstance(nets, tuple) else (nets,):
            m.train()
        stream = batches()
        print(f"torch {torch.__version__}, {args.threads} thread(s), VAE 784-400-20, "
              f"batch {bs}, {batches_per_epoch} steps/epoch")
        t0 = time.perf_counter()
        for ep in range(args.check_epochs):
            pending, rows_ = [], []
            for _ in range(batches_per_epoch):
                _, _, x = next(stream)
                pending.append(step(x))
                if len(pending) >= args.log_every:
                    rows_ += read_back(pending)
            rows_ += read_back(pending)
            mean = np.mean(np.array(rows_), axis=0)
            with torch.no_grad():
                xt = test_u8.to(torch.float32).div_(255.0)
                recon, kl = vae_terms(nets, xt)
            print(f"epoch {ep + 1}: mean train loss {mean[0]:.2f} "
                  f"(recon {mean[1]:.2f}, kl {mean[2]:.2f}); "
                  f"test -ELBO {float(recon + kl):.2f} (1 sample, {xt.shape[0]} images)")
        print(f"{time.perf_counter() - t0:.1f} s")
        return 0

    stream = batches()
    pending = []
    for _ in range(args.warmup_steps):
        _, _, x = next(stream)
        pending.append(step(x))
    read_back(pending)

    steps = 0
    t0 = time.perf_counter()
    deadline = t0 + args.seconds
    while True:
        _, _, x = next(stream)
        pending.append(step(x))
        steps += 1
        if steps % args.log_every == 0:
            read_back(pending)
            if time.perf_counter() >= deadline:
                break
        elif time.perf_counter() >= deadline:
            read_back(pending)
            break
    seconds = time.perf_counter() - t0

    result = {
        "impl": "pytorch",
        "torch_version": torch.__version__,
        "model": args.model,
        "threads": args.threads,
        "batch_size": bs,
        "steps": steps,
        "seconds": round(seconds, 4),
        "images_per_s": round(steps * bs / seconds, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model}: {steps} steps in {seconds:.2f} s = {result['images_per_s']:.1f} img/s "
              f"(torch {torch.__version__}, {args.threads} thread(s), batch {bs}, "
              f"{platform.processor() or platform.machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
