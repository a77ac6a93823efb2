//! Latent health: is a VAE using its latent? A heat strip of the KL of every latent dimension
//! at each test evaluation, active units and KL over time, and a posterior-collapse warning
//! (rules in [`crate::health`]) with a one-click remedy: lower β and continue. For every
//! model (GANs above all): the diversity of the fixed-noise samples against real images over
//! steps, with a mode-collapse warning when it falls.

use egui_plot::{Line, Plot, PlotPoints, Points};

use super::colormap::map;
use super::settings::Colormap;
use super::training_view::downsample;
use super::{AppCommand, Panel, Shared};
use crate::health::{collapse_of_coverage, collapse_of_samples, vae_health, VaeHealth};
use crate::worker::{Command, RunInfo};

#[derive(Default)]
pub struct Health {
    /// The health of the history of this length (points, test points), recomputed when it grows.
    cached: Option<((usize, usize), Option<VaeHealth>)>,
    strip: Option<((usize, usize), egui::TextureHandle)>,
    /// The reference run's health and sample measures , per file.
    reference: Option<(std::path::PathBuf, RefRun)>,
}

/// What the plots overlay of the reference run (dashed, named by its file).
#[derive(Clone)]
struct RefRun {
    name: String,
    health: Option<VaeHealth>,
    diversity: Vec<[f64; 2]>,
    coverage: Vec<[f64; 2]>,
}

impl RefRun {
    fn of(r: &super::reference::Reference, real_diversity: f64) -> Self {
        Self {
            name: r.name.clone(),
            health: vae_health(&r.history),
            diversity: r.timeline.diversity_ratios(real_diversity),
            coverage: r.timeline.coverages(),
        }
    }
}

/// A dashed line of the reference run named `what · file`.
fn reference_line(
    p: &mut egui_plot::PlotUi,
    what: &str,
    r: &RefRun,
    pts: Vec<[f64; 2]>,
    colour: egui::Color32,
) {
    p.line(
        Line::new(
            format!("{what} · {}", r.name),
            PlotPoints::from(downsample(&pts, 2000)),
        )
        .color(colour.gamma_multiply(0.8))
        .style(egui_plot::LineStyle::dashed_loose()),
    );
}

impl Health {
    /// The last computed health (tests).
    pub fn health(&self) -> Option<&VaeHealth> {
        self.cached.as_ref().and_then(|c| c.1.as_ref())
    }
}

impl Panel for Health {
    fn id(&self) -> &'static str {
        "health"
    }

    fn title(&self) -> &'static str {
        "Latent health"
    }

    fn on_run_ready(&mut self, _info: &RunInfo, _shared: &mut Shared) {
        self.cached = None;
        self.strip = None;
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        if shared.run.info.is_none() {
            ui.label("Train or load a model to see whether it collapses.");
            return;
        }
        let samples_warning = collapse_of_samples(&shared.run.sample_diversity)
            .or_else(|| collapse_of_coverage(&shared.run.sample_coverage));
        if let Some(w) = &samples_warning {
            ui.colored_label(ui.visuals().warn_fg_color, format!("Warning — {w}"));
        }
        let health = if shared.run.capabilities().encoder {
            let h = &shared.run.history;
            let key = (h.points.len(), h.test.len());
            if self.cached.as_ref().is_none_or(|c| c.0 != key) {
                self.cached = Some((key, vae_health(h)));
            }
            self.cached.as_ref().and_then(|c| c.1.clone())
        } else {
            None
        };
        match &health {
            Some(health) => self.vae_ui(ui, shared, health),
            None if samples_warning.is_none() => {
                ui.weak("No sign of mode collapse: the samples are as varied as before.");
            }
            None => {}
        }
        // The reference run's measures, made once per file.
        match &shared.reference {
            Some(r) if self.reference.as_ref().is_none_or(|c| c.0 != r.path) => {
                self.reference = Some((r.path.clone(), RefRun::of(r, shared.run.real_diversity)));
            }
            None => self.reference = None,
            _ => {}
        }
        let reference = self.reference.as_ref().map(|c| &c.1);
        ui.separator();
        let plots = if health.is_some() { 3.0 } else { 1.0 };
        let w = (ui.available_width() / plots - 8.0).max(120.0);
        let ht = (ui.available_height() - 8.0).clamp(120.0, 260.0);
        ui.horizontal(|ui| {
            if let Some(health) = &health {
                kl_plots(ui, health, reference, w, ht);
            }
            Plot::new("health-diversity")
                .width(w)
                .height(ht)
                .x_axis_label("step")
                .y_axis_label("fixed-noise samples")
                .include_y(0.0)
                .include_y(1.0)
                .legend(egui_plot::Legend::default())
                .show(ui, |p| {
                    let series = [
                        ("diversity / real", &shared.run.sample_diversity, DIVERSITY),
                        (
                            "label coverage (nearest real)",
                            &shared.run.sample_coverage,
                            COVERAGE,
                        ),
                    ];
                    for (name, pts, colour) in series {
                        if pts.is_empty() {
                            continue;
                        }
                        let d = downsample(pts, 2000);
                        p.line(Line::new(name, PlotPoints::from(d.clone())).color(colour));
                        p.points(
                            Points::new("", PlotPoints::from(d))
                                .radius(2.5)
                                .color(colour),
                        );
                    }
                    if let Some(r) = reference {
                        reference_line(p, "diversity", r, r.diversity.clone(), DIVERSITY);
                        reference_line(p, "coverage", r, r.coverage.clone(), COVERAGE);
                    }
                });
        });
    }
}

