#!/usr/bin/env python3
"""Procedural colour shapes as an image-folder dataset (standard library only).

Four classes, one sub-folder each: circle, square, triangle, ring (an annulus).
Each image is an RGB PNG: a dark, desaturated linear gradient background
(vertical or horizontal, between two random colours) and one bright, saturated
shape with a random centre, radius (0.18-0.38 of the side) and, for the square
and triangle, rotation. Shape edges are anti-aliased with analytic coverage
from a signed distance (coverage = clamp(0.5 - d, 0, 1), d in pixels).

    python3 bench/make_colour_shapes.py --out /tmp/colour-shapes64 --size 64 --per-class 1250

Writes DIR/<class>/<class>-00000.png ... and prints the count and elapsed time.
The same --seed always gives the same files.
"""

import argparse
import binascii
import colorsys
import math
import os
import random
import struct
import sys
import time
import zlib

CLASSES = ("circle", "square", "triangle", "ring")

# Square half-side and triangle circumradius relative to the drawn "radius",
# so the four shapes have roughly comparable visual size.
SQUARE_HALF = 0.9
TRIANGLE_CIRCUM = 1.25


# --------------------------------------------------------------------------- PNG


def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", binascii.crc32(body) & 0xFFFFFFFF)


def png_bytes(width, height, raw, level=6):
    """PNG file bytes for 8-bit RGB (colour type 2). `raw` holds `height` rows,
    each a filter byte (0) followed by width*3 bytes."""
    assert len(raw) == height * (1 + 3 * width)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(bytes(raw), level))
        + _chunk(b"IEND", b"")
    )


def write_png(path, width, height, raw):
    with open(path, "wb") as f:
        f.write(png_bytes(width, height, raw))


# ------------------------------------------------------------------------ colours


def hsv255(h, s, v):
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def background_colour(rng):
    # Moderately dark and desaturated.
    return hsv255(rng.random(), rng.uniform(0.0, 0.45), rng.uniform(0.12, 0.5))


def shape_colour(rng):
    # Bright and saturated.
    return hsv255(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))


def gradient(c0, c1, n):
    """n colours linearly from c0 to c1 (sampled at pixel centres)."""
    out = []
    for i in range(n):
        t = (i + 0.5) / n
        out.append(tuple(int(round(a + (b - a) * t)) for a, b in zip(c0, c1)))
    return out


# ------------------------------------------------------------------------ drawing


def polygon_edges(cx, cy, radius, sides, angle):
    """Outward unit normals and offsets (nx, ny, c) of a regular polygon with the
    given circumradius: inside where nx*x + ny*y - c <= 0 for every edge.
    Also returns the vertices."""
    verts = [
        (cx + radius * math.cos(angle + 2 * math.pi * k / sides),
         cy + radius * math.sin(angle + 2 * math.pi * k / sides))
        for k in range(sides)
    ]
    edges = []
    for k in range(sides):
        x0, y0 = verts[k]
        x1, y1 = verts[(k + 1) % sides]
        ex, ey = x1 - x0, y1 - y0
        ln = math.hypot(ex, ey)
        nx, ny = ey / ln, -ex / ln
        # Make the normal point away from the centre.
        if nx * (cx - x0) + ny * (cy - y0) > 0:
            nx, ny = -nx, -ny
        edges.append((nx, ny, nx * x0 + ny * y0))
    return edges, verts


