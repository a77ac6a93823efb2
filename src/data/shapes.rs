//! Procedural dSprites-like shapes: a white square, ellipse or heart on black, with random
//! scale, rotation and position, rasterised with 4×4 supersampling.

use std::f32::consts::TAU;

use super::{DataError, DataSource, Dataset, ShapeFactors, SplitMix64};

/// Names of the shape classes, indexed by `ShapeFactors::shape`.
pub const SHAPE_NAMES: [&str; 3] = ["square", "ellipse", "heart"];
/// Valid image sides.
pub const MIN_SIZE: usize = 8;
pub const MAX_SIZE: usize = 256;
/// Half-extent of a scale-1.0 shape relative to the image side (so it spans ~40%).
const BASE_HALF_EXTENT: f32 = 0.2;
/// Bounding radius of any shape in its local unit frame (square corner √2 ≈ 1.414).
const LOCAL_RADIUS: f32 = 1.45;
const SUPERSAMPLE: usize = 4;
/// Largest total pixel buffer we agree to generate.
const MAX_TOTAL_BYTES: usize = 4 << 30;

/// Sample one image's factors from the RNG stream.
fn sample_factors(rng: &mut SplitMix64) -> ShapeFactors {
    let shape = rng.below(3) as u8;
    let scale = 0.5 + 0.5 * rng.next_f32();
    let rotation = (rng.next_f32() * TAU).min(TAU - 1e-6);
    let x = 0.2 + 0.6 * rng.next_f32();
    let y = 0.2 + 0.6 * rng.next_f32();
    ShapeFactors {
        shape,
        scale,
        rotation,
        x,
        y,
    }
}

/// Is the point (lx, ly) (local unit frame, y pointing up) inside the shape?
#[inline]
fn inside(shape: u8, lx: f32, ly: f32) -> bool {
    match shape {
        0 => lx.abs() <= 1.0 && ly.abs() <= 1.0,
        // 1 : 0.6 ellipse, elongated so that rotation is visible
        1 => lx * lx + ly * ly * (1.0 / 0.36) <= 1.0,
        _ => {
            // Heart (x²+y²−1)³ − x²y³ ≤ 0 spans x ∈ ±1.14, y ∈ [−1, 1.25]; squeeze it into the
            // unit box, centred, lobes up and point down (upright) at rotation 0.
            let x = lx * 1.14;
            let y = ly * 1.125 + 0.125;
            let a = x * x + y * y - 1.0;
            a * a * a - x * x * y * y * y <= 0.0
        }
    }
}

/// Rasterise one shape into `out` (`size * size` bytes, row-major, y down).
pub fn render(f: &ShapeFactors, size: usize, out: &mut [u8]) {
    out.fill(0);
    let s = size as f32;
    let half = BASE_HALF_EXTENT * f.scale * s; // in pixels
    if half <= 0.0 || size == 0 || out.len() < size * size {
        return;
    }
    let (cx, cy) = (f.x * s, f.y * s);
    let (sin, cos) = f.rotation.sin_cos();
    let inv = 1.0 / half;
    let reach = LOCAL_RADIUS * half;
    let x0 = ((cx - reach).floor().max(0.0)) as usize;
    let y0 = ((cy - reach).floor().max(0.0)) as usize;
    let x1 = ((cx + reach).ceil().max(0.0) as usize).min(size);
    let y1 = ((cy + reach).ceil().max(0.0) as usize).min(size);
    let step = 1.0 / SUPERSAMPLE as f32;
    let total = (SUPERSAMPLE * SUPERSAMPLE) as u32;
    for py in y0..y1 {
        for px in x0..x1 {
            let mut hits = 0u32;
            for sy in 0..SUPERSAMPLE {
                let dy = py as f32 + (sy as f32 + 0.5) * step - cy;
                for sx in 0..SUPERSAMPLE {
                    let dx = px as f32 + (sx as f32 + 0.5) * step - cx;
                    // Rotate by -rotation into the local frame; flip y so local y points up.
                    let lx = (cos * dx + sin * dy) * inv;
                    let ly = -(-sin * dx + cos * dy) * inv;
                    hits += u32::from(inside(f.shape, lx, ly));
                }
            }
            out[py * size + px] = ((hits * 255 + total / 2) / total) as u8;
        }
    }
}

