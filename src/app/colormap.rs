//! Colour maps for single-channel images. The same polynomials run in
//! `shaders/colormap.wgsl` (GPU path) and here (CPU path for thumbnails and tests).
//! Polynomial fits of matplotlib's viridis and magma by Matt Zucker (CC0).

use super::settings::Colormap;
use crate::images::ImageBatch;

const VIRIDIS: [[f32; 3]; 7] = [
    [0.277_727_33, 0.005_407_344_5, 0.334_099_8],
    [0.105_093_04, 1.404_613_5, 1.384_590_1],
    [-0.330_861_83, 0.214_847_56, 0.095_095_16],
    [-4.634_230_6, -5.799_101, -19.332_441],
    [6.228_27, 14.179_933, 56.690_55],
    [4.776_385, -13.745_145, -65.353_035],
    [-5.435_456, 4.645_852_6, 26.312_435],
];

const MAGMA: [[f32; 3]; 7] = [
    [-0.002_136_485, -0.000_749_655_05, -0.005_386_128],
    [0.251_660_54, 0.677_523_2, 2.494_026_7],
    [8.353_717, -3.577_719_5, 0.314_467_9],
    [-27.668_733, 14.264_731, -13.649_213],
    [52.176_14, -27.943_607, 12.944_169],
    [-50.768_524, 29.046_583, 4.234_153],
    [18.655_705, -11.489_774, -5.601_961_5],
];

fn poly(c: &[[f32; 3]; 7], t: f32) -> [f32; 3] {
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut v = c[6][k];
        for i in (0..6).rev() {
            v = c[i][k] + t * v;
        }
        *o = v.clamp(0.0, 1.0);
    }
    out
}

/// `t ∈ [0, 1]` → RGB in [0, 1].
pub fn map(cm: Colormap, t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    match cm {
        Colormap::Gray => [t, t, t],
        Colormap::Viridis => poly(&VIRIDIS, t),
        Colormap::Magma => poly(&MAGMA, t),
    }
}

/// Image `i` of `batch` as an egui image; single-channel images go through `cm`.
pub fn to_color_image(batch: &ImageBatch, i: usize, cm: Colormap) -> egui::ColorImage {
    let s = batch.shape;
    let n = s.numel();
    let img = &batch.pixels[i * n..(i + 1) * n];
    let plane = s.height * s.width;
    let to8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
    let px: Vec<egui::Color32> = (0..plane)
        .map(|p| {
            let [r, g, b] = if s.channels >= 3 {
                [img[p], img[plane + p], img[2 * plane + p]]
            } else {
                map(cm, img[p])
            };
            egui::Color32::from_rgb(to8(r), to8(g), to8(b))
        })
        .collect();
    egui::ColorImage::new([s.width, s.height], px)
}

/// All images of `batch` tiled `cols` wide with a 1-pixel gap.
pub fn grid_image(batch: &ImageBatch, cols: usize, cm: Colormap) -> egui::ColorImage {
    let s = batch.shape;
    let n = batch.count();
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let (w, h) = (cols * (s.width + 1) + 1, rows * (s.height + 1) + 1);
    let mut out = egui::ColorImage::filled([w, h], egui::Color32::from_gray(30));
    for i in 0..n {
        let tile = to_color_image(batch, i, cm);
        let (ox, oy) = (
            1 + (i % cols) * (s.width + 1),
            1 + (i / cols) * (s.height + 1),
        );
        for y in 0..s.height {
            for x in 0..s.width {
                out.pixels[(oy + y) * w + ox + x] = tile.pixels[y * s.width + x];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormaps_match_their_end_points() {
        // viridis: dark purple → yellow; magma: black → pale yellow.
        let v0 = map(Colormap::Viridis, 0.0);
        let v1 = map(Colormap::Viridis, 1.0);
        assert!(v0[2] > v0[1] && v0[0] < 0.35, "{v0:?}");
        assert!(v1[0] > 0.9 && v1[1] > 0.85 && v1[2] < 0.2, "{v1:?}");
        let m0 = map(Colormap::Magma, 0.0);
        let m1 = map(Colormap::Magma, 1.0);
        assert!(m0.iter().all(|c| *c < 0.02), "{m0:?}");
        assert!(m1[0] > 0.95 && m1[1] > 0.9, "{m1:?}");
        assert_eq!(map(Colormap::Gray, 0.25), [0.25; 3]);
    }
}
