#!/usr/bin/env python3
"""Train a PyTorch reference GAN and write generated samples as an IDX3 file.

The networks, data (the built-in MNIST, first 9,000 images, pixels in [-1, 1]), Adam settings
(lr 2e-4, betas (0.5, 0.999), eps 1e-8), per-epoch seeded shuffle (last partial batch dropped) and
the D-then-G step all come from torch_reference.py. After training, --n samples are drawn from
z ~ N(0, I) with the generator in eval mode (BatchNorm running statistics, as Latent Lab samples)
and written as IDX3 unsigned bytes (magic 0x00000803, n, rows, cols as big-endian u32, then the
pixels), pixel = round(clamp((x + 1) / 2, 0, 1) * 255). `latent-lab score --images FILE` scores it.

Usage:
    python bench/torch_samples.py --model dcgan --epochs 10 --seed 1 --out /tmp/torch-dcgan-s1.idx
"""

import argparse
import os
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402

LATENT = 100
# model name -> (generator class name, discriminator class name) in torch_reference.torch_defs().
# The MLP GAN would be ("MlpGenerator", "MlpDiscriminator"), once its app defaults are checked.
MODELS = {"dcgan": ("DcGenerator", "DcDiscriminator")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="dcgan")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="default 64, as Latent Lab's dcgan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=5000, help="samples to write")
    p.add_argument("--out", required=True, help="IDX3 u8 output path")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (intra-op)")
    p.add_argument("--init-normal", action="store_true",
                   help="DCGAN-paper init: conv/convT/linear weights N(0, 0.02), BN gamma N(1, 0.02), "
                        "BN beta 0, biases 0 (default: PyTorch's layer init)")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="X",
                   help="one-sided label smoothing: D's real target is 1 - X (default 0)")
    return p.parse_args(argv)


def init_normal_(module, torch):
    """DCGAN paper init, applied in module order (draws from torch's global RNG)."""
    nn = torch.nn
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def to_u8(x):
    """f32 array in [-1, 1] -> u8, as the app does: (clamp((x+1)/2, 0, 1) * 255 + 0.5) as u8."""
    x = np.asarray(x, dtype=np.float32)
    v = np.clip((x + np.float32(1.0)) / np.float32(2.0), np.float32(0.0), np.float32(1.0))
    return np.floor(v * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def write_idx3(path, pixels_u8, rows, cols):
    n = pixels_u8.shape[0]
    assert pixels_u8.dtype == np.uint8 and pixels_u8.shape[1] == rows * cols
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, n, rows, cols))
        f.write(np.ascontiguousarray(pixels_u8).tobytes())
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    if args.threads < 1 or args.batch_size < 1 or args.epochs < 0 or args.n < 1:
        raise SystemExit("--threads, --batch-size and --n must be at least 1, --epochs at least 0")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise SystemExit("--label-smoothing must be in [0, 1)")
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    # Same RNG order as torch_reference.py: global seed, then G and D construction.
    torch.manual_seed(args.seed)
    pixels_np, rows, cols = ref.load_mnist()
    train_u8 = torch.from_numpy(pixels_np.copy())[:ref.N_TRAIN]
    d = ref.torch_defs(rows, cols)
    gen_name, disc_name = MODELS[args.model]
    gen, disc = getattr(d, gen_name)(), getattr(d, disc_name)()
    if args.init_normal:
        init_normal_(gen, torch)
        init_normal_(disc, torch)
    (gen, disc), step = d.make_gan(gen, disc, latent=LATENT, real_target=1.0 - args.label_smoothing)

    bs = args.batch_size
    steps_per_epoch = max(train_u8.shape[0] // bs, 1)
    stream = ref.batch_stream(train_u8, bs, torch.Generator().manual_seed(args.seed), signed=True)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.model}, batch {bs}, "
          f"{steps_per_epoch} steps/epoch, {args.epochs} epochs, seed {args.seed}, "
          f"init {'normal(0.02)' if args.init_normal else 'pytorch'}, "
          f"label smoothing {args.label_smoothing:g}", flush=True)

    gen.train()
    disc.train()
    t0 = time.perf_counter()
    for ep in range(args.epochs):
        te = time.perf_counter()
        pending = []
        for _ in range(steps_per_epoch):
            _, _, x = next(stream)
            pending.append(step(x))
        rows_ = torch.stack(pending).numpy()
        if not np.isfinite(rows_).all():
            raise SystemExit(f"epoch {ep + 1}: loss became non-finite")
        d_loss, g_loss, d_real, d_fake = rows_.mean(axis=0)
        print(f"epoch {ep + 1}: D loss {d_loss:.4f}, G loss {g_loss:.4f}, "
              f"D(real) {d_real:.3f}, D(fake) {d_fake:.3f} ({time.perf_counter() - te:.1f} s)",
              flush=True)
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    gen.eval()
    z = torch.randn(args.n, LATENT)
    with torch.no_grad():
        out = torch.cat([gen(c) for c in z.split(500)])
    write_idx3(args.out, to_u8(out.numpy()), rows, cols)
    sample_s = time.perf_counter() - t1
    print(f"wrote {args.n} samples ({rows}x{cols}) to {args.out}")
    print(f"wall time: train {train_s:.1f} s, sample {sample_s:.1f} s, total {train_s + sample_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
