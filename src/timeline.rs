//! The sample history of a run: every fixed-noise sample grid (and, for a VAE, the
//! reconstructions of the same test images) the run produced, kept compactly for the app's
//! step cursor, the timelapse and the CLI's `timelapse`.
//!
//! * Pixels are 8-bit; the reconstructions' originals are the same test images every time
//!   and are stored once; a grid at a step already held replaces it (a resume, a pause).
//! * A byte budget bounds it ([`DEFAULT_BUDGET`]): past it, every other frame is dropped and
//!   from then on only every `stride`-th grid is kept, so the history thins evenly over
//!   the whole run instead of losing its start. The newest grid is always kept.
//! * It is saved in the checkpoint as the section [`SECTION`] (deflated); files without it
//!   open with an empty history, and older versions of the app skip the section.
//!
//! Plain data: no tensors, no GUI.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::data::ImageShape;
use crate::images::ImageBatch;

/// The checkpoint section that holds the history.
pub const SECTION: &str = "timeline";
/// Bytes of pixels kept in memory (and, deflated, in the checkpoint): about 570 MNIST
/// sample grids with their reconstructions.
pub const DEFAULT_BUDGET: usize = 32 << 20;
/// Frames kept whatever the budget (large images).
const MIN_FRAMES: usize = 48;
const MAGIC: &[u8; 4] = b"LLTL";
const VERSION: u32 = 1;
/// A section never decompresses to more than this (an untrusted file).
const MAX_DECODED: u64 = 1 << 30;

/// The size of the images of every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub shape: ImageShape,
    /// Images in a sample grid.
    pub samples: usize,
    /// Columns of the sample grid.
    pub cols: usize,
    /// Reconstructed test images per frame (0: a model without an encoder).
    pub recon: usize,
}

impl Layout {
    fn frame_bytes(&self) -> usize {
        (self.samples + self.recon) * self.shape.numel()
    }
}

/// What is measured of a sample grid when it is recorded (by the session, which sends it
/// with the grid, so the UI does not measure again).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measures {
    /// [`crate::health::diversity`].
    pub diversity: f32,
    /// [`crate::health::label_coverage`] (labelled data only).
    pub coverage: Option<f32>,
}

impl Measures {
    /// The diversity of `samples`, with their label `coverage` if known.
    pub fn of(samples: &ImageBatch, coverage: Option<f32>) -> Self {
        Self {
            diversity: crate::health::diversity(samples) as f32,
            coverage,
        }
    }
}

/// One recorded step.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub step: u64,
    /// [`crate::health::diversity`] of the sample grid (mode-collapse indicator).
    pub diversity: f32,
    /// [`crate::health::label_coverage`] of the sample grid (labelled data only).
    pub coverage: Option<f32>,
    samples: Vec<u8>,
    recon: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    layout: Option<Layout>,
    /// The test images the reconstructions are of.
    originals: Vec<u8>,
    frames: Vec<Frame>,
    /// Keep every `stride`-th grid offered (doubles at each thinning).
    stride: u64,
    /// Grids offered at distinct steps since the history began.
    offered: u64,
    /// The last frame is off the stride (kept because it is the newest).
    tail_extra: bool,
    budget: usize,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::with_budget(DEFAULT_BUDGET)
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    layout: Option<Layout>,
    stride: u64,
    offered: u64,
    tail_extra: bool,
    steps: Vec<u64>,
    diversity: Vec<f32>,
    #[serde(default)]
    coverage: Vec<Option<f32>>,
}

