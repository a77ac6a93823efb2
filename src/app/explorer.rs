//! Latent explorer: one slider per latent dimension and a large decoded image that follows
//! the drag, decoded on the CPU snapshot of the newest weights (also mid-training).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::colormap::{grid_image, to_color_image};
use super::gpu_image::ColormapCallback;
use super::settings::Colormap;
use super::{AppCommand, Panel, Shared};
use crate::images::ImageBatch;
use crate::infer::normal_latents;
use crate::worker::decoder::{Output, Slot};
use crate::worker::RunInfo;

/// This tab's id (other panels send the user here).
pub const ID: &str = "explorer";
/// Dataset thumbnails shown for encoding.
const THUMBS: usize = 48;
const THUMB_COLS: usize = 12;
/// KL (nats) under which a dimension counts as inactive (posterior collapsed to the prior).
const INACTIVE_KL: f64 = 0.02;
/// Classes the "same style, every class" strip shows at most.
const STRIP_CLASSES: usize = 16;

/// The latent itself is [`super::Latent`] in `Shared` (the manifold and the scatter use it).
pub struct Explorer {
    /// The class of the last request (conditional models): another one asks again.
    class: u32,
    /// GAN truncation: latents are scaled by this before decoding.
    pub truncation: f32,
    image: Option<ImageBatch>,
    /// The training step of the weights that decoded `image`.
    image_step: u64,
    gray: Arc<Vec<f32>>,
    version: u64,
    /// When the newest pending request was made (for the latency measurement).
    requested_at: Option<Instant>,
    /// The latent of the newest request (a different one needs a decode).
    requested: Vec<f32>,
    dirty: bool,
    thumbs_key: Option<usize>,
    randomize_seed: u64,
    /// Conditional models: the current latent decoded in every class, one image each.
    strip: Option<ImageBatch>,
    /// The colour map of the strip's texture; `None` when a strip arrived that it does not
    /// show yet.
    strip_shown: Option<Colormap>,
    /// The same latent through the reference run's model, and the file it came from.
    reference_image: Option<ImageBatch>,
    reference_for: Option<std::path::PathBuf>,
    /// A reference image arrived that the texture does not show yet.
    reference_new: bool,
}

impl Default for Explorer {
    fn default() -> Self {
        Self {
            class: 0,
            truncation: 1.0,
            image: None,
            image_step: 0,
            gray: Arc::new(Vec::new()),
            version: 0,
            requested_at: None,
            requested: Vec::new(),
            dirty: true,
            thumbs_key: None,
            randomize_seed: 1,
            strip: None,
            strip_shown: None,
            reference_image: None,
            reference_for: None,
            reference_new: false,
        }
    }
}

