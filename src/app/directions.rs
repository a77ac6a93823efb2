//! Principal directions and attribute vectors as sliders over the explorer's latent.
//!
//! The principal directions (PCA of the encoder means for a VAE, GANSpace for a GAN) come from
//! the analysis thread with each snapshot, aligned to the previous set so a slider keeps its
//! meaning. A slider shows the latent's coordinate along its direction and moves the latent
//! along it; every view shares that latent. Directions can be named and saved with the run
//! (the checkpoint keeps them); attribute vectors — the mean latent of one class or scatter
//! group minus another's — join the same list.

use super::colormap::to_color_image;
use super::{AppCommand, Panel, Shared};
use crate::explore::{self, Directions};
use crate::run::NamedDirection;
use crate::worker::decoder::{Output, Slot};
use crate::worker::{Command, RunInfo};

pub const ID: &str = "directions";

#[derive(Default)]
pub struct DirectionsView {
    /// The directions named in this run (saved with it).
    pub named: Vec<NamedDirection>,
    /// The label groups of a "mean A − mean B" vector.
    class_a: u32,
    class_b: u32,
    /// The latent (and class) of the shown image.
    requested: Vec<f32>,
    requested_class: u32,
    image: Option<crate::images::ImageBatch>,
    version: u64,
    shown: u64,
}

impl Panel for DirectionsView {
    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Directions"
    }

    fn slots(&self) -> &'static [Slot] {
        &[Slot::Directions]
    }

    fn on_run_ready(&mut self, info: &RunInfo, _shared: &mut Shared) {
        self.named = info.directions.clone();
        self.image = None;
        self.requested.clear();
        self.class_a = 0;
        self.class_b = 1.min(info.label_names.len().saturating_sub(1)) as u32;
    }

    fn on_decoded(&mut self, out: Output, shared: &mut Shared) {
        match out {
            Output::Decoded { images, .. } => {
                self.image = Some(images);
                self.version += 1;
            }
            Output::Failed { message, .. } => shared.run.errors.push(message),
            Output::Encoded { .. } | Output::Analysed { .. } => {}
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(info) = shared.run.info.as_ref() else {
            ui.label(
                "Train or load a model to find the directions that matter in its latent space.",
            );
            return;
        };
        let d = info.spec.latent_dim();
        let encoder = info.spec.has_encoder();
        if shared.latent.z.len() != d {
            shared.latent.z = vec![0.0; d];
        }
        let dirs = shared.analysis.want_directions().cloned();
        let width = (ui.available_width() * 0.55).clamp(300.0, 560.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(width);
                shared.class_picker(ui);
                match &dirs {
                    Some(c) => {
                        ui.weak(format!(
                            "{}: {} {}, weights of step {} ({:.2} s). Sliders show the latent's \
                             coordinate along each direction; ±3 standard deviations.",
                            c.value.method.describe(),
                            c.value.samples,
                            if encoder { "images" } else { "latents" },
                            c.step,
                            c.seconds
                        ));
                        egui::ScrollArea::vertical()
                            .id_salt("principal")
                            .max_height(ui.available_height() * 0.5)
                            .show(ui, |ui| self.principal_ui(ui, shared, &c.value, c.step));
                    }
                    None => {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label("computing principal directions…");
                        });
                    }
                }
                ui.separator();
                self.attribute_ui(ui, shared);
                ui.separator();
                self.named_ui(ui, shared);
            });
            ui.separator();
            ui.vertical(|ui| self.image_ui(ui, shared));
        });
        if (shared.latent.z != self.requested
            || shared.class != self.requested_class
            || shared.run.new_weights)
            && shared.decoder.has_model()
        {
            let job = shared.decode_job(shared.latent.z.clone());
            shared.push(AppCommand::Decoder(Slot::Directions, job));
            self.requested.clone_from(&shared.latent.z);
            self.requested_class = shared.class;
        }
    }
}

/// A slider along `v` over `[-range, range]`: shows `z`'s coordinate, moves `z` along `v`.
fn coordinate_slider(ui: &mut egui::Ui, z: &mut [f32], v: &[f32], range: f32, text: String) {
    let mut alpha = explore::coordinate(z, v);
    let r = range.max(1e-3);
    ui.spacing_mut().slider_width = (ui.available_width() * 0.45).clamp(120.0, 320.0);
    if ui
        .add(
            egui::Slider::new(&mut alpha, -r..=r)
                .text(text)
                .fixed_decimals(2)
                .clamping(egui::SliderClamping::Never),
        )
        .changed()
    {
        explore::set_coordinate(z, v, alpha);
    }
}

