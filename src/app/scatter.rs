//! Scatter of the encoded test set (posterior means) coloured by label; clicking a point
//! loads its latent into the explorer.

use egui_plot::{Legend, Plot, PlotPoints, Points};

use super::{explorer, AppCommand, Panel, Shared};
use crate::eval::EvalReport;
use crate::worker::decoder::{Output, Slot};
use crate::worker::RunInfo;

#[derive(Default)]
pub struct Scatter {
    pub dim_x: usize,
    pub dim_y: usize,
    /// The user picked the axes; stop choosing them from the KL.
    axes_chosen: bool,
    /// `n × latent` posterior means of the test preview.
    mu: Vec<f32>,
    requested_step: Option<u64>,
}

fn label_color(i: usize) -> egui::Color32 {
    const C: [egui::Color32; 10] = [
        egui::Color32::from_rgb(31, 119, 180),
        egui::Color32::from_rgb(255, 127, 14),
        egui::Color32::from_rgb(44, 160, 44),
        egui::Color32::from_rgb(214, 39, 40),
        egui::Color32::from_rgb(148, 103, 189),
        egui::Color32::from_rgb(140, 86, 75),
        egui::Color32::from_rgb(227, 119, 194),
        egui::Color32::from_rgb(127, 127, 127),
        egui::Color32::from_rgb(188, 189, 34),
        egui::Color32::from_rgb(23, 190, 207),
    ];
    C[i % C.len()]
}

impl Panel for Scatter {
    fn id(&self) -> &'static str {
        "scatter"
    }

    fn title(&self) -> &'static str {
        "Scatter"
    }

    fn slots(&self) -> &'static [Slot] {
        &[Slot::EncodeSet]
    }

    fn on_run_ready(&mut self, _info: &RunInfo, _shared: &mut Shared) {
        self.mu.clear();
        self.requested_step = None;
        self.dim_y = 1;
        self.axes_chosen = false;
    }

    fn on_decoded(&mut self, out: Output, shared: &mut Shared) {
        match out {
            Output::Encoded { mu, .. } => {
                self.mu = mu;
            }
            Output::Failed { message, .. } => shared.run.errors.push(message),
            Output::Decoded { .. } => {}
        }
    }

    /// A click on a point moves the explorer's latent there and shows the explorer.
    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        if let Some(z) = self.plot_ui(ui, shared) {
            shared.latent.set(z);
            shared.push(AppCommand::ShowTab(explorer::ID));
        }
    }
}

impl Scatter {
    /// Returns a latent when the user clicked a point.
    fn plot_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) -> Option<Vec<f32>> {
        let info = shared.run.info.as_ref()?;
        if !info.spec.has_encoder() {
            ui.label(
                "The scatter shows encoded test images: it needs a VAE (a GAN has no encoder).",
            );
            return None;
        }
        let d = info.spec.latent_dim();
        let n = info.test_preview.count();
        // Until the user picks axes, show the two dimensions that carry the most information.
        let mut by_kl = false;
        if !self.axes_chosen && d >= 2 {
            if let Some(EvalReport::Vae(r)) = shared.run.history.test.last().map(|t| &t.report) {
                by_kl = true;
                let mut order: Vec<usize> = (0..r.kl_per_dim.len().min(d)).collect();
                order.sort_by(|&a, &b| r.kl_per_dim[b].total_cmp(&r.kl_per_dim[a]));
                if let [a, b, ..] = order[..] {
                    (self.dim_x, self.dim_y) = (a, b);
                }
            }
        }
        // Follow training: re-encode with each new CPU snapshot (1,000 images, a few ms).
        if shared.run.new_weights {
            self.requested_step = None;
        }
        ui.horizontal_wrapped(|ui| {
            let before = (self.dim_x, self.dim_y);
            let l = ui.label("x: z");
            ui.add(egui::DragValue::new(&mut self.dim_x).range(0..=d - 1))
                .labelled_by(l.id);
            let l = ui.label("y: z");
            ui.add(egui::DragValue::new(&mut self.dim_y).range(0..=d - 1))
                .labelled_by(l.id);
            if (self.dim_x, self.dim_y) != before {
                self.axes_chosen = true;
            }
            ui.weak(format!(
                "{n} test images, encoder means{}; click a point to explore it",
                if by_kl {
                    " (axes: the two highest-KL dimensions)"
                } else {
                    ""
                }
            ));
        });
        if self.requested_step.is_none() && shared.decoder.has_model() {
            let pixels = info.test_preview.pixels.clone();
            let job = shared.encode_job(pixels, info.test_preview_labels.clone());
            shared.push(AppCommand::Decoder(Slot::EncodeSet, job));
            self.requested_step = Some(shared.run.step);
        }
        if self.mu.len() != n * d {
            ui.spinner();
            return None;
        }
        let info = shared.run.info.as_ref()?;
        let labels = &info.test_preview_labels;
        let names = &info.label_names;
        let (dx, dy) = (self.dim_x.min(d - 1), self.dim_y.min(d - 1));
        let mut clicked = None;
        let plot = Plot::new("scatter")
            .legend(Legend::default())
            .data_aspect(1.0)
            .x_axis_label(format!("z{dx}"))
            .y_axis_label(format!("z{dy}"))
            .show(ui, |p| {
                let groups = if labels.is_empty() {
                    1
                } else {
                    names.len().max(1)
                };
                for g in 0..groups {
                    let pts: Vec<[f64; 2]> = (0..n)
                        .filter(|&i| labels.is_empty() || labels[i] as usize == g)
                        .map(|i| [self.mu[i * d + dx] as f64, self.mu[i * d + dy] as f64])
                        .collect();
                    let name = names
                        .get(g)
                        .cloned()
                        .unwrap_or_else(|| "test images".into());
                    p.points(
                        Points::new(name, PlotPoints::from(pts))
                            .radius(2.0)
                            .color(label_color(g)),
                    );
                }
                if p.response().clicked() {
                    clicked = p.pointer_coordinate();
                }
            });
        drop(plot);
        let pos = clicked?;
        let nearest = (0..n).min_by(|&a, &b| {
            let da = (self.mu[a * d + dx] as f64 - pos.x).powi(2)
                + (self.mu[a * d + dy] as f64 - pos.y).powi(2);
            let db = (self.mu[b * d + dx] as f64 - pos.x).powi(2)
                + (self.mu[b * d + dy] as f64 - pos.y).powi(2);
            da.total_cmp(&db)
        })?;
        Some(self.mu[nearest * d..(nearest + 1) * d].to_vec())
    }
}