impl Panel for Explorer {
    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Latent explorer"
    }

    fn slots(&self) -> &'static [Slot] {
        &[
            Slot::Explorer,
            Slot::EncodeImage,
            Slot::ClassStrip,
            Slot::Reference,
        ]
    }

    fn on_run_ready(&mut self, info: &RunInfo, shared: &mut Shared) {
        self.reset(info.spec.latent_dim(), shared);
    }

    fn on_decoded(&mut self, out: Output, shared: &mut Shared) {
        match out {
            Output::Decoded {
                slot: Slot::ClassStrip,
                images,
                ..
            } => {
                self.strip = Some(images);
                self.strip_shown = None;
            }
            Output::Decoded {
                slot: Slot::Reference,
                images,
                ..
            } => {
                self.reference_image = Some(images);
                self.reference_new = true;
            }
            Output::Decoded {
                images,
                latency_secs,
                model_step,
                ..
            } => {
                // Slider change → new pixels ready (the decoder's own clock) …
                shared.decode_ms.push(latency_secs * 1000.0);
                // … and → the frame that shows them (adds the wait for the next frame).
                if let Some(t) = self.requested_at.take() {
                    shared
                        .decode_to_frame_ms
                        .push(t.elapsed().as_secs_f64() * 1000.0);
                }
                if images.shape.channels == 1 {
                    self.gray = Arc::new(images.pixels.clone());
                }
                self.image = Some(images);
                self.image_step = model_step;
                self.version += 1;
            }
            Output::Encoded { mu, .. } => shared.latent.set(mu),
            Output::Failed { message, .. } => shared.run.errors.push(message),
            Output::Analysed { .. } => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(info) = shared.run.info.as_ref() else {
            ui.label("Train or load a model to explore its latent space.");
            return;
        };
        let is_vae = info.spec.has_encoder();
        let d = info.spec.latent_dim();
        if shared.latent.z.len() != d {
            self.reset(d, shared);
        }
        if shared.run.new_weights || (self.image.is_none() && shared.decoder.has_model()) {
            self.dirty = true;
        }
        let reference = shared.reference.as_ref().map(|r| r.path.clone());
        if reference != self.reference_for {
            self.reference_for = reference;
            self.reference_image = None;
            self.dirty = true;
        }
        let kl: Option<Vec<f64>> = shared.run.last_kl_per_dim().map(<[f64]>::to_vec);

        let avail = ui.available_size();
        let slider_w = (avail.x * 0.42).clamp(260.0, 480.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(slider_w);
                shared.class_picker(ui);
                self.controls_ui(ui, shared, is_vae, kl.as_deref());
            });
            ui.separator();
            ui.vertical(|ui| {
                match reference_fits(shared, d) {
                    Ok(true) => {
                        let half = (ui.available_width() - 12.0) / 2.0;
                        ui.horizontal_top(|ui| {
                            ui.vertical(|ui| {
                                ui.set_width(half);
                                self.image_ui(ui, shared);
                            });
                            ui.vertical(|ui| {
                                ui.set_width(half);
                                self.reference_ui(ui, shared);
                            });
                        });
                    }
                    Ok(false) => self.image_ui(ui, shared),
                    Err(why) => {
                        self.image_ui(ui, shared);
                        ui.weak(why);
                    }
                }
                self.strip_ui(ui, shared);
                if is_vae {
                    ui.add_space(8.0);
                    self.thumbs_ui(ui, shared);
                }
            });
        });
        // Whoever moved the latent (a slider, an encoded image, a scatter click, the UI
        // benchmark), it is decoded once.
        if shared.latent.z != self.requested || shared.class != self.class {
            self.dirty = true;
        }
        if self.dirty && shared.decoder.has_model() {
            self.request_decode(shared);
        }
    }
}

/// Whether the reference run can decode this run's latents (`d` dimensions): `Ok(false)`
/// without a reference, `Err` saying why not.
fn reference_fits(shared: &Shared, d: usize) -> Result<bool, String> {
    let Some(r) = &shared.reference else {
        return Ok(false);
    };
    if r.latent_dim != d {
        return Err(format!(
            "the reference run {} has {} latent dimensions, this run {d}: it cannot decode the same latent",
            r.name, r.latent_dim
        ));
    }
    if r.classes != shared.classes() {
        return Err(format!(
            "the reference run {} is conditioned differently: it cannot decode the same latent",
            r.name
        ));
    }
    Ok(true)
}

impl Explorer {
    /// The explorer's latent decoded by the reference run's model.
    pub fn reference_image(&self) -> Option<&ImageBatch> {
        self.reference_image.as_ref()
    }

