#!/usr/bin/env python3
"""Train a Latent Lab family in PyTorch and save it as safetensors that `latent-lab import` reads.

"Train on a cluster, explore here": the networks are Latent Lab's own (src/model/vae.rs, gan.rs,
dcgan.rs), with the tensor names and layouts of docs/safetensors.md and the architecture in the
file's __metadata__, so that

    python bench/torch_train.py --model vae --epochs 10 --out vae.safetensors
    latent-lab import --safetensors vae.safetensors        # or open it in the app

gives a checkpoint to explore and to train on. The script also evaluates the model it saved, as
`latent-lab eval` does, on the same 1,000 test images (the built-in MNIST's images 9000..10000):
KL and negative ELBO (one posterior sample per image; --elbo-samples repeats the estimate to give
its sampling noise), or for a GAN its samples for fixed latents. With --probe it writes those
reference values (and the latents) to a second safetensors file, which tests/import.rs compares
with Latent Lab's own decoding; tests/fixtures/torch-*.safetensors were made this way (torch 2.15):

    python bench/torch_train.py --model vae --hidden 16 --latent-dim 4 --epochs 3 --dtype f16 \
        --out tests/fixtures/torch-vae.safetensors --probe tests/fixtures/torch-vae.probe.safetensors
    python bench/torch_train.py --model gan --hidden 16 --latent-dim 4 --epochs 3 --dtype bf16 \
        --out tests/fixtures/torch-gan.safetensors --probe tests/fixtures/torch-gan.probe.safetensors
    python bench/torch_train.py --model dcgan --hidden 2 --latent-dim 4 --epochs 1 \
        --out tests/fixtures/torch-dcgan.safetensors --probe tests/fixtures/torch-dcgan.probe.safetensors

Data: the built-in MNIST (assets/), or --data an IDX3 image file (gzip or raw) of 28x28 images.
Needs torch and safetensors (pip install torch safetensors numpy).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import MNIST, N_TRAIN, batch_stream, load_mnist  # noqa: E402


def build(args, npix, rows):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def chain(widths):
        return nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    class MlpVae(nn.Module):
        """src/model/vae.rs: enc.i, mu, logvar, dec.i, out; ReLU; Bernoulli logits."""

        def __init__(self, d, hidden, z):
            super().__init__()
            self.enc = chain([d, *hidden])
            self.mu = nn.Linear(hidden[-1], z)
            self.logvar = nn.Linear(hidden[-1], z)
            self.dec = chain([z, *reversed(hidden)])
            self.out = nn.Linear(hidden[0], d)

        def encode(self, x):
            for layer in self.enc:
                x = F.relu(layer(x))
            return self.mu(x), self.logvar(x)

        def decode_logits(self, z):
            for layer in self.dec:
                z = F.relu(layer(z))
            return self.out(z)

    class MlpNet(nn.Module):
        """src/model/gan.rs: hidden.i, out; LeakyReLU 0.2 on every hidden layer."""

        def __init__(self, widths, out, final=None):
            super().__init__()
            self.hidden = chain(widths)
            self.out = nn.Linear(widths[-1], out)
            self.final = final

        def forward(self, x):
            for layer in self.hidden:
                x = F.leaky_relu(layer(x), 0.2)
            x = self.out(x)
            return torch.tanh(x) if self.final == "tanh" else x

    class DcGenerator(nn.Module):
        """src/model/dcgan.rs, two stages (28/32 px): fc, bn0, t1, bn1, t2."""

        def __init__(self, latent, width, size):
            super().__init__()
            self.w, self.q = width, size // 4
            self.fc = nn.Linear(latent, 2 * width * self.q * self.q)
            self.bn0 = nn.BatchNorm2d(2 * width)
            self.t1 = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)
            self.bn1 = nn.BatchNorm2d(width)
            self.t2 = nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1)

        def forward(self, z):
            h = self.fc(z).view(z.shape[0], 2 * self.w, self.q, self.q)
            h = F.relu(self.bn0(h))
            h = F.relu(self.bn1(self.t1(h)))
            return torch.tanh(self.t2(h)).flatten(1)

    class DcDiscriminator(nn.Module):
        """src/model/dcgan.rs, two stages: c1, c2, bn2, out."""

        def __init__(self, width, size):
            super().__init__()
            self.s = size
            self.c1 = nn.Conv2d(1, width, 4, stride=2, padding=1)
            self.c2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
            self.bn2 = nn.BatchNorm2d(2 * width)
            self.out = nn.Linear(2 * width * (size // 4) ** 2, 1)

        def forward(self, x):
            x = x.view(x.shape[0], 1, self.s, self.s)
            h = F.leaky_relu(self.c1(x), 0.2)
            h = F.leaky_relu(self.bn2(self.c2(h)), 0.2)
            return self.out(h.flatten(1))

    if args.model == "vae":
        hidden = args.hidden or [400]
        return MlpVae(npix, hidden, args.latent_dim or 20), hidden
    if args.model == "gan":
        hidden = args.hidden or [128, 256, 512]
        z = args.latent_dim or 100
        gen = MlpNet([z, *hidden], npix, final="tanh")
        disc = MlpNet([npix, *reversed(hidden)], 1)
        return (gen, disc), hidden
    width = (args.hidden or [32])[0]
    z = args.latent_dim or 100
    return (DcGenerator(z, width, rows), DcDiscriminator(width, rows)), [width]


def vae_terms(model, x):
    """Per-image reconstruction term (Bernoulli, summed over pixels) and KL, one sample each."""
    import torch
    import torch.nn.functional as F

    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    z = mu + torch.randn_like(std) * std
    recon = F.binary_cross_entropy_with_logits(model.decode_logits(z), x, reduction="none").sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(1)
    return recon, kl, mu, logvar


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["vae", "gan", "dcgan"], default="vae")
    p.add_argument("--hidden", type=lambda s: [int(w) for w in s.split(",")],
                   help="hidden widths, comma-separated (MLP), or base channels (dcgan)")
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=MNIST, help="IDX3 images (28x28); default: the built-in MNIST")
    p.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32",
                   help="dtype of the saved weights (evaluation uses the saved, rounded weights)")
    p.add_argument("--elbo-samples", type=int, default=20,
                   help="repeat the one-sample -ELBO estimate this many times for its noise")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--probe", help="also write reference outputs for tests/import.rs here")
    args = p.parse_args(argv)

    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    pixels_np, rows, cols = load_mnist(args.data)
    if rows != cols:
        raise SystemExit("square images only")
    pixels = torch.from_numpy(pixels_np.copy())
    train_u8, test_u8 = pixels[:N_TRAIN], pixels[N_TRAIN:]
    npix = rows * cols
    nets, hidden = build(args, npix, rows)
    signed = args.model != "vae"
    if args.model == "vae":
        bs, lr, betas = args.batch_size or 128, args.lr or 1e-3, (0.9, 0.999)
        params = [nets.parameters()]
    else:
        bs, lr, betas = args.batch_size or 128, args.lr or 2e-4, (0.5, 0.999)
        params = [nets[0].parameters(), nets[1].parameters()]
    opts = [torch.optim.Adam(ps, lr=lr, betas=betas, eps=1e-8) for ps in params]
    steps = args.epochs * max(N_TRAIN // bs, 1)
    stream = batch_stream(train_u8, bs, torch.Generator().manual_seed(args.seed), signed)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for m in (nets if isinstance(nets, tuple) else (nets,)):
        m.train()
    for _ in range(steps):
        _, _, x = next(stream)
        if args.model == "vae":
            recon, kl, _, _ = vae_terms(nets, x)
            loss = (recon + kl).mean()
            opts[0].zero_grad(set_to_none=True)
            loss.backward()
            opts[0].step()
        else:
            gen, disc = nets
            fake = gen(torch.randn(x.shape[0], args.latent_dim or 100))
            rl, fl = disc(x), disc(fake.detach())
            d_loss = bce(rl, torch.ones_like(rl)) + bce(fl, torch.zeros_like(fl))
            opts[1].zero_grad(set_to_none=True)
            d_loss.backward()
            opts[1].step()
            gl = disc(fake)
            g_loss = bce(gl, torch.ones_like(gl))
            opts[0].zero_grad(set_to_none=True)
            g_loss.backward()
            opts[0].step()

    # The state dict under Latent Lab's names, rounded to the saved dtype.
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    if args.model == "vae":
        state = dict(nets.state_dict())
    else:
        state = {f"generator.{k}": v for k, v in nets[0].state_dict().items()}
        state.update({f"discriminator.{k}": v for k, v in nets[1].state_dict().items()})
    state = {k: (v.detach().to(dtype).contiguous() if v.is_floating_point() else v.contiguous())
             for k, v in state.items()}
    # Evaluate what was saved: load the rounded weights back as f32.
    rounded = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
    if args.model == "vae":
        nets.load_state_dict(rounded)
        nets.eval()
    else:
        nets[0].load_state_dict({k[len("generator."):]: v for k, v in rounded.items()
                                 if k.startswith("generator.")})
        nets[1].load_state_dict({k[len("discriminator."):]: v for k, v in rounded.items()
                                 if k.startswith("discriminator.")})
        nets[0].eval()
        nets[1].eval()

    family = {"vae": "vae", "gan": "gan", "dcgan": "dcgan"}[args.model]
    latent = args.latent_dim or (20 if args.model == "vae" else 100)
    meta = {
        "latent_lab.format": "1",
        "latent_lab.model": args.model,
        "latent_lab.family": family,
        "latent_lab.latent_dim": str(latent),
        "latent_lab.hidden": ",".join(str(h) for h in hidden),
        "latent_lab.image_shape": f"1,{rows},{cols}",
        "latent_lab.step": str(steps),
        "latent_lab.trained_by": f"bench/torch_train.py (torch {torch.__version__})",
    }
    if args.data != MNIST:
        meta["latent_lab.data"] = json.dumps({"Idx": {"images": os.path.abspath(args.data),
                                                      "labels": None}})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(state, args.out, metadata=meta)

    report = {"model": args.model, "steps": steps, "dtype": args.dtype, "file": args.out,
              "torch": torch.__version__}
    probe = {}
    with torch.no_grad():
        if args.model == "vae":
            xt = test_u8.to(torch.float32) / 255.0
            elbos = []
            for _ in range(args.elbo_samples):
                recon, kl, mu, logvar = vae_terms(nets, xt)
                elbos.append(float((recon + kl).mean()))
            report.update({
                "test_images": xt.shape[0],
                "kl": float(kl.mean()),
                "neg_elbo": float(np.mean(elbos)),
                "neg_elbo_sd": float(np.std(elbos, ddof=1)) if len(elbos) > 1 else None,
                "neg_elbo_runs": len(elbos),
            })
            probe = {"x": xt[:4].contiguous(), "mu": mu[:4].contiguous(),
                     "logvar": logvar[:4].contiguous(),
                     "decoded_mu": torch.sigmoid(nets.decode_logits(mu[:4])).contiguous(),
                     "kl": torch.tensor([report["kl"]]),
                     "neg_elbo": torch.tensor([report["neg_elbo"]]),
                     "neg_elbo_sd": torch.tensor([report["neg_elbo_sd"] or 0.0])}
        else:
            z = torch.randn(4, latent, generator=torch.Generator().manual_seed(args.seed + 1))
            images = (nets[0](z) + 1.0) * 0.5
            report["samples"] = images.shape[0]
            probe = {"z": z.contiguous(), "decoded": images.contiguous()}
    if args.probe:
        save_file(probe, args.probe, metadata={"made_by": "bench/torch_train.py"})
        report["probe"] = args.probe
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