def make_image(rng, cls, size):
    """One image as raw PNG scanlines (bytearray, filter byte 0 per row)."""
    stride = 1 + 3 * size

    # Background: vertical or horizontal gradient between two random colours.
    c0 = background_colour(rng)
    c1 = background_colour(rng)
    vertical = rng.random() < 0.5  # colour changes down the image
    ramp = gradient(c0, c1, size)
    raw = bytearray()
    if vertical:
        for y in range(size):
            raw += b"\x00" + bytes(ramp[y]) * size
        bg_row = None
    else:
        row = b"\x00" + b"".join(bytes(c) for c in ramp)
        raw = bytearray(row * size)
        bg_row = ramp

    fr, fg, fb = shape_colour(rng)
    fg_px = bytes((fr, fg, fb))
    radius = rng.uniform(0.18, 0.38) * size

    # Extent (bounding box half-sizes around the centre) of the shape.
    if cls in ("circle", "ring"):
        angle = 0.0
        ex0 = ex1 = ey0 = ey1 = radius
    else:
        angle = rng.uniform(0.0, 2 * math.pi)
        if cls == "square":
            circ = radius * SQUARE_HALF * math.sqrt(2.0)
            _, verts = polygon_edges(0.0, 0.0, circ, 4, angle)
        else:
            circ = radius * TRIANGLE_CIRCUM
            _, verts = polygon_edges(0.0, 0.0, circ, 3, angle)
        ex0 = -min(v[0] for v in verts)
        ex1 = max(v[0] for v in verts)
        ey0 = -min(v[1] for v in verts)
        ey1 = max(v[1] for v in verts)

    # Random centre keeping the shape (almost) inside: allow 1 px of overhang.
    lo_x, hi_x = ex0 - 1.0, size - ex1 + 1.0
    lo_y, hi_y = ey0 - 1.0, size - ey1 + 1.0
    cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else size / 2
    cy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else size / 2

    # Pixel rows/columns that can be touched (distance <= 0.5 px outside).
    x_lo = max(0, int(math.floor(cx - ex0 - 1)))
    x_hi = min(size, int(math.ceil(cx + ex1 + 1)))
    y_lo = max(0, int(math.floor(cy - ey0 - 1)))
    y_hi = min(size, int(math.ceil(cy + ey1 + 1)))
    xs = [x + 0.5 for x in range(x_lo, x_hi)]

    if cls == "ring":
        thickness = radius * rng.uniform(0.32, 0.5)
        r_mid = radius - thickness / 2
        half_w = thickness / 2
    elif cls != "circle":
        edges, _ = polygon_edges(cx, cy, circ, 4 if cls == "square" else 3, angle)

    sqrt = math.sqrt
    for y in range(y_lo, y_hi):
        py = y + 0.5
        base = y * stride + 1
        # Per-row signed distance for every column of the bounding box.
        if cls == "circle":
            dy2 = (py - cy) ** 2
            ds = [sqrt((px - cx) ** 2 + dy2) - radius for px in xs]
        elif cls == "ring":
            dy2 = (py - cy) ** 2
            ds = [abs(sqrt((px - cx) ** 2 + dy2) - r_mid) - half_w for px in xs]
        elif cls == "square":
            (n0x, n0y, c0_), (n1x, n1y, c1_), (n2x, n2y, c2_), (n3x, n3y, c3_) = edges
            a0 = n0y * py - c0_
            a1 = n1y * py - c1_
            a2 = n2y * py - c2_
            a3 = n3y * py - c3_
            ds = [max(n0x * px + a0, n1x * px + a1, n2x * px + a2, n3x * px + a3) for px in xs]
        else:
            (n0x, n0y, c0_), (n1x, n1y, c1_), (n2x, n2y, c2_) = edges
            a0 = n0y * py - c0_
            a1 = n1y * py - c1_
            a2 = n2y * py - c2_
            ds = [max(n0x * px + a0, n1x * px + a1, n2x * px + a2) for px in xs]

        if bg_row is None:
            br, bgc, bb = ramp[y]
        x = x_lo
        for d in ds:
            if d < 0.5:
                o = base + 3 * x
                if d <= -0.5:
                    raw[o:o + 3] = fg_px
                else:
                    a = 0.5 - d
                    if bg_row is not None:
                        br, bgc, bb = bg_row[x]
                    raw[o] = int(br + (fr - br) * a + 0.5)
                    raw[o + 1] = int(bgc + (fg - bgc) * a + 0.5)
                    raw[o + 2] = int(bb + (fb - bb) * a + 0.5)
            x += 1
    return raw


# -------------------------------------------------------------------------- sheet


def contact_sheet(images, size, cols, scale, gap=2, gap_colour=(255, 255, 255)):
    """Grid of raw images (row-major), each scaled by pixel repetition."""
    rows = (len(images) + cols - 1) // cols
    cell = size * scale
    width = cols * cell + (cols + 1) * gap
    height = rows * cell + (rows + 1) * gap
    gap_px = bytes(gap_colour)
    stride = 1 + 3 * size
    out = bytearray()
    blank_line = b"\x00" + gap_px * width
    for r in range(rows):
        out += blank_line * gap
        for y in range(size):
            line = bytearray(b"\x00")
            for c in range(cols):
                line += gap_px * gap
                i = r * cols + c
                if i < len(images):
                    src = images[i][y * stride + 1:(y + 1) * stride]
                    line += b"".join(bytes(src[k:k + 3]) * scale for k in range(0, 3 * size, 3))
                else:
                    line += gap_px * cell
            line += gap_px * gap
            out += bytes(line) * scale
    out += blank_line * gap
    return width, height, out


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (one sub-folder per class)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--per-class", type=int, default=1250, help="images per class (default 1250)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--sheet", help="also write a contact-sheet PNG here: 8x8 grid, the first "
                    "16 images of each class (two rows per class), scaled x2")
    args = ap.parse_args(argv)
    if args.size < 8 or args.per_class < 0:
        ap.error("--size must be >= 8 and --per-class >= 0")

    rng = random.Random(args.seed)
    keep = 16 if args.sheet else 0
    kept = []
    t0 = time.perf_counter()
    count = 0
    for cls in CLASSES:
        folder = os.path.join(args.out, cls)
        os.makedirs(folder, exist_ok=True)
        for i in range(args.per_class):
            raw = make_image(rng, cls, args.size)
            write_png(os.path.join(folder, f"{cls}-{i:05d}.png"), args.size, args.size, raw)
            if i < keep:
                kept.append(raw)
            count += 1
    elapsed = time.perf_counter() - t0
    print(f"wrote {count} images ({len(CLASSES)} classes x {args.per_class}, "
          f"{args.size}x{args.size} RGB) to {args.out} in {elapsed:.1f} s")

    if args.sheet and kept:
        w, h, raw = contact_sheet(kept, args.size, cols=8, scale=2)
        write_png(args.sheet, w, h, raw)
        print(f"contact sheet {w}x{h} -> {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