    fn reference_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let name = shared.reference.as_ref().map_or("", |r| r.name.as_str());
        ui.strong(format!("Reference: {name}"));
        let side = ui
            .available_width()
            .min(ui.available_height() - 140.0)
            .clamp(120.0, 448.0);
        match &self.reference_image {
            Some(img) => {
                let key = "explorer-reference";
                let tex = match shared.cached_texture(key) {
                    Some(t) if !self.reference_new => t,
                    _ => shared.texture(
                        ui.ctx(),
                        key,
                        to_color_image(img, 0, shared.settings.colormap),
                    ),
                };
                self.reference_new = false;
                let s = img.shape;
                ui.add(egui::Image::new(&tex).fit_to_exact_size(egui::vec2(
                    side,
                    side * s.height as f32 / s.width.max(1) as f32,
                )));
            }
            None => {
                ui.weak("decoding…");
            }
        }
    }

    fn reset(&mut self, latent_dim: usize, shared: &mut Shared) {
        if shared.latent.z.len() != latent_dim {
            shared.latent.z = vec![0.0; latent_dim];
            self.image = None;
        }
        self.strip = None;
        self.thumbs_key = None;
        self.dirty = true;
    }

    /// The decoded image currently shown.
    pub fn image(&self) -> Option<&ImageBatch> {
        self.image.as_ref()
    }

    /// The training step of the weights that decoded [`Self::image`] (while training runs,
    /// each new snapshot decodes the latent again).
    pub fn image_step(&self) -> u64 {
        self.image_step
    }

    /// A conditional model's "same style, every class" strip (one image per class).
    pub fn class_strip(&self) -> Option<&ImageBatch> {
        self.strip.as_ref()
    }

    fn request_decode(&mut self, shared: &mut Shared) {
        if shared.latent.z.is_empty() {
            return;
        }
        let scale = if shared.run.capabilities().encoder {
            1.0
        } else {
            self.truncation
        };
        let z: Vec<f32> = shared.latent.z.iter().map(|v| v * scale).collect();
        if let Some(k) = shared.classes() {
            // The same latent in every class.
            let k = k.min(STRIP_CLASSES);
            let latents = z.iter().copied().cycle().take(k * z.len()).collect();
            let labels = (0..k as u32).collect();
            let job = crate::worker::decoder::Job::DecodeLabelled { latents, labels };
            shared.push(AppCommand::Decoder(Slot::ClassStrip, job));
        }
        let job = shared.decode_job(z);
        if reference_fits(shared, shared.latent.z.len()) == Ok(true) {
            shared.push(AppCommand::Decoder(Slot::Reference, job.clone()));
        }
        shared.push(AppCommand::Decoder(Slot::Explorer, job));
        self.requested.clone_from(&shared.latent.z);
        self.class = shared.class;
        self.requested_at = Some(Instant::now());
        self.dirty = false;
    }

    fn controls_ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        is_vae: bool,
        kl: Option<&[f64]>,
    ) {
        ui.horizontal_wrapped(|ui| {
            if ui.button("Randomize").clicked() {
                self.randomize_seed += 1;
                let z = &mut shared.latent;
                z.z = normal_latents(1, z.z.len(), self.randomize_seed);
                z.source = None;
            }
            if ui.button("Zero").clicked() {
                shared.latent.z.iter_mut().for_each(|v| *v = 0.0);
                shared.latent.source = None;
            }
            if is_vae {
                ui.checkbox(&mut shared.settings.sort_by_kl, "order by KL");
            } else {
                ui.add(egui::Slider::new(&mut self.truncation, 0.0..=2.0).text("truncation"))
                    .changed()
                    .then(|| self.dirty = true);
            }
        });
        let mut order: Vec<usize> = (0..shared.latent.z.len()).collect();
        if let (true, Some(kl)) = (shared.settings.sort_by_kl && is_vae, kl) {
            order.sort_by(|&a, &b| {
                kl.get(b)
                    .unwrap_or(&0.0)
                    .total_cmp(kl.get(a).unwrap_or(&0.0))
            });
        }
        let max_kl = kl
            .map(|k| k.iter().cloned().fold(0.0, f64::max))
            .unwrap_or(0.0);
        if is_vae && kl.is_none() {
            ui.weak("KL per dimension appears after the first epoch.");
        }
        egui::ScrollArea::vertical()
            .id_salt("sliders")
            .show(ui, |ui| {
                for i in order {
                    ui.horizontal(|ui| {
                        let r = ui.add(
                            // An encoded image's latent may lie beyond ±3 in some dimension:
                            // kept as it is (the handle sits at the end) until dragged. Clamping
                            // it here would also show another image than the one picked.
                            egui::Slider::new(&mut shared.latent.z[i], -3.0..=3.0)
                                .text(format!("z{i}"))
                                .fixed_decimals(2)
                                .clamping(egui::SliderClamping::Edits),
                        );
                        if r.changed() {
                            shared.latent.source = None;
                        }
                        if let Some(k) = kl.and_then(|k| k.get(i)) {
                            let (rect, _) = ui
                                .allocate_exact_size(egui::vec2(50.0, 10.0), egui::Sense::hover());
                            let frac = if max_kl > 0.0 {
                                (*k / max_kl) as f32
                            } else {
                                0.0
                            };
                            ui.painter()
                                .rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
                            let mut bar = rect;
                            bar.set_width(rect.width() * frac.clamp(0.0, 1.0));
                            ui.painter().rect_filled(
                                bar,
                                2.0,
                                egui::Color32::from_rgb(80, 160, 220),
                            );
                            if *k < INACTIVE_KL {
                                ui.weak("inactive");
                            } else {
                                ui.weak(format!("{k:.2}"));
                            }
                        }
                    });
                }
            });
    }

    fn image_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.horizontal(|ui| {
            ui.label("colour map");
            for c in Colormap::ALL {
                ui.selectable_value(&mut shared.settings.colormap, c, c.name());
            }
        });
        let side = ui
            .available_width()
            .min(ui.available_height() - 140.0)
            .clamp(160.0, 448.0);
        let Some(img) = &self.image else {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(side, side), egui::Sense::hover());
            ui.painter()
                .rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
            ui.painter().text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "decoding…",
                egui::FontId::default(),
                ui.visuals().weak_text_color(),
            );
            return;
        };
        let s = img.shape;
        let (rect, _) = ui.allocate_exact_size(
            egui::vec2(side, side * s.height as f32 / s.width as f32),
            egui::Sense::hover(),
        );
        if shared.gpu_colormap && s.channels == 1 {
            ui.painter()
                .add(eframe::egui_wgpu::Callback::new_paint_callback(
                    rect,
                    ColormapCallback {
                        id: 1,
                        version: self.version,
                        size: [s.width as u32, s.height as u32],
                        pixels: self.gray.clone(),
                        colormap: shared.settings.colormap,
                    },
                ));
        } else {
            let tex = shared.texture(
                ui.ctx(),
                "explorer",
                to_color_image(img, 0, shared.settings.colormap),
            );
            ui.painter().image(
                tex.id(),
                rect,
                egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                egui::Color32::WHITE,
            );
        }
        let latency = shared
            .decode_ms
            .last()
            .map(|v| format!("weights of step {} · decoded in {v:.1} ms", self.image_step))
            .unwrap_or_default();
        ui.weak(match &shared.latent.source {
            Some(s) => format!("from {s} · {latency}"),
            None => latency,
        });
    }

    /// "Same style, every class": the current latent decoded in each class of a conditional
    /// model, in one row; a click picks that class.
    fn strip_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let (Some(k), Some(strip)) = (shared.classes(), &self.strip) else {
            return;
        };
        let n = strip.count().min(k);
        if n == 0 {
            return;
        }
        ui.add_space(4.0);
        ui.label(match &shared.latent.source {
            Some(s) => format!("Same style, every class (from {s}); click one to pick it:"),
            None => "Same style, every class; click one to pick it:".to_string(),
        });
        // One texture for the row, uploaded when a new strip arrives.
        let colormap = shared.settings.colormap;
        let tex = match shared.cached_texture("class strip") {
            Some(t) if self.strip_shown == Some(colormap) => t,
            _ => {
                self.strip_shown = Some(colormap);
                shared.texture(ui.ctx(), "class strip", grid_image(strip, n, colormap))
            }
        };
        let (r, hovered) = grid_button(ui, &tex, 3.0, (n, 1));
        let cell = r.rect.width() / n as f32;
        let c = shared.class as usize;
        if c < n {
            let x0 = r.rect.min.x + cell * c as f32;
            let sel = egui::Rect::from_min_size(
                egui::pos2(x0, r.rect.min.y),
                egui::vec2(cell, r.rect.height()),
            );
            let stroke = egui::Stroke::new(2.0, ui.visuals().selection.stroke.color);
            ui.painter()
                .rect_stroke(sel, 2.0, stroke, egui::StrokeKind::Inside);
        }
        let r = match hovered {
            Some(h) => r.on_hover_text(format!("class {}", shared.class_name(h as u32))),
            None => r,
        };
        if r.clicked() {
            if let Some(h) = hovered {
                shared.class = h as u32;
            }
        }
    }

    fn thumbs_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(info) = &shared.run.info else { return };
        let preview = &info.test_preview;
        let n = preview.count().min(THUMBS);
        if n == 0 {
            return;
        }
        ui.label(
            "Click a test image to start from its latent (or drop an image file on the window):",
        );
        // Spread over the whole preview: a labelled folder's test split is sorted by class.
        let count = preview.count();
        let pick = move |t: usize| t * count / n;
        let tex = if self.thumbs_key != Some(n) {
            let p = preview.shape.numel();
            let some = ImageBatch {
                shape: preview.shape,
                pixels: (0..n)
                    .flat_map(|t| {
                        preview.pixels[pick(t) * p..(pick(t) + 1) * p]
                            .iter()
                            .copied()
                    })
                    .collect(),
            };
            self.thumbs_key = Some(n);
            shared.texture(
                ui.ctx(),
                "thumbs",
                grid_image(&some, THUMB_COLS, Colormap::Gray),
            )
        } else if let Some(t) = shared.cached_texture("thumbs") {
            t
        } else {
            self.thumbs_key = None;
            return;
        };
        let (r, cell) = grid_button(ui, &tex, 2.0, (THUMB_COLS, n.div_ceil(THUMB_COLS)));
        if let (true, Some(i)) = (r.clicked(), cell) {
            if i < n {
                Self::encode_preview(pick(i), shared);
            }
        }
    }

    /// Encode test image `i` of the run's preview and move the sliders to its latent.
    fn encode_preview(i: usize, shared: &mut Shared) {
        let Some(info) = &shared.run.info else { return };
        let p = info.test_preview.shape.numel();
        let Some(x) = info.test_preview.pixels.get(i * p..(i + 1) * p) else {
            return;
        };
        let x = x.to_vec();
        let own = info.test_preview_labels.get(i).copied();
        let label = own
            .and_then(|l| info.label_names.get(l as usize))
            .map(|l| format!(" (label {l})"))
            .unwrap_or_default();
        // A conditional model encodes the image with its own class.
        let job = shared.encode_job(x, own.into_iter().collect());
        shared.push(AppCommand::Decoder(Slot::EncodeImage, job));
        shared.latent.source = Some(format!("test image {i}{label}"));
    }
}

