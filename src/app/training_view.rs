//! Training tab: progress, live loss plots, test metric, throughput, sample grid and
//! reconstructions.

use egui_plot::{Legend, Line, Plot, PlotPoints, Points, VLine};

use super::colormap::grid_image;
use super::{Panel, Shared};
use crate::train::metrics::MetricsHistory;

/// Points drawn per series at most; longer histories are averaged into buckets.
const MAX_DRAWN: usize = 1500;

#[derive(Default)]
pub struct TrainingView {
    samples_step: Option<u64>,
    recon_step: Option<(usize, usize)>,
}

/// Bucket-average `pts` down to at most `max` points (keeps the curve's shape, drawing
/// cost stays flat after hours of training).
pub fn downsample(pts: &[[f64; 2]], max: usize) -> Vec<[f64; 2]> {
    if pts.len() <= max || max == 0 {
        return pts.to_vec();
    }
    let per = pts.len().div_ceil(max);
    pts.chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            let x = c.iter().map(|p| p[0]).sum::<f64>() / n;
            let y = c.iter().map(|p| p[1]).sum::<f64>() / n;
            [x, y]
        })
        .collect()
}

fn series(h: &MetricsHistory, term: usize, log: bool) -> Vec<[f64; 2]> {
    let pts = h.series(term);
    let pts = if log {
        pts.into_iter()
            .filter(|p| p[1] > 0.0)
            .map(|p| [p[0], p[1].log10()])
            .collect()
    } else {
        pts
    };
    downsample(&pts, MAX_DRAWN)
}

impl Panel for TrainingView {
    fn id(&self) -> &'static str {
        "training"
    }

    fn title(&self) -> &'static str {
        "Training"
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let run = &shared.run;
        let Some(info) = run.info.as_ref() else {
            ui.vertical_centered(|ui| {
                ui.add_space(80.0);
                ui.heading("Press Train to start");
                ui.label("Built-in MNIST and the 784-400-20 VAE are preselected.");
                if run.status == super::Status::Preparing {
                    ui.spinner();
                }
            });
            return;
        };
        let cfg = run.config.clone().unwrap_or_else(|| info.config.clone());
        let total = (cfg.epochs * info.batches_per_epoch) as u64;
        let epoch_f = run.step as f64 / info.batches_per_epoch.max(1) as f64;
        ui.horizontal(|ui| {
            ui.strong(info.spec.describe());
            ui.label(format!(
                "· {} · {} train / {} test",
                info.data, info.train_images, info.test_images
            ));
        });
        // The bar carries only the epoch; the numbers go on their own line beside it, where
        // they can never be drawn over the bar's fill.
        ui.horizontal(|ui| {
            ui.add(
                egui::ProgressBar::new((run.step as f32 / total.max(1) as f32).min(1.0))
                    .desired_width((ui.available_width() - 330.0).max(120.0))
                    .text(format!("epoch {:.2} / {}", epoch_f, cfg.epochs)),
            );
            ui.label(format!(
                "step {} / {}   elapsed {}   ETA {}",
                run.step,
                total,
                fmt_secs(run.elapsed().as_secs_f64()),
                run.eta()
                    .map(|d| fmt_secs(d.as_secs_f64()))
                    .unwrap_or_else(|| "–".into())
            ));
        });
        ui.horizontal(|ui| {
            ui.checkbox(&mut shared.settings.log_scale, "log scale");
            if let Some(p) = &shared.run.last_point {
                ui.monospace(shared.run.history.format_terms(&p.values, 3));
            }
        });

        let log = shared.settings.log_scale;
        let avail = ui.available_size();
        let right_w = (avail.x * 0.36).clamp(220.0, 420.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(avail.x - right_w - 12.0);
                self.plots_ui(ui, shared, log);
            });
            ui.vertical(|ui| {
                ui.set_width(right_w);
                self.images_ui(ui, shared, right_w);
            });
        });
    }
}