const DIVERSITY: egui::Color32 = egui::Color32::from_rgb(110, 170, 255);
const COVERAGE: egui::Color32 = egui::Color32::from_rgb(150, 220, 90);

/// Active units and KL over steps (and the reference run's, when it has them).
fn kl_plots(ui: &mut egui::Ui, health: &VaeHealth, reference: Option<&RefRun>, w: f32, ht: f32) {
    let reference = reference.and_then(|r| Some((r, r.health.as_ref()?)));
    let points = |h: &VaeHealth, v: &dyn Fn(usize) -> f64| -> Vec<[f64; 2]> {
        h.steps
            .iter()
            .enumerate()
            .map(|(i, &s)| [s as f64, v(i)])
            .collect()
    };
    Plot::new("health-active")
        .width(w)
        .height(ht)
        .x_axis_label("step")
        .y_axis_label("active units")
        .include_y(0.0)
        .legend(egui_plot::Legend::default())
        .show(ui, |p| {
            if let Some((r, rh)) = reference {
                let pts = points(rh, &|i| rh.active_units[i] as f64);
                reference_line(p, "active units", r, pts, DIVERSITY);
            }
            let pts: Vec<[f64; 2]> = health
                .steps
                .iter()
                .zip(&health.active_units)
                .map(|(&s, &a)| [s as f64, a as f64])
                .collect();
            p.line(Line::new(
                "active units (test)",
                PlotPoints::from(pts.clone()),
            ));
            p.points(Points::new("", PlotPoints::from(pts)).radius(3.0));
        });
    Plot::new("health-kl")
        .width(w)
        .height(ht)
        .x_axis_label("step")
        .y_axis_label("KL (nats)")
        .include_y(0.0)
        .legend(egui_plot::Legend::default())
        .show(ui, |p| {
            p.line(Line::new(
                "training KL",
                PlotPoints::from(downsample(&health.train_kl, 2000)),
            ));
            let test: Vec<[f64; 2]> = health
                .steps
                .iter()
                .zip(&health.kl)
                .map(|(&s, &k)| [s as f64, k])
                .collect();
            p.points(Points::new("test KL", PlotPoints::from(test)).radius(3.0));
            if let Some((r, rh)) = reference {
                reference_line(p, "training KL", r, rh.train_kl.clone(), COVERAGE);
                reference_line(p, "test KL", r, points(rh, &|i| rh.kl[i]), DIVERSITY);
            }
        });
}