/// Encode an image file (dropped on the window) and start the explorer from its latent.
pub fn encode_file(path: &Path, shared: &mut Shared) {
    let Some(info) = &shared.run.info else {
        shared
            .run
            .errors
            .push("load or train a model before dropping images on it".into());
        return;
    };
    if !info.spec.has_encoder() {
        shared
            .run
            .errors
            .push("a GAN has no encoder; drop images on a VAE".into());
        return;
    }
    let s = info.spec.shape;
    if s.height != s.width {
        shared
            .run
            .errors
            .push("only square models can encode image files".into());
        return;
    }
    match crate::data::folder::decode_image(path, s.height, s.channels) {
        Ok(px) => {
            let x: Vec<f32> = px.iter().map(|&v| v as f32 / 255.0).collect();
            // A conditional model takes a dropped file as the picked class.
            let job = shared.encode_job(x, vec![shared.class]);
            shared.push(AppCommand::Decoder(Slot::EncodeImage, job));
            shared.latent.source = Some(path.display().to_string());
        }
        Err(e) => shared.run.errors.push(format!("{}: {e}", path.display())),
    }
}

/// `tex`, a grid of `cols` × `rows` cells, as wide as the space allows up to `max_scale`
/// times its size, clickable; with the index (row-major) of the cell under the pointer.
fn grid_button(
    ui: &mut egui::Ui,
    tex: &egui::TextureHandle,
    max_scale: f32,
    (cols, rows): (usize, usize),
) -> (egui::Response, Option<usize>) {
    let [tw, th] = tex.size();
    let w = ui.available_width().min(tw as f32 * max_scale);
    let size = egui::vec2(w, w * th as f32 / tw as f32);
    let r = ui.add(
        egui::Image::new(tex)
            .fit_to_exact_size(size)
            .sense(egui::Sense::click()),
    );
    let cell = r.interact_pointer_pos().or(r.hover_pos()).map(|pos| {
        let rel = (pos - r.rect.min) / r.rect.size();
        let col = ((rel.x * cols as f32) as usize).min(cols - 1);
        let row = ((rel.y * rows as f32) as usize).min(rows - 1);
        row * cols + col
    });
    (r, cell)
}
