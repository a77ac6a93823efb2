//! Plain image batches (what crosses to the UI and the CLI) and writing them to PNG / GIF.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::ImageShape;

/// `count` images of `shape`, pixels in [0, 1], CHW per image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageBatch {
    pub shape: ImageShape,
    pub pixels: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: image::ImageError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ImageBatch {
    pub fn count(&self) -> usize {
        self.pixels
            .len()
            .checked_div(self.shape.numel())
            .unwrap_or(0)
    }

    /// Image `i` as RGBA8, `width * height * 4` bytes.
    pub fn rgba(&self, i: usize) -> Vec<u8> {
        let ImageShape {
            channels,
            height,
            width,
        } = self.shape;
        let plane = height * width;
        let img = &self.pixels[i * self.shape.numel()..(i + 1) * self.shape.numel()];
        let to8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        let mut out = Vec::with_capacity(plane * 4);
        for p in 0..plane {
            let (r, g, b) = if channels >= 3 {
                (img[p], img[plane + p], img[2 * plane + p])
            } else {
                (img[p], img[p], img[p])
            };
            out.extend_from_slice(&[to8(r), to8(g), to8(b), 255]);
        }
        out
    }

    /// All images tiled in a grid of `cols` columns with `pad` pixels between them,
    /// each scaled by `scale` (nearest neighbour).
    pub fn grid(&self, cols: usize, pad: usize, scale: usize) -> image::RgbaImage {
        let n = self.count();
        let cols = cols.clamp(1, n.max(1));
        let rows = n.div_ceil(cols).max(1);
        let (w, h) = (self.shape.width * scale, self.shape.height * scale);
        let gw = cols * w + (cols + 1) * pad;
        let gh = rows * h + (rows + 1) * pad;
        let mut out =
            image::RgbaImage::from_pixel(gw as u32, gh as u32, image::Rgba([40, 40, 48, 255]));
        for i in 0..n {
            let (r, c) = (i / cols, i % cols);
            let (ox, oy) = (pad + c * (w + pad), pad + r * (h + pad));
            let px = self.rgba(i);
            for y in 0..h {
                for x in 0..w {
                    let s = ((y / scale) * self.shape.width + x / scale) * 4;
                    out.put_pixel(
                        (ox + x) as u32,
                        (oy + y) as u32,
                        image::Rgba([px[s], px[s + 1], px[s + 2], 255]),
                    );
                }
            }
        }
        out
    }

    /// Image `i` alone, scaled.
    pub fn single(&self, i: usize, scale: usize) -> image::RgbaImage {
        let one = ImageBatch {
            shape: self.shape,
            pixels: self.pixels[i * self.shape.numel()..(i + 1) * self.shape.numel()].to_vec(),
        };
        one.grid(1, 0, scale)
    }
}

/// The colour of class `i` in scatter plots (matplotlib's "tab10"), in the app and the CLI.
pub fn label_rgb(i: usize) -> [u8; 3] {
    const C: [[u8; 3]; 10] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ];
    C[i % C.len()]
}

/// A `size × size` scatter plot of `points` on white, each a 5-pixel square coloured by its
/// label (`labels` empty: all one colour), fitted to the canvas with a margin.
pub fn scatter_image(points: &[[f32; 2]], labels: &[u32], size: u32) -> image::RgbaImage {
    let mut img = image::RgbaImage::from_pixel(size, size, image::Rgba([255, 255, 255, 255]));
    let finite = points
        .iter()
        .filter(|p| p[0].is_finite() && p[1].is_finite());
    let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
    for p in finite {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-6);
    let margin = size as f32 * 0.05;
    let inner = size as f32 - 2.0 * margin;
    for (i, p) in points.iter().enumerate() {
        if !(p[0].is_finite() && p[1].is_finite()) {
            continue;
        }
        let x = margin + (p[0] - lo[0]) / span * inner;
        let y = size as f32 - margin - (p[1] - lo[1]) / span * inner;
        let [r, g, b] = label_rgb(labels.get(i).copied().unwrap_or(0) as usize);
        for dy in -2i64..=2 {
            for dx in -2i64..=2 {
                let (px, py) = (x as i64 + dx, y as i64 + dy);
                if px >= 0 && py >= 0 && px < size as i64 && py < size as i64 {
                    img.put_pixel(px as u32, py as u32, image::Rgba([r, g, b, 255]));
                }
            }
        }
    }
    img
}

/// Write a PNG atomically (temporary file + rename).
pub fn save_png(img: &image::RgbaImage, path: &Path) -> Result<(), ImageError> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|source| ImageError::Write {
        path: path.display().to_string(),
        source,
    })?;
    crate::util::write_atomic(path, &bytes).map_err(|source| ImageError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Write an animated GIF (looping) of `frames`, `delay_ms` each, atomically.
pub fn save_gif(frames: &[image::RgbaImage], delay_ms: u32, path: &Path) -> Result<(), ImageError> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let err = |source| ImageError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut bytes = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut bytes, 10);
        enc.set_repeat(Repeat::Infinite).map_err(err)?;
        let delay = image::Delay::from_numer_denom_ms(delay_ms, 1);
        let frames = frames
            .iter()
            .map(|f| image::Frame::from_parts(f.clone(), 0, 0, delay));
        enc.encode_frames(frames).map_err(err)?;
    }
    crate::util::write_atomic(path, &bytes).map_err(|source| ImageError::Io {
        path: path.display().to_string(),
        source,
    })
}
