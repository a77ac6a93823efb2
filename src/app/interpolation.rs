//! Interpolation between two endpoints (encoded test images or random latents), lerp or
//! slerp, shown as a strip and played as an animation; export as PNG strip or GIF.

use std::time::{Duration, Instant};

use super::colormap::{grid_image, to_color_image};
use super::files::FileAction;
use super::{AppCommand, Panel, Shared};
use crate::images::ImageBatch;
use crate::infer::{lerp, normal_latents, slerp};
use crate::worker::decoder::{Output, Slot};
use crate::worker::RunInfo;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Lerp,
    Slerp,
}

pub struct Interpolation {
    /// The class of the last request (conditional models): another one asks again.
    class: u32,
    pub from: usize,
    pub to: usize,
    /// Use random latents (seeded) instead of encoded test images.
    pub random: bool,
    pub seed: u64,
    pub steps: usize,
    pub mode: Mode,
    pub playing: bool,
    frame: usize,
    last_frame: Instant,
    ends: Option<(Vec<f32>, Vec<f32>)>,
    pub strip: Option<ImageBatch>,
    strip_version: u64,
    shown_version: u64,
    dirty: bool,
}

impl Default for Interpolation {
    fn default() -> Self {
        Self {
            class: 0,
            from: 0,
            to: 1,
            random: false,
            seed: 1,
            steps: 10,
            mode: Mode::Slerp,
            playing: true,
            frame: 0,
            last_frame: Instant::now(),
            ends: None,
            strip: None,
            strip_version: 0,
            shown_version: u64::MAX,
            dirty: true,
        }
    }
}

impl Interpolation {
    fn latents(&self) -> Option<Vec<f32>> {
        let (a, b) = self.ends.as_ref()?;
        let mut out = Vec::with_capacity(self.steps * a.len());
        for s in 0..self.steps {
            let t = s as f32 / (self.steps - 1).max(1) as f32;
            out.extend(match self.mode {
                Mode::Lerp => lerp(a, b, t),
                Mode::Slerp => slerp(a, b, t),
            });
        }
        Some(out)
    }

    fn request(&mut self, shared: &mut Shared) {
        let Some(info) = &shared.run.info else { return };
        let d = info.spec.latent_dim();
        if self.random || !info.spec.has_encoder() {
            let z = normal_latents(2, d, self.seed);
            self.ends = Some((z[..d].to_vec(), z[d..].to_vec()));
        } else {
            // Encode the two endpoints first; the decode follows in `on_output`.
            let p = info.test_preview.shape.numel();
            let n = info.test_preview.count();
            let (a, b) = (
                self.from.min(n.saturating_sub(1)),
                self.to.min(n.saturating_sub(1)),
            );
            let mut x = info.test_preview.pixels[a * p..(a + 1) * p].to_vec();
            x.extend_from_slice(&info.test_preview.pixels[b * p..(b + 1) * p]);
            let l = &info.test_preview_labels;
            let own = [a, b].iter().filter_map(|&i| l.get(i).copied()).collect();
            let job = shared.encode_job(x, own);
            shared.push(AppCommand::Decoder(Slot::Interpolation, job));
            self.dirty = false;
            return;
        }
        if let Some(z) = self.latents() {
            let job = shared.decode_job(z);
            shared.push(AppCommand::Decoder(Slot::Interpolation, job));
        }
        self.class = shared.class;
        self.dirty = false;
    }
}

