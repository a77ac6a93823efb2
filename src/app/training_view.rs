//! Training tab: progress, live loss plots, test metric, throughput, sample grid and
//! reconstructions.

use std::time::{Duration, Instant};

use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints, PlotResponse, Points, VLine};

use super::colormap::grid_image;
use super::files::FileAction;
use super::AppCommand;
use super::{Panel, Shared};
use crate::timeline::Timeline;
use crate::train::metrics::MetricsHistory;

/// Points drawn per series at most; longer histories are averaged into buckets.
const MAX_DRAWN: usize = 1500;

#[derive(Default)]
pub struct TrainingView {
    /// What the sample, reconstruction and reference textures show: (from history, step).
    samples_key: Option<(bool, u64)>,
    recon_key: Option<(bool, u64)>,
    reference_key: Option<(String, u64)>,
    /// The step cursor: `None` follows the newest grid ("live").
    pub cursor: Option<u64>,
    /// The step under the pointer on a plot: the images preview it, the cursor stays.
    hover: Option<u64>,
    /// Playing the history: when the cursor last moved.
    playing: Option<Instant>,
    /// Where the step-axis plots were drawn last frame (tests click on them).
    pub plot_transforms: Vec<egui_plot::PlotTransform>,
    /// Downsampled curves by (reference run, term, log scale), with the history length and
    /// last step they were made from: hours of history are not re-walked every frame.
    curves: std::collections::HashMap<(bool, usize, bool), Curve>,
    /// The reference run the cached reference curves are of.
    curves_of: Option<std::path::PathBuf>,
}

/// A downsampled curve and the (history length, last step) it was made from.
type Curve = ((usize, u64), Vec<[f64; 2]>);

/// Frames a second while the history plays.
const PLAY_FPS: f64 = 15.0;
/// A full play-through takes at most about this many frames (longer histories skip).
const PLAY_FRAMES: usize = 300;

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

impl TrainingView {
    /// [`series`] of `term`, made again only when the history grew.
    fn curve(
        &mut self,
        h: &MetricsHistory,
        reference: bool,
        term: usize,
        log: bool,
    ) -> Vec<[f64; 2]> {
        let made_from = (h.points.len(), h.points.last().map_or(0, |p| p.step));
        let e = self.curves.entry((reference, term, log)).or_default();
        if e.0 != made_from || e.1.is_empty() {
            *e = (made_from, series(h, term, log));
        }
        e.1.clone()
    }
}