impl TrainingView {
    fn plots_ui(&mut self, ui: &mut egui::Ui, shared: &Shared, log: bool) {
        let h = &shared.run.history;
        // The family's plot groups, by term name (no family is named here); before a run,
        // those of the selected model.
        let objective = shared
            .run
            .info
            .as_ref()
            .map_or(shared.settings.model.objective(), |i| i.spec.objective());
        let groups: Vec<(&str, Vec<usize>)> = objective
            .plots
            .iter()
            .map(|g| {
                let terms = g
                    .terms
                    .iter()
                    .filter_map(|t| h.names.iter().position(|n| n == t))
                    .collect();
                (g.title, terms)
            })
            .collect();

        let height = (ui.available_height() - 180.0).max(160.0) / groups.len() as f32;
        for (title, terms) in groups {
            Plot::new(format!("plot-{title}"))
                .legend(Legend::default())
                .height(height)
                .x_axis_label("step")
                .y_axis_label(if log {
                    format!("log10 {title}")
                } else {
                    title.to_string()
                })
                .show(ui, |p| {
                    for t in terms {
                        if let Some(name) = h.names.get(t) {
                            p.line(Line::new(name.clone(), PlotPoints::from(series(h, t, log))));
                        }
                    }
                    for m in &h.markers {
                        p.vline(
                            VLine::new(m.text.clone(), m.step as f64)
                                .color(egui::Color32::from_rgb(200, 160, 60)),
                        );
                    }
                });
        }
        ui.columns(2, |cols| {
            let test: Vec<[f64; 2]> = h.test.iter().map(|t| [t.epoch as f64, t.value]).collect();
            let label = objective.headline;
            Plot::new("plot-test")
                .height(150.0)
                .x_axis_label("epoch")
                .y_axis_label(label)
                .show(&mut cols[0], |p| {
                    p.line(Line::new(label, PlotPoints::from(test.clone())));
                    p.points(Points::new(label, PlotPoints::from(test)).radius(3.0));
                });
            let ips: Vec<[f64; 2]> = downsample(
                &h.points
                    .iter()
                    .map(|p| [p.step as f64, p.images_per_sec as f64])
                    .collect::<Vec<_>>(),
                MAX_DRAWN,
            );
            Plot::new("plot-ips")
                .height(150.0)
                .x_axis_label("step")
                .y_axis_label("images/s")
                .show(&mut cols[1], |p| {
                    p.line(Line::new("images/s", PlotPoints::from(ips)))
                });
        });
    }

    fn images_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, width: f32) {
        let cm = shared.settings.colormap;
        ui.strong("Samples (fixed noise)");
        if let Some((step, batch)) = shared.run.samples.clone() {
            let tex = if self.samples_step != Some(step) {
                self.samples_step = Some(step);
                let cols = crate::train::SAMPLE_COLS;
                Some(shared.texture(ui.ctx(), "samples", grid_image(&batch, cols, cm)))
            } else {
                shared.cached_texture("samples")
            };
            if let Some(t) = tex {
                // A conditional model's grid has one row per class: keep its aspect.
                let [w, h] = t.size();
                let height = width * h as f32 / w.max(1) as f32;
                ui.add(egui::Image::new(&t).fit_to_exact_size(egui::vec2(width, height)));
                ui.weak(format!("step {step}"));
            }
        } else {
            ui.weak("appear during training");
        }
        if let Some((orig, rec)) = shared.run.recon.clone() {
            ui.strong("Test images / reconstructions");
            let key = (
                orig.pixels.len(),
                rec.pixels.len() + self.samples_step.unwrap_or(0) as usize,
            );
            let tex = if self.recon_step != Some(key) {
                self.recon_step = Some(key);
                let mut both = orig.clone();
                both.pixels.extend_from_slice(&rec.pixels);
                Some(shared.texture(
                    ui.ctx(),
                    "recon",
                    grid_image(&both, orig.count().max(1), cm),
                ))
            } else {
                shared.cached_texture("recon")
            };
            if let Some(t) = tex {
                let n = orig.count().max(1) as f32;
                ui.add(egui::Image::new(&t).fit_to_exact_size(egui::vec2(width, width * 2.0 / n)));
            }
        }
    }
}

pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_long_histories_cheap() {
        let pts: Vec<[f64; 2]> = (0..100_000).map(|i| [i as f64, (i % 7) as f64]).collect();
        let d = downsample(&pts, 1500);
        assert!(d.len() <= 1500 && d.len() > 1000, "{}", d.len());
        assert!(d[0][0] < 100.0 && d.last().unwrap()[0] > 99_000.0);
        assert_eq!(downsample(&pts[..10], 1500).len(), 10);
    }
}