impl DirectionsView {
    fn principal_ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &mut Shared,
        dirs: &Directions,
        step: u64,
    ) {
        for (j, v) in dirs.vectors.iter().enumerate() {
            let spread = dirs.spread.get(j).copied().unwrap_or(1.0).max(1e-3);
            let explained = dirs.explained.get(j).copied().unwrap_or(0.0) * 100.0;
            ui.horizontal(|ui| {
                coordinate_slider(
                    ui,
                    &mut shared.latent.z,
                    v,
                    3.0 * spread,
                    format!("direction {} ({explained:.1} %)", j + 1),
                );
                if ui
                    .small_button("save")
                    .on_hover_text("keep this direction with the run (saved in the checkpoint)")
                    .clicked()
                {
                    // Scaled to one standard deviation: α = 1 is a typical step.
                    self.named.push(NamedDirection {
                        name: format!("direction {}", j + 1),
                        vector: v.iter().map(|x| x * spread).collect(),
                        note: format!(
                            "principal direction {} at step {step}, {explained:.1} % of variance",
                            j + 1
                        ),
                    });
                    self.changed(shared);
                }
            });
        }
    }

    fn attribute_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.strong("Attribute vectors");
        let Some(info) = shared.run.info.as_ref() else {
            return;
        };
        if !info.spec.has_encoder() {
            ui.weak("Attribute vectors are means of encoded images: they need a VAE.");
            return;
        }
        let labels = info.test_preview_labels.clone();
        let classes = info.label_names.len();
        let Some(enc) = shared.analysis.want_encoded().map(|e| e.value.clone()) else {
            ui.spinner();
            return;
        };
        let mut made = None;
        if !labels.is_empty() && classes >= 2 {
            ui.horizontal_wrapped(|ui| {
                ui.label("mean of");
                for (salt, c) in [
                    ("class a", &mut self.class_a),
                    ("class b", &mut self.class_b),
                ] {
                    egui::ComboBox::from_id_salt(salt)
                        .selected_text(shared.class_name(*c))
                        .show_ui(ui, |ui| {
                            for k in 0..classes as u32 {
                                ui.selectable_value(c, k, shared.class_name(k));
                            }
                        });
                    if salt == "class a" {
                        ui.label("− mean of");
                    }
                }
                if ui.button("make vector").clicked() && self.class_a != self.class_b {
                    let group = |c: u32| -> Vec<usize> {
                        (0..enc.n).filter(|&i| labels.get(i) == Some(&c)).collect()
                    };
                    let (a, b) = (group(self.class_a), group(self.class_b));
                    let (na, nb) = (
                        shared.class_name(self.class_a),
                        shared.class_name(self.class_b),
                    );
                    made =
                        explore::attribute_vector(&enc.mu, enc.d, &a, &b).map(|v| NamedDirection {
                            name: format!("mean {na} − mean {nb}"),
                            vector: v,
                            note: format!(
                                "{} test images of {na} minus {} of {nb}",
                                a.len(),
                                b.len()
                            ),
                        });
                }
            });
        }
        let (a, b) = (&shared.groups[0], &shared.groups[1]);
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "scatter selection: group A {} images, group B {}",
                a.len(),
                b.len()
            ));
            let ok = !a.is_empty() && !b.is_empty();
            if ui
                .add_enabled(ok, egui::Button::new("make A − B"))
                .on_disabled_hover_text("select two groups with a box in the Scatter tab")
                .clicked()
            {
                made = explore::attribute_vector(&enc.mu, enc.d, a, b).map(|v| NamedDirection {
                    name: "group A − group B".into(),
                    vector: v,
                    note: format!("{} selected images minus {}", a.len(), b.len()),
                });
            }
        });
        if let Some(m) = made {
            self.named.push(m);
            self.changed(shared);
        }
    }

    fn named_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.strong("Named directions (saved with the run)");
        if self.named.is_empty() {
            ui.weak("none yet: save a principal direction or make an attribute vector");
            return;
        }
        ui.weak("α moves the latent by α times the vector (latent arithmetic: a 3, plus 1 × (mean 8 − mean 3))");
        let d = shared.latent.z.len();
        let mut remove = None;
        let mut renamed = false;
        for (i, n) in self.named.iter_mut().enumerate() {
            if n.vector.len() != d {
                continue;
            }
            ui.horizontal(|ui| {
                renamed |= ui
                    .add(egui::TextEdit::singleline(&mut n.name).desired_width(140.0))
                    .on_hover_text(&n.note)
                    .lost_focus();
                let base = explore::coordinate(&shared.latent.z, &n.vector);
                let label = format!("α (now {base:+.2})");
                coordinate_slider(ui, &mut shared.latent.z, &n.vector, 3.0, label);
                if ui
                    .small_button("+1")
                    .on_hover_text("add the vector once")
                    .clicked()
                {
                    shared
                        .latent
                        .z
                        .iter_mut()
                        .zip(&n.vector)
                        .for_each(|(z, v)| *z += v);
                }
                if ui.small_button("delete").clicked() {
                    remove = Some(i);
                }
            });
        }
        if let Some(i) = remove {
            self.named.remove(i);
        }
        if remove.is_some() || renamed {
            self.changed(shared);
        }
    }

    /// The list changed: the worker keeps it for the next save.
    fn changed(&self, shared: &mut Shared) {
        shared.push(AppCommand::Worker(Command::SetDirections(
            self.named.clone(),
        )));
    }

    fn image_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(img) = &self.image else {
            ui.spinner();
            return;
        };
        if self.shown != self.version {
            let c = to_color_image(img, 0, shared.settings.colormap);
            let _ = shared.texture(ui.ctx(), "directions", c);
            self.shown = self.version;
        }
        if let Some(t) = shared.cached_texture("directions") {
            let side = ui.available_width().clamp(128.0, 320.0);
            ui.add(egui::Image::new(&t).fit_to_exact_size(egui::vec2(side, side)));
        }
        if let Some(s) = &shared.latent.source {
            ui.weak(s);
        }
        ui.weak("the explorer's latent: every view starts from it");
    }
}