impl Panel for Interpolation {
    fn id(&self) -> &'static str {
        "interpolation"
    }

    fn title(&self) -> &'static str {
        "Interpolation"
    }

    fn slots(&self) -> &'static [Slot] {
        &[Slot::Interpolation]
    }

    fn on_run_ready(&mut self, _info: &RunInfo, _shared: &mut Shared) {
        self.ends = None;
        self.strip = None;
        self.dirty = true;
    }

    fn on_decoded(&mut self, out: Output, shared: &mut Shared) {
        match out {
            Output::Encoded { mu, .. } => {
                let d = mu.len() / 2;
                self.ends = Some((mu[..d].to_vec(), mu[d..].to_vec()));
                if let Some(z) = self.latents() {
                    let job = shared.decode_job(z);
                    shared.push(AppCommand::Decoder(Slot::Interpolation, job));
                }
            }
            Output::Decoded { images, .. } => {
                self.strip = Some(images);
                self.strip_version += 1;
                self.frame = 0;
            }
            Output::Failed { message, .. } => shared.run.errors.push(message),
            Output::Analysed { .. } => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(info) = shared.run.info.as_ref() else {
            ui.label("Train or load a model to interpolate in its latent space.");
            return;
        };
        let is_vae = info.spec.has_encoder();
        let n = info.test_preview.count();
        // Two clicks in the scatter chose the ends.
        if let Some([a, b]) = shared.interpolation_ends.take() {
            (self.from, self.to, self.random) = (a, b, false);
            self.ends = None;
            self.dirty = true;
        }
        if shared.class_picker(ui) || shared.class != self.class {
            self.dirty = true;
        }
        ui.horizontal_wrapped(|ui| {
            let mut changed = false;
            if is_vae {
                changed |= ui.checkbox(&mut self.random, "random endpoints").changed();
            }
            if self.random || !is_vae {
                let l = ui.label("seed");
                changed |= ui
                    .add(egui::DragValue::new(&mut self.seed))
                    .labelled_by(l.id)
                    .changed();
            } else {
                let l = ui.label("from test image");
                changed |= ui
                    .add(egui::DragValue::new(&mut self.from).range(0..=n.saturating_sub(1)))
                    .labelled_by(l.id)
                    .changed();
                let l = ui.label("to");
                changed |= ui
                    .add(egui::DragValue::new(&mut self.to).range(0..=n.saturating_sub(1)))
                    .labelled_by(l.id)
                    .changed();
            }
            changed |= ui
                .add(egui::Slider::new(&mut self.steps, 2..=32).text("steps"))
                .changed();
            changed |= ui
                .selectable_value(&mut self.mode, Mode::Lerp, "lerp")
                .changed();
            changed |= ui
                .selectable_value(&mut self.mode, Mode::Slerp, "slerp")
                .changed();
            ui.checkbox(&mut self.playing, "play");
            if changed {
                self.dirty = true;
                self.ends = if self.random || !is_vae {
                    None
                } else {
                    self.ends.take()
                };
            }
        });
        if (self.dirty || shared.run.new_weights) && shared.decoder.has_model() {
            self.request(shared);
        }
        let Some(strip) = self.strip.clone() else {
            ui.spinner();
            return;
        };
        let cm = shared.settings.colormap;
        if self.shown_version != self.strip_version {
            let _ = shared.texture(
                ui.ctx(),
                "interp-strip",
                grid_image(&strip, strip.count(), cm),
            );
            self.shown_version = self.strip_version;
        }
        if let Some(t) = shared.cached_texture("interp-strip") {
            let w = ui.available_width();
            let [tw, th] = t.size();
            ui.add(
                egui::Image::new(&t).fit_to_exact_size(egui::vec2(w, w * th as f32 / tw as f32)),
            );
        }
        // Animation: ping-pong through the strip at ~12 frames a second.
        let count = strip.count().max(1);
        if self.playing && self.last_frame.elapsed() > Duration::from_millis(80) {
            self.frame = (self.frame + 1) % (2 * count - 2).max(1);
            self.last_frame = Instant::now();
        }
        if self.playing {
            ui.ctx().request_repaint_after(Duration::from_millis(80));
        }
        let i = if self.frame < count {
            self.frame
        } else {
            2 * count - 2 - self.frame
        };
        let tex = shared.texture(
            ui.ctx(),
            "interp-frame",
            to_color_image(&strip, i.min(count - 1), cm),
        );
        let side = ui.available_height().clamp(120.0, 320.0) - 40.0;
        ui.add(egui::Image::new(&tex).fit_to_exact_size(egui::vec2(side, side)));
        ui.horizontal(|ui| {
            if ui.button("Export PNG strip…").clicked() {
                shared.push(AppCommand::ChoosePath(FileAction::ExportPng(strip.clone())));
            }
            if ui.button("Export GIF…").clicked() {
                shared.push(AppCommand::ChoosePath(FileAction::ExportGif(strip.clone())));
            }
        });
    }
}