fn to_u8(v: &[f32]) -> Vec<u8> {
    v.iter()
        .map(|&x| (x.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
        .collect()
}

fn to_f32(v: &[u8]) -> Vec<f32> {
    v.iter().map(|&x| x as f32 / 255.0).collect()
}

impl Timeline {
    pub fn with_budget(budget: usize) -> Self {
        Self {
            layout: None,
            originals: Vec::new(),
            frames: Vec::new(),
            stride: 1,
            offered: 0,
            tail_extra: false,
            budget,
        }
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// Keep every `stride()`-th grid of the run (1 until the budget was first reached).
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// Pixel bytes held.
    pub fn bytes(&self) -> usize {
        self.originals.len()
            + self
                .frames
                .iter()
                .map(|f| f.samples.len() + f.recon.len())
                .sum::<usize>()
    }

    /// Record the sample grid (`cols` wide) of `step`, and the reconstructions
    /// (`(originals, reconstructions)`) of a model with an encoder, with what was
    /// measured of it.
    pub fn push(
        &mut self,
        step: u64,
        samples: &ImageBatch,
        cols: usize,
        recon: Option<(&ImageBatch, &ImageBatch)>,
        measures: Measures,
    ) {
        let layout = Layout {
            shape: samples.shape,
            samples: samples.count(),
            cols: cols.max(1),
            recon: recon.map_or(0, |(o, r)| o.count().min(r.count())),
        };
        let n = layout.recon * layout.shape.numel();
        if self.layout != Some(layout) {
            // A different model or grid: its history starts here.
            *self = Self::with_budget(self.budget);
            self.layout = Some(layout);
            self.originals = recon.map_or(Vec::new(), |(o, _)| to_u8(&o.pixels[..n]));
        }
        let frame = Frame {
            step,
            diversity: measures.diversity,
            coverage: measures.coverage,
            samples: to_u8(&samples.pixels[..layout.samples * layout.shape.numel()]),
            recon: recon.map_or(Vec::new(), |(_, r)| to_u8(&r.pixels[..n])),
        };
        match self.frames.last_mut() {
            Some(last) if last.step == step => {
                *last = frame;
                return;
            }
            // A resumed run that went back (a divergence restored earlier weights): the
            // frames after the restored step are of weights that no longer exist.
            Some(last) if last.step > step => {
                self.frames.retain(|f| f.step < step);
                self.tail_extra = false;
            }
            _ => {}
        }
        if self.tail_extra {
            self.frames.pop();
        }
        self.tail_extra = self.offered % self.stride != 0;
        self.offered += 1;
        self.frames.push(frame);
        while self.bytes() > self.budget && self.frames.len() > MIN_FRAMES {
            self.thin();
        }
    }

    /// Drop every other frame on the stride, doubling the stride; the newest frame stays
    /// (off the stride if it has to).
    fn thin(&mut self) {
        let extra = if self.tail_extra {
            self.frames.pop()
        } else {
            None
        };
        let last = self.frames.len().wrapping_sub(1);
        let mut rescued = None;
        let mut kept = Vec::with_capacity(self.frames.len() / 2 + 2);
        for (k, f) in std::mem::take(&mut self.frames).into_iter().enumerate() {
            if k % 2 == 0 {
                kept.push(f);
            } else if k == last {
                rescued = Some(f);
            }
        }
        self.frames = kept;
        self.stride *= 2;
        self.tail_extra = match extra.or(rescued) {
            Some(f) => {
                self.frames.push(f);
                true
            }
            None => false,
        };
    }

    /// `[step, diversity / real]` of every frame (`real`: the diversity of real images;
    /// nothing when it is 0).
    pub fn diversity_ratios(&self, real: f64) -> Vec<[f64; 2]> {
        if real <= 0.0 {
            return Vec::new();
        }
        self.frames
            .iter()
            .map(|f| [f.step as f64, f.diversity as f64 / real])
            .collect()
    }

    /// `[step, label coverage]` of the frames that have one.
    pub fn coverages(&self) -> Vec<[f64; 2]> {
        self.frames
            .iter()
            .filter_map(|f| f.coverage.map(|c| [f.step as f64, c as f64]))
            .collect()
    }

    /// The frame shown at `step`: the last one at or before it (the first if none is).
    pub fn index_at(&self, step: u64) -> Option<usize> {
        if self.frames.is_empty() {
            return None;
        }
        let after = self.frames.partition_point(|f| f.step <= step);
        Some(after.saturating_sub(1))
    }

    /// The sample grid of frame `i` (pixels back in [0, 1]).
    pub fn samples(&self, i: usize) -> Option<ImageBatch> {
        let (l, f) = (self.layout?, self.frames.get(i)?);
        Some(ImageBatch {
            shape: l.shape,
            pixels: to_f32(&f.samples),
        })
    }

    /// The test images and their reconstructions at frame `i` (models with an encoder).
    pub fn reconstructions(&self, i: usize) -> Option<(ImageBatch, ImageBatch)> {
        let (l, f) = (self.layout?, self.frames.get(i)?);
        if l.recon == 0 || f.recon.is_empty() {
            return None;
        }
        let batch = |p: &[u8]| ImageBatch {
            shape: l.shape,
            pixels: to_f32(p),
        };
        Some((batch(&self.originals), batch(&f.recon)))
    }

    /// Frame `i` as a picture: the sample grid (`scale`× nearest neighbour) over a bar that
    /// shows how far into the history it is.
    pub fn frame_image(&self, i: usize, scale: usize) -> Option<image::RgbaImage> {
        let l = self.layout?;
        let grid = self.samples(i)?.grid(l.cols, 2, scale.max(1));
        let (w, h) = grid.dimensions();
        let bar = 4;
        let mut out = image::RgbaImage::from_pixel(w, h + bar, image::Rgba([40, 40, 48, 255]));
        image::imageops::replace(&mut out, &grid, 0, 0);
        let last = self.frames.last().map_or(1, |f| f.step.max(1));
        let done = (self.frames[i].step as f64 / last as f64 * w as f64) as u32;
        for x in 0..done.min(w) {
            for y in h..h + bar {
                out.put_pixel(x, y, image::Rgba([110, 170, 255, 255]));
            }
        }
        Some(out)
    }

    /// The frames of a timelapse: every `every`-th frame, and always the last.
    pub fn picks(&self, every: usize) -> Vec<usize> {
        let every = every.max(1);
        let mut picks: Vec<usize> = (0..self.frames.len()).step_by(every).collect();
        if let Some(last) = self.frames.len().checked_sub(1) {
            if picks.last() != Some(&last) {
                picks.push(last);
            }
        }
        picks
    }

    /// Frames `picks` as timelapse pictures.
    pub fn timelapse(&self, picks: &[usize], scale: usize) -> Vec<image::RgbaImage> {
        picks
            .iter()
            .filter_map(|&i| self.frame_image(i, scale))
            .collect()
    }

    /// A contact sheet: frames `picks` tiled in rows of `cols`.
    pub fn contact_sheet(&self, picks: &[usize], cols: usize, scale: usize) -> image::RgbaImage {
        let tiles = self.timelapse(picks, scale);
        let Some(first) = tiles.first() else {
            return image::RgbaImage::new(1, 1);
        };
        let (w, h) = first.dimensions();
        let cols = cols.clamp(1, tiles.len());
        let rows = tiles.len().div_ceil(cols);
        let pad = 6;
        let mut out = image::RgbaImage::from_pixel(
            cols as u32 * (w + pad) + pad,
            rows as u32 * (h + pad) + pad,
            image::Rgba([24, 24, 28, 255]),
        );
        for (k, t) in tiles.iter().enumerate() {
            let (r, c) = ((k / cols) as u32, (k % cols) as u32);
            image::imageops::replace(
                &mut out,
                t,
                (pad + c * (w + pad)) as i64,
                (pad + r * (h + pad)) as i64,
            );
        }
        out
    }

    /// The checkpoint section.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            layout: self.layout,
            stride: self.stride,
            offered: self.offered,
            tail_extra: self.tail_extra,
            steps: self.frames.iter().map(|f| f.step).collect(),
            diversity: self.frames.iter().map(|f| f.diversity).collect(),
            coverage: self.frames.iter().map(|f| f.coverage).collect(),
        };
        let json = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        let mut z = flate2::write::DeflateEncoder::new(out, flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = z.write_all(&(json.len() as u64).to_le_bytes());
        let _ = z.write_all(&json);
        let _ = z.write_all(&self.originals);
        for f in &self.frames {
            let _ = z.write_all(&f.samples);
            let _ = z.write_all(&f.recon);
        }
        z.finish().unwrap_or_default()
    }

    /// Parse a checkpoint section (an untrusted file: sizes are checked before anything
    /// is allocated, and the stream may not inflate past what the header describes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err("not a sample history".into());
        }
        let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if version != VERSION {
            return Err(format!("sample history version {version} is not supported"));
        }
        let mut z = flate2::read::DeflateDecoder::new(&bytes[8..]).take(MAX_DECODED);
        let mut len = [0u8; 8];
        z.read_exact(&mut len).map_err(|e| e.to_string())?;
        let len = u64::from_le_bytes(len);
        if len > 64 << 20 {
            return Err("sample history header too large".into());
        }
        let mut json = vec![0u8; len as usize];
        z.read_exact(&mut json).map_err(|e| e.to_string())?;
        let h: Header = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
        let n = h.steps.len();
        if h.diversity.len() != n
            || !(h.coverage.is_empty() || h.coverage.len() == n)
            || !h.stride.is_power_of_two()
        {
            return Err("inconsistent sample history".into());
        }
        if !h.steps.windows(2).all(|w| w[0] < w[1]) {
            return Err("sample history steps out of order".into());
        }
        let Some(layout) = h.layout else {
            return match n {
                0 => Ok(Self::default()),
                _ => Err("sample history frames without a layout".into()),
            };
        };
        let numel = layout.shape.numel();
        let total = (layout.samples as u64)
            .checked_add(layout.recon as u64)
            .and_then(|k| k.checked_mul(numel as u64))
            .and_then(|fb| fb.checked_mul(n as u64))
            .and_then(|t| t.checked_add(layout.recon as u64 * numel as u64))
            .filter(|&t| t <= MAX_DECODED && numel > 0 && layout.samples > 0 && layout.cols > 0)
            .ok_or("sample history sizes out of range")?;
        // No more than this app ever writes: the budget (with room), or the frames it keeps
        // whatever their size.
        let most = (4 * DEFAULT_BUDGET as u64).max(
            (MIN_FRAMES as u64 + 2) * layout.frame_bytes() as u64
                + layout.recon as u64 * numel as u64,
        );
        if total > most {
            return Err(format!(
                "sample history of {total} bytes is larger than any this app writes"
            ));
        }
        let mut pixels = Vec::new();
        // Never more than the header describes (+1 to notice trailing data).
        (&mut z)
            .take(total + 1)
            .read_to_end(&mut pixels)
            .map_err(|e| e.to_string())?;
        if pixels.len() as u64 != total {
            return Err(format!(
                "sample history holds {} bytes of pixels, its header describes {total}",
                pixels.len()
            ));
        }
        let o = layout.recon * numel;
        let (originals, rest) = pixels.split_at(o);
        let fb = layout.frame_bytes();
        let frames = rest
            .chunks(fb.max(1))
            .zip(h.steps.iter().zip(&h.diversity))
            .enumerate()
            .map(|(k, (p, (&step, &diversity)))| Frame {
                step,
                diversity,
                coverage: h.coverage.get(k).copied().flatten(),
                samples: p[..layout.samples * numel].to_vec(),
                recon: p[layout.samples * numel..].to_vec(),
            })
            .collect();
        Ok(Self {
            layout: Some(layout),
            originals: originals.to_vec(),
            frames,
            stride: h.stride,
            offered: h.offered,
            tail_extra: h.tail_extra && n > 0,
            budget: DEFAULT_BUDGET,
        })
    }
}

