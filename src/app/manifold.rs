//! Manifold: decode a grid over two chosen latent dimensions in [−3, 3]² (Kingma &
//! Welling's figure); the other dimensions come from the explorer's sliders.

use super::colormap::grid_image;
use super::{AppCommand, Panel, Shared};
use crate::images::ImageBatch;
use crate::worker::decoder::{Output, Slot};

pub struct Manifold {
    /// The class of the last request (conditional models): another one asks again.
    class: u32,
    pub dim_x: usize,
    pub dim_y: usize,
    pub n: usize,
    pub span: f32,
    grid: Option<ImageBatch>,
    version: u64,
    shown: u64,
    dirty: bool,
    base: Vec<f32>,
}

impl Default for Manifold {
    fn default() -> Self {
        Self {
            class: 0,
            dim_x: 0,
            dim_y: 1,
            n: 16,
            span: 3.0,
            grid: None,
            version: 0,
            shown: u64::MAX,
            dirty: true,
            base: Vec::new(),
        }
    }
}

/// Latents of an `n × n` grid over dims `(dx, dy)` in `[-span, span]`, rows from +span
/// (top) to −span, starting from `base`.
pub fn grid_latents(base: &[f32], dx: usize, dy: usize, n: usize, span: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * n * base.len());
    let at = |k: usize| -span + 2.0 * span * k as f32 / (n - 1).max(1) as f32;
    for r in 0..n {
        for c in 0..n {
            let mut z = base.to_vec();
            z[dx] = at(c);
            z[dy] = at(n - 1 - r);
            out.extend(z);
        }
    }
    out
}

impl Panel for Manifold {
    fn id(&self) -> &'static str {
        "manifold"
    }

    fn title(&self) -> &'static str {
        "Manifold"
    }

    fn slots(&self) -> &'static [Slot] {
        &[Slot::Manifold]
    }

    fn on_decoded(&mut self, out: Output, shared: &mut Shared) {
        match out {
            Output::Decoded { images, .. } => {
                self.grid = Some(images);
                self.version += 1;
            }
            Output::Failed { message, .. } => shared.run.errors.push(message),
            Output::Analysed { .. } => {}
            Output::Encoded { .. } => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(info) = shared.run.info.as_ref() else {
            ui.label("Train or load a model to draw its latent manifold.");
            return;
        };
        let d = info.spec.latent_dim();
        if d < 2 {
            ui.label("The manifold needs at least two latent dimensions.");
            return;
        }
        self.dim_x = self.dim_x.min(d - 1);
        self.dim_y = self.dim_y.min(d - 1);
        ui.horizontal_wrapped(|ui| {
            let mut changed = false;
            for (label, v) in [("x: z", &mut self.dim_x), ("y: z", &mut self.dim_y)] {
                let l = ui.label(label);
                changed |= ui
                    .add(egui::DragValue::new(v).range(0..=d - 1))
                    .labelled_by(l.id)
                    .changed();
            }
            changed |= ui
                .add(egui::Slider::new(&mut self.n, 4..=24).text("grid"))
                .changed();
            changed |= ui
                .add(egui::Slider::new(&mut self.span, 0.5..=4.0).text("range ±"))
                .changed();
            if changed {
                self.dirty = true;
            }
            ui.weak("other dimensions: the explorer's sliders");
        });
        if self.dim_x == self.dim_y {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "choose two different dimensions",
            );
            return;
        }
        let base: Vec<f32> = if shared.latent.z.len() == d {
            shared.latent.z.clone()
        } else {
            vec![0.0; d]
        };
        if base != self.base {
            self.base = base.clone();
            self.dirty = true;
        }
        if shared.class_picker(ui) || shared.class != self.class {
            self.dirty = true;
        }
        if (self.dirty || shared.run.new_weights) && shared.decoder.has_model() {
            let z = grid_latents(&base, self.dim_x, self.dim_y, self.n, self.span);
            let job = shared.decode_job(z);
            shared.push(AppCommand::Decoder(Slot::Manifold, job));
            self.class = shared.class;
            self.dirty = false;
        }
        let Some(grid) = &self.grid else {
            ui.spinner();
            return;
        };
        if self.shown != self.version {
            let img = grid_image(grid, self.n, shared.settings.colormap);
            let _ = shared.texture(ui.ctx(), "manifold", img);
            self.shown = self.version;
        }
        if let Some(t) = shared.cached_texture("manifold") {
            let side = ui.available_width().min(ui.available_height()).max(200.0);
            ui.add(egui::Image::new(&t).fit_to_exact_size(egui::vec2(side, side)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_spans_the_range_with_the_base_elsewhere() {
        let z = grid_latents(&[0.5, 0.0, 0.0], 1, 2, 3, 3.0);
        assert_eq!(z.len(), 27);
        // top-left: x = -3, y = +3; bottom-right: x = +3, y = -3.
        assert_eq!(&z[0..3], &[0.5, -3.0, 3.0]);
        assert_eq!(&z[24..27], &[0.5, 3.0, -3.0]);
    }
}