impl Panel for TrainingView {
    fn id(&self) -> &'static str {
        "training"
    }

    fn title(&self) -> &'static str {
        "Training"
    }

    fn on_run_ready(&mut self, _info: &crate::worker::RunInfo, shared: &mut Shared) {
        // A cursor set before the first run (`--cursor`) is for that run.
        let keep = shared.run.info.is_none().then_some(self.cursor).flatten();
        *self = Self::default();
        self.cursor = keep;
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

        self.keys_and_play(ui, &shared.run.timeline);
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

/// A sample grid (`SAMPLE_COLS` wide) under `title`, `width` wide, with `caption` below;
/// its texture `title.1` is rebuilt only when `changed`.
fn grid_column(
    ui: &mut egui::Ui,
    shared: &mut Shared,
    title: (&str, &str),
    changed: bool,
    grid: Option<(&crate::images::ImageBatch, String)>,
    empty: &str,
    width: f32,
) {
    ui.vertical(|ui| {
        ui.set_width(width);
        ui.strong(title.0);
        let Some((batch, caption)) = grid else {
            ui.weak(empty);
            return;
        };
        let cm = shared.settings.colormap;
        let tex = match shared.cached_texture(title.1) {
            Some(t) if !changed => t,
            _ => shared.texture(
                ui.ctx(),
                title.1,
                grid_image(batch, crate::train::SAMPLE_COLS, cm),
            ),
        };
        // A conditional model's grid has one row per class: keep its aspect.
        let [w, h] = tex.size();
        let height = width * h as f32 / w.max(1) as f32;
        ui.add(egui::Image::new(&tex).fit_to_exact_size(egui::vec2(width, height)));
        ui.weak(caption);
    });
}

/// Colours of the reference run's curves (dashed), one per term.
const REFERENCE_COLOURS: [egui::Color32; 4] = [
    egui::Color32::from_rgb(255, 150, 60),
    egui::Color32::from_rgb(230, 90, 200),
    egui::Color32::from_rgb(250, 220, 80),
    egui::Color32::from_rgb(120, 220, 120),
];
const CURSOR_COLOUR: egui::Color32 = egui::Color32::from_rgb(120, 200, 255);

/// The step a pointer at `x` on a plot's x axis means (`per_x` steps per unit: the test
/// plot counts epochs).
fn pointer_step<R>(r: &PlotResponse<R>, per_x: f64) -> (Option<u64>, Option<u64>) {
    let at = |pos: egui::Pos2| (r.transform.value_from_position(pos).x * per_x).max(0.0) as u64;
    let hover = r.response.hover_pos().map(at);
    let pressed = r.response.clicked() || r.response.dragged();
    let set = pressed
        .then(|| r.response.interact_pointer_pos())
        .flatten()
        .map(at);
    (hover, set)
}

impl TrainingView {
    /// The step the images show: the one under the pointer, else the cursor's (`None`: live).
    pub fn shown_step(&self) -> Option<u64> {
        self.hover.or(self.cursor)
    }

    /// The frame index the cursor is on (the newest when live).
    fn index(&self, tl: &Timeline) -> Option<usize> {
        match self.cursor {
            Some(s) => tl.index_at(s),
            None => tl.len().checked_sub(1),
        }
    }

    /// Put the cursor on frame `i`; the newest frame is "live".
    fn go_to(&mut self, tl: &Timeline, i: usize) {
        self.cursor = match tl.frames().get(i) {
            Some(_) if i + 1 >= tl.len() => None,
            Some(f) => Some(f.step),
            None => None,
        };
    }

    /// Step the cursor by `delta` frames.
    pub fn nudge(&mut self, tl: &Timeline, delta: i64) {
        if let Some(i) = self.index(tl) {
            let j = (i as i64 + delta).clamp(0, tl.len() as i64 - 1) as usize;
            self.go_to(tl, j);
        }
    }

    /// ←/→ step through the history, Home goes to its start, End back to live; playing
    /// moves the cursor on by itself.
    fn keys_and_play(&mut self, ui: &mut egui::Ui, tl: &Timeline) {
        use egui::Key;
        if ui.memory(|m| m.focused().is_none()) {
            let (left, right, home, end) = ui.input(|i| {
                (
                    i.key_pressed(Key::ArrowLeft),
                    i.key_pressed(Key::ArrowRight),
                    i.key_pressed(Key::Home),
                    i.key_pressed(Key::End),
                )
            });
            if left {
                self.nudge(tl, -1);
            }
            if right {
                self.nudge(tl, 1);
            }
            if home {
                self.go_to(tl, 0);
            }
            if end {
                self.cursor = None;
            }
            if left || right || home || end {
                self.playing = None;
            }
        }
        if let Some(t) = self.playing {
            let every = Duration::from_secs_f64(1.0 / PLAY_FPS);
            if t.elapsed() >= every {
                let skip = tl.len().div_ceil(PLAY_FRAMES).max(1) as i64;
                self.nudge(tl, skip);
                self.playing = self.cursor.map(|_| Instant::now());
            }
            ui.ctx().request_repaint_after(every);
        }
    }

    fn plots_ui(&mut self, ui: &mut egui::Ui, shared: &Shared, log: bool) {
        let h = &shared.run.history;
        let reference = shared.reference.as_ref();
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
        let per_epoch = shared
            .run
            .info
            .as_ref()
            .map_or(1, |i| i.batches_per_epoch.max(1)) as f64;
        let marks = (self.cursor, self.hover);
        let cursor_lines = |p: &mut egui_plot::PlotUi, per_x: f64| {
            if let Some(s) = marks.0 {
                p.vline(
                    VLine::new("", s as f64 / per_x)
                        .color(CURSOR_COLOUR)
                        .width(2.0),
                );
            }
            if let Some(s) = marks.1 {
                p.vline(VLine::new("", s as f64 / per_x).color(CURSOR_COLOUR.gamma_multiply(0.5)));
            }
        };
        let (mut hover, mut set) = (None, None);
        let mut transforms = Vec::new();
        let mut track = |r: (Option<u64>, Option<u64>)| {
            hover = hover.or(r.0);
            set = set.or(r.1);
        };

        // Another reference run: its curves are made again.
        let ref_path = reference.map(|r| r.path.clone());
        if ref_path != self.curves_of {
            self.curves.retain(|k, _| !k.0);
            self.curves_of = ref_path;
        }
        let height = (ui.available_height() - 180.0).max(160.0) / groups.len() as f32;
        for (title, terms) in groups {
            let live: Vec<_> = terms
                .iter()
                .map(|&t| self.curve(h, false, t, log))
                .collect();
            let refs: Vec<_> = terms
                .iter()
                .map(|&t| {
                    let rh = &reference?.history;
                    let rt = rh.names.iter().position(|n| Some(n) == h.names.get(t))?;
                    Some(self.curve(rh, true, rt, log))
                })
                .collect();
            let r = Plot::new(format!("plot-{title}"))
                .legend(Legend::default())
                .height(height)
                .x_axis_label("step")
                .y_axis_label(if log {
                    format!("log10 {title}")
                } else {
                    title.to_string()
                })
                // Primary click or drag moves the cursor; pan with the middle button.
                .pan_pointer_button(egui::PointerButton::Middle)
                .show(ui, |p| {
                    for (k, &t) in terms.iter().enumerate() {
                        let Some(name) = h.names.get(t) else { continue };
                        p.line(Line::new(name.clone(), PlotPoints::from(live[k].clone())));
                        if let (Some(rh), Some(pts)) = (reference, refs[k].clone()) {
                            p.line(
                                Line::new(format!("{name} · {}", rh.name), PlotPoints::from(pts))
                                    .color(REFERENCE_COLOURS[k % REFERENCE_COLOURS.len()])
                                    .style(LineStyle::dashed_loose()),
                            );
                        }
                    }
                    for m in &h.markers {
                        p.vline(
                            VLine::new(m.text.clone(), m.step as f64)
                                .color(egui::Color32::from_rgb(200, 160, 60)),
                        );
                    }
                    cursor_lines(p, 1.0);
                });
            track(pointer_step(&r, 1.0));
            transforms.push(r.transform);
        }
        ui.columns(2, |cols| {
            let test: Vec<[f64; 2]> = h.test.iter().map(|t| [t.epoch as f64, t.value]).collect();
            let label = objective.headline;
            let r = Plot::new("plot-test")
                .height(150.0)
                .x_axis_label("epoch")
                .y_axis_label(label)
                .pan_pointer_button(egui::PointerButton::Middle)
                .show(&mut cols[0], |p| {
                    p.line(Line::new(label, PlotPoints::from(test.clone())));
                    p.points(Points::new(label, PlotPoints::from(test)).radius(3.0));
                    if let Some(rh) = reference {
                        let pts: Vec<[f64; 2]> = rh
                            .history
                            .test
                            .iter()
                            .map(|t| [t.epoch as f64, t.value])
                            .collect();
                        p.line(
                            Line::new(format!("{label} · {}", rh.name), PlotPoints::from(pts))
                                .color(REFERENCE_COLOURS[0])
                                .style(LineStyle::dashed_loose()),
                        );
                    }
                    cursor_lines(p, per_epoch);
                });
            track(pointer_step(&r, per_epoch));
            let ips: Vec<[f64; 2]> = downsample(
                &h.points
                    .iter()
                    .map(|p| [p.step as f64, p.images_per_sec as f64])
                    .collect::<Vec<_>>(),
                MAX_DRAWN,
            );
            let r = Plot::new("plot-ips")
                .height(150.0)
                .x_axis_label("step")
                .y_axis_label("images/s")
                .pan_pointer_button(egui::PointerButton::Middle)
                .show(&mut cols[1], |p| {
                    p.line(Line::new("images/s", PlotPoints::from(ips)));
                    cursor_lines(p, 1.0);
                });
            track(pointer_step(&r, 1.0));
            transforms.push(r.transform);
        });
        self.hover = hover;
        self.plot_transforms = transforms;
        if let Some(s) = set {
            self.cursor = Some(s.min(shared.run.step));
            self.playing = None;
        }
    }

    /// The slider under the grid and the buttons beside it.
    fn cursor_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let tl = &shared.run.timeline;
        let Some(mut i) = self.index(tl) else {
            return;
        };
        let n = tl.len();
        ui.horizontal(|ui| {
            ui.spacing_mut().slider_width = (ui.available_width() - 150.0).max(60.0);
            let r = ui.add_enabled(
                n > 1,
                egui::Slider::new(&mut i, 0..=n.saturating_sub(1)).show_value(false),
            );
            if r.changed() {
                self.go_to(tl, i);
                self.playing = None;
            }
            let live = self.cursor.is_none();
            if ui
                .selectable_label(live, "live")
                .on_hover_text("follow the newest samples (End)")
                .clicked()
            {
                self.cursor = None;
            }
            let play = if self.playing.is_some() {
                "pause"
            } else {
                "play"
            };
            if ui
                .add_enabled(n > 1, egui::Button::new(play))
                .on_hover_text("play the sample history")
                .clicked()
            {
                self.playing = match self.playing {
                    Some(_) => None,
                    None => {
                        if live {
                            self.go_to(tl, 0);
                        }
                        Some(Instant::now())
                    }
                };
            }
        });
        let asked = ui
            .horizontal(|ui| {
                let f = &tl.frames()[i.min(n - 1)];
                ui.weak(format!(
                    "step {} · {} of {} grids kept{}",
                    f.step,
                    i + 1,
                    n,
                    if tl.stride() > 1 {
                        format!(" (1 in {})", tl.stride())
                    } else {
                        String::new()
                    }
                ));
                let export = |sheet| {
                    AppCommand::ChoosePath(FileAction::ExportTimelapse {
                        timeline: Box::new(tl.clone()),
                        sheet,
                    })
                };
                let gif = ui
                    .small_button("GIF…")
                    .on_hover_text("export the sample history as an animated GIF");
                let sheet = ui
                    .small_button("sheet…")
                    .on_hover_text("export a PNG contact sheet of the sample history");
                (gif.clicked() || sheet.clicked()).then(|| export(sheet.clicked()))
            })
            .inner;
        if let Some(c) = asked {
            shared.push(c);
        }
    }

    fn images_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, width: f32) {
        let cm = shared.settings.colormap;
        let shown = self.shown_step();
        // From the history at the cursor, or the newest grid.
        let (key, samples, recon) = match shown.and_then(|s| shared.run.timeline.index_at(s)) {
            Some(i) => {
                let tl = &shared.run.timeline;
                let step = tl.frames()[i].step;
                ((true, step), tl.samples(i), tl.reconstructions(i))
            }
            None => match &shared.run.samples {
                Some((step, b)) => ((false, *step), Some(b.clone()), shared.run.recon.clone()),
                None => ((false, 0), None, shared.run.recon.clone()),
            },
        };
        let reference = shared.reference.as_ref().map(|r| {
            let at = shown.unwrap_or(shared.run.step);
            let frame = r.timeline.index_at(at);
            let step = frame.map_or(0, |i| r.timeline.frames()[i].step);
            (
                r.name.clone(),
                step,
                frame.and_then(|i| r.timeline.samples(i)),
            )
        });
        let grid_w = if reference.is_some() {
            (width - 8.0) / 2.0
        } else {
            width
        };
        let live_changed = self.samples_key != Some(key);
        self.samples_key = Some(key);
        let reference_changed =
            reference.as_ref().map(|(n, st, _)| (n.clone(), *st)) != self.reference_key;
        self.reference_key = reference.as_ref().map(|(n, st, _)| (n.clone(), *st));
        ui.horizontal_top(|ui| {
            let caption = format!("step {}{}", key.1, if key.0 { "" } else { " (live)" });
            grid_column(
                ui,
                shared,
                ("Samples (fixed noise)", "samples"),
                live_changed,
                samples.as_ref().map(|b| (b, caption)),
                "appear during training",
                grid_w,
            );
            if let Some((name, step, batch)) = &reference {
                grid_column(
                    ui,
                    shared,
                    (&format!("Reference: {name}"), "reference-samples"),
                    reference_changed,
                    batch.as_ref().map(|b| (b, format!("step {step}"))),
                    "this file has no sample history",
                    grid_w,
                );
            }
        });
        self.cursor_ui(ui, shared);
        if let Some((orig, rec)) = recon {
            ui.strong("Test images / reconstructions");
            let tex = if self.recon_key != Some(key) {
                self.recon_key = Some(key);
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