/// Generate `count` shapes of `size`×`size` from `seed` (deterministic; parallel).
pub fn generate(count: usize, size: usize, seed: u64) -> Result<Dataset, DataError> {
    if count < 2 {
        return Err(DataError::Invalid(format!(
            "shapes: count must be at least 2, got {count}"
        )));
    }
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(DataError::Invalid(format!(
            "shapes: size must be in {MIN_SIZE}..={MAX_SIZE}, got {size}"
        )));
    }
    let img = size * size;
    let total = count
        .checked_mul(img)
        .filter(|&t| t <= MAX_TOTAL_BYTES)
        .ok_or_else(|| {
            DataError::Invalid(format!(
                "shapes: {count} images of {size}x{size} exceed the 4 GiB limit"
            ))
        })?;

    let mut rng = SplitMix64::new(seed);
    let factors: Vec<ShapeFactors> = (0..count).map(|_| sample_factors(&mut rng)).collect();
    let mut pixels = vec![0u8; total];

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count.div_ceil(64).max(1));
    let per = count.div_ceil(threads);
    std::thread::scope(|scope| {
        for (fs, px) in factors.chunks(per).zip(pixels.chunks_mut(per * img)) {
            scope.spawn(move || {
                for (f, out) in fs.iter().zip(px.chunks_exact_mut(img)) {
                    render(f, size, out);
                }
            });
        }
    });

    Ok(Dataset {
        source: DataSource::Shapes { count, size, seed },
        width: size,
        height: size,
        channels: 1,
        pixels,
        labels: Some(factors.iter().map(|f| u32::from(f.shape)).collect()),
        label_names: SHAPE_NAMES.iter().map(|s| s.to_string()).collect(),
        factors: Some(factors),
        skipped: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = generate(300, 28, 5).unwrap();
        let b = generate(300, 28, 5).unwrap();
        let c = generate(300, 28, 6).unwrap();
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.factors, b.factors);
        assert_ne!(a.pixels, c.pixels);
        assert_eq!(a.len(), 300);
        assert_eq!((a.width, a.height, a.channels), (28, 28, 1));
        assert_eq!(a.label_names, vec!["square", "ellipse", "heart"]);
        assert_eq!(a.source.describe(), "shapes (300, 28px)");
        // loading through the source gives the same thing
        let d = a.source.load().unwrap();
        assert_eq!(d.pixels, a.pixels);
    }

    #[test]
    fn pixels_factors_labels_sane() {
        let ds = generate(600, 28, 1).unwrap();
        let factors = ds.factors.as_ref().unwrap();
        let labels = ds.labels.as_ref().unwrap();
        let mut per_shape = [0usize; 3];
        let mut full = 0usize;
        for (i, (f, &l)) in factors.iter().zip(labels).enumerate() {
            assert!(f.shape < 3);
            assert_eq!(u32::from(f.shape), l);
            per_shape[f.shape as usize] += 1;
            assert!((0.5..=1.0).contains(&f.scale), "{f:?}");
            assert!((0.0..TAU).contains(&f.rotation), "{f:?}");
            assert!(
                (0.2..=0.8).contains(&f.x) && (0.2..=0.8).contains(&f.y),
                "{f:?}"
            );
            let img = ds.image_u8(i);
            let lit = img.iter().filter(|&&v| v > 0).count();
            let zero = img.len() - lit;
            let max = img.iter().copied().max().unwrap_or(0);
            assert!(
                lit >= 6 && max >= 200,
                "image {i} {f:?}: {lit} lit, max {max}"
            );
            full += img.iter().filter(|&&v| v == 255).count();
            assert!(zero > img.len() / 2, "image {i} is mostly lit");
            // some anti-aliased edge pixels
            assert!(img.iter().any(|&v| v > 0 && v < 250));
        }
        assert!(per_shape.iter().all(|&n| n > 150), "{per_shape:?}");
        assert!(full > 600 * 10, "only {full} fully lit pixels");
    }

    #[test]
    fn shape_is_where_the_factors_say() {
        let f = ShapeFactors {
            shape: 0,
            scale: 1.0,
            rotation: 0.0,
            x: 0.25,
            y: 0.75,
        };
        let mut img = vec![0u8; 40 * 40];
        render(&f, 40, &mut img);
        // centre (10, 30) lit, opposite corner region dark; square spans 8 px each side
        assert_eq!(img[30 * 40 + 10], 255);
        assert_eq!(img[30 * 40 + 17], 255);
        assert_eq!(img[30 * 40 + 19], 0);
        assert_eq!(img[10 * 40 + 30], 0);
        // heart: upright, lobes above the centre are lit, below the point is dark
        let h = ShapeFactors {
            shape: 2,
            scale: 1.0,
            rotation: 0.0,
            x: 0.5,
            y: 0.5,
        };
        let mut img = vec![0u8; 100 * 100];
        render(&h, 100, &mut img);
        let lit = |x: usize, y: usize| img[y * 100 + x] > 128;
        assert!(lit(40, 45) && lit(60, 45), "lobes");
        assert!(!lit(50, 32), "notch between lobes at the top");
        assert!(lit(50, 66), "point near the bottom");
    }

    #[test]
    fn bad_parameters() {
        assert!(generate(1, 28, 0).is_err());
        assert!(generate(10, 7, 0).is_err());
        assert!(generate(10, 257, 0).is_err());
        assert!(generate(usize::MAX, 28, 0).is_err());
        assert!(generate(2, 8, 0).is_ok());
    }
}