impl Health {
    /// The VAE's warning (and remedy) and its KL heat strip.
    fn vae_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, health: &VaeHealth) {
        if let Some(w) = &health.warning {
            let beta = shared.run.config.as_ref().map_or(1.0, |c| c.beta);
            ui.horizontal_wrapped(|ui| {
                ui.colored_label(ui.visuals().warn_fg_color, format!("Warning — {w}"));
                let lower = (beta / 2.0).max(0.01);
                if ui
                    .button(format!("Lower β to {lower} and continue"))
                    .on_hover_text(
                        "less weight on the KL term lets the encoder carry information again \
                         (marked on the loss plot)",
                    )
                    .clicked()
                {
                    shared.settings.beta = lower;
                    shared.push(AppCommand::ApplyHyperparameters);
                }
                let steps = warmup_steps(shared);
                if ui
                    .button(format!("Warm the KL up again over {steps} steps"))
                    .on_hover_text(
                        "β falls to 0 and rises back to its value over about two epochs, so \
                         the decoder relearns to use the latents first (marked on the plot)",
                    )
                    .clicked()
                {
                    shared.push(AppCommand::Worker(Command::SetKlWarmup(steps)));
                    // The session marks its history the same way; mirror it on the plots.
                    let step = shared.run.step;
                    shared.run.history.markers.push(crate::run::Marker {
                        step,
                        text: format!("KL warm-up over {steps} steps"),
                    });
                }
            });
        } else {
            ui.weak("No sign of posterior collapse: active units and KL are holding.");
        }
        if let Some(c) = shared
            .run
            .config
            .as_ref()
            .filter(|c| c.warming_up(shared.run.step))
        {
            ui.label(format!(
                "KL warm-up: β at {:.3} of {} (step {} of {})",
                c.beta_at(shared.run.step),
                c.beta,
                shared.run.step - c.kl_warmup_start,
                c.kl_warmup_steps
            ));
        }
        ui.separator();
        self.strip_ui(ui, health);
    }
}

/// A warm-up of about two epochs of the run (at least 100 steps).
fn warmup_steps(shared: &Shared) -> u64 {
    let per_epoch = shared
        .run
        .info
        .as_ref()
        .map_or(500, |i| i.batches_per_epoch) as u64;
    (2 * per_epoch).max(100)
}

impl Health {
    /// Rows: latent dimensions; columns: test evaluations; brightness: KL (viridis).
    fn strip_ui(&mut self, ui: &mut egui::Ui, health: &VaeHealth) {
        let cols = health.kl_per_dim.len();
        let rows = health.kl_per_dim.iter().map(Vec::len).max().unwrap_or(0);
        if cols == 0 || rows == 0 {
            ui.weak("The KL heat strip fills in at each test evaluation (end of every epoch).");
            return;
        }
        let top = health
            .kl_per_dim
            .iter()
            .flatten()
            .copied()
            .fold(0.0f64, f64::max)
            .max(1e-6);
        if self.strip.as_ref().is_none_or(|s| s.0 != (cols, rows)) {
            let to8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            let mut px = Vec::with_capacity(cols * rows);
            for r in 0..rows {
                for c in 0..cols {
                    let kl = health.kl_per_dim[c].get(r).copied().unwrap_or(0.0);
                    let [red, g, b] = map(Colormap::Viridis, (kl / top) as f32);
                    px.push(egui::Color32::from_rgb(to8(red), to8(g), to8(b)));
                }
            }
            let img = egui::ColorImage::new([cols, rows], px);
            let tex = ui
                .ctx()
                .load_texture("kl-strip", img, egui::TextureOptions::NEAREST);
            self.strip = Some(((cols, rows), tex));
        }
        let Some((_, tex)) = &self.strip else {
            return;
        };
        ui.label(format!(
            "KL per dimension at each test evaluation: rows z0 (top) … z{} , columns steps {} … {}; \
             brightest = {top:.2} nats",
            rows - 1,
            health.steps.first().copied().unwrap_or(0),
            health.steps.last().copied().unwrap_or(0)
        ));
        let w = ui.available_width().min(900.0);
        let h = (rows as f32 * 10.0).clamp(60.0, 320.0);
        // Painted stretched (the strip is a few pixels per evaluation and dimension).
        let (_, resp) = ui.allocate_exact_size(egui::vec2(w, h), egui::Sense::hover());
        let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
        ui.painter()
            .image(tex.id(), resp.rect, uv, egui::Color32::WHITE);
        if let Some(pos) = resp.hover_pos() {
            let c = (((pos.x - resp.rect.left()) / resp.rect.width()) * cols as f32) as usize;
            let r = (((pos.y - resp.rect.top()) / resp.rect.height()) * rows as f32) as usize;
            if let (Some(kls), Some(&step)) = (health.kl_per_dim.get(c), health.steps.get(c)) {
                let kl = kls.get(r).copied().unwrap_or(0.0);
                resp.on_hover_text(format!("z{r} at step {step}: KL {kl:.3} nats"));
            }
        }
    }
}