/// Frames of a timelapse GIF, and tiles of a contact sheet, when `every` is not given.
pub const GIF_FRAMES: usize = 200;
pub const SHEET_FRAMES: usize = 40;

/// Write `timeline` to `path` as an animated GIF (10 frames a second) or, with `sheet`, a
/// PNG contact sheet (8 columns): every `every`-th frame (default: about [`GIF_FRAMES`]
/// or [`SHEET_FRAMES`] frames in all) and the last, each `scale`×. Returns the frame count.
pub fn write_timelapse(
    timeline: &Timeline,
    path: &std::path::Path,
    sheet: bool,
    every: Option<usize>,
    scale: usize,
) -> Result<usize, crate::images::ImageError> {
    let most = if sheet { SHEET_FRAMES } else { GIF_FRAMES };
    let every = every
        .unwrap_or_else(|| timeline.len().div_ceil(most))
        .max(1);
    let picks = timeline.picks(every);
    if sheet {
        crate::images::save_png(&timeline.contact_sheet(&picks, 8, scale), path)?;
    } else {
        crate::images::save_gif(&timeline.timelapse(&picks, scale), 100, path)?;
    }
    Ok(picks.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(v: f32) -> ImageBatch {
        ImageBatch {
            shape: ImageShape::new(1, 4, 4),
            pixels: (0..8 * 16)
                .map(|i| (v + i as f32 * 0.001).fract())
                .collect(),
        }
    }

    #[test]
    fn thinning_keeps_the_whole_run_evenly_and_the_newest() {
        // Each frame is 128 bytes: a budget of 64 frames.
        let mut t = Timeline::with_budget(64 * 128);
        for s in 0..1000u64 {
            t.push(s * 10, &grid(s as f32 * 0.01), 4, None, Measures::default());
            assert!(t.bytes() <= 64 * 128 + 128, "{} bytes", t.bytes());
            assert_eq!(t.frames().last().map(|f| f.step), Some(s * 10));
        }
        let steps: Vec<u64> = t.frames().iter().map(|f| f.step).collect();
        assert_eq!(steps[0], 0, "the start of the run is kept");
        assert!(t.len() >= 32 && t.len() <= 65, "{}", t.len());
        // Even spacing, except the newest frame kept off the stride.
        let gaps: Vec<u64> = steps[..steps.len() - 1]
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        assert!(gaps.iter().all(|&g| g == gaps[0]), "{gaps:?}");
        assert_eq!(gaps[0], 10 * t.stride());
    }

    #[test]
    fn same_step_replaces_and_a_rollback_drops_later_frames() {
        let mut t = Timeline::default();
        for s in [0, 200, 400, 400, 600] {
            t.push(s, &grid(s as f32), 8, None, Measures::default());
        }
        assert_eq!(t.len(), 4);
        t.push(300, &grid(0.3), 8, None, Measures::default());
        let steps: Vec<u64> = t.frames().iter().map(|f| f.step).collect();
        assert_eq!(steps, [0, 200, 300]);
        assert_eq!(t.index_at(250), Some(1));
        assert_eq!(t.index_at(0), Some(0));
        assert_eq!(t.index_at(10_000), Some(2));
    }

    #[test]
    fn round_trip_through_bytes_and_bad_bytes_are_errors() {
        let mut t = Timeline::with_budget(20 * 256);
        let rec = grid(0.5);
        for s in 0..100u64 {
            let g = grid(s as f32 * 0.013);
            t.push(s, &g, 8, Some((&rec, &g)), Measures::of(&g, Some(0.5)));
        }
        let bytes = t.to_bytes();
        let back = Timeline::from_bytes(&bytes).unwrap();
        assert_eq!(back.frames(), t.frames());
        assert_eq!(back.originals, t.originals);
        let (o, r) = back.reconstructions(3).unwrap();
        assert_eq!(o.count(), 8);
        assert!((r.pixels[5] - t.samples(3).unwrap().pixels[5]).abs() < 1e-6);
        // Continuing a loaded history thins as the original would.
        let (mut a, mut b) = (t.clone(), back);
        b.budget = a.budget;
        for s in 100..150u64 {
            a.push(s, &grid(0.1), 8, Some((&rec, &rec)), Measures::default());
            b.push(s, &grid(0.1), 8, Some((&rec, &rec)), Measures::default());
        }
        assert_eq!(a.frames(), b.frames());
        // A header that claims more than any budget allows is refused before inflating.
        // (60 frames claiming 4 MB each: more than the budget and than 50 such frames.)
        let mut big = Timeline::with_budget(usize::MAX);
        for s in 0..60u64 {
            big.push(s, &grid(0.1), 8, None, Measures::default());
        }
        big.layout = big.layout.map(|l| Layout {
            samples: 1 << 18,
            ..l
        });
        let e = Timeline::from_bytes(&big.to_bytes()).unwrap_err();
        assert!(e.contains("larger than any"), "{e}");
        for cut in [0, 7, 9, bytes.len() / 2, bytes.len() - 1] {
            assert!(Timeline::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[4] = 9;
        assert!(Timeline::from_bytes(&flipped).is_err());
    }

    #[test]
    fn timelapse_frames_and_sheet_have_their_sizes() {
        let mut t = Timeline::default();
        for s in 0..10u64 {
            t.push(s, &grid(s as f32 * 0.1), 4, None, Measures::default());
        }
        assert_eq!(t.picks(3), [0, 3, 6, 9]);
        assert_eq!(t.picks(4), [0, 4, 8, 9]);
        let frames = t.timelapse(&t.picks(1), 2);
        assert_eq!(frames.len(), 10);
        // 4 columns of 8 px + 5 pads of 2; 2 rows; a 4 px bar.
        assert_eq!(frames[0].dimensions(), (4 * 8 + 10, 2 * 8 + 6 + 4));
        let sheet = t.contact_sheet(&t.picks(1), 5, 2);
        assert_eq!(sheet.dimensions(), (5 * (42 + 6) + 6, 2 * (26 + 6) + 6));
    }
}
