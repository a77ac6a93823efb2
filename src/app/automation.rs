//! Hooks for the window smoke test, screenshots and the UI benchmark (`--smoke-frames`,
//! `--screenshot`, `--bench-ui`). The app holds one of these only when such a flag is set,
//! and calls it once per frame after drawing.

use std::path::PathBuf;
use std::time::Instant;

use super::stats::Rolling;
use super::{explorer, AppOptions, Shared, Status};
use crate::explore::Projection;

pub struct Automation {
    /// Exit after this many frames.
    smoke_frames: Option<u64>,
    /// Written at exit (with `smoke_frames` or `bench_secs`).
    screenshot: Option<PathBuf>,
    bench_secs: Option<f64>,
    bench_out: Option<PathBuf>,
    bench_analyses: bool,
    /// The tab the benchmark shows (`--tab`; default the explorer).
    bench_tab: &'static str,
    frames: u64,
    bench_started: Option<Instant>,
    screenshot_requested: bool,
}

impl Automation {
    /// `None` when no hook is asked for.
    pub fn from_options(opts: &AppOptions) -> Option<Self> {
        if opts.smoke_frames.is_none() && opts.bench_secs.is_none() {
            return None;
        }
        Some(Self {
            smoke_frames: opts.smoke_frames,
            screenshot: opts.screenshot.clone(),
            bench_secs: opts.bench_secs,
            bench_out: opts.bench_out.clone(),
            bench_analyses: opts.bench_analyses,
            bench_tab: opts.tab.unwrap_or(explorer::ID),
            frames: 0,
            bench_started: None,
            screenshot_requested: false,
        })
    }

    /// Whether training starts with the app (the benchmark measures a training app).
    pub fn trains(&self) -> bool {
        self.bench_secs.is_some()
    }

    /// Before the first frame: adjust the settings the run will start with.
    pub fn prepare(&self, shared: &mut Shared) {
        if self.bench_secs.is_some() {
            // Training must outlast the measurement.
            shared.settings.epochs = 1000;
        }
    }

    /// Once per frame, after drawing.
    pub fn after_frame(&mut self, shared: &mut Shared, ctx: &egui::Context) {
        self.frames += 1;
        if let Some(secs) = self.bench_secs {
            // Wait until training runs, then drag slider 0 back and forth every frame, as a
            // user would: the explorer sees its latent change and asks for a decode.
            let running = shared.run.status == Status::Running && shared.decoder.has_model();
            if running || self.bench_started.is_some() {
                let t0 = *self.bench_started.get_or_insert_with(Instant::now);
                let t = t0.elapsed().as_secs_f64();
                // The explorer's latent moves whichever tab is shown (e.g. the Training view's
                // plots with a reference run, `--tab training --reference`).
                shared.tab = self.bench_tab;
                if let Some(v) = shared.latent.z.first_mut() {
                    *v = (3.0 * (t * 2.0).sin()) as f32;
                }
                if self.bench_analyses {
                    // As if the Directions and Scatter views were open beside the explorer,
                    // with "Recompute" pressed on every snapshot.
                    shared.analysis.want_directions();
                    shared.analysis.want_projection(Projection::Tsne);
                    shared.analysis.refresh_projection();
                }
                if t > secs {
                    self.write_bench(shared);
                    self.finish(ctx);
                }
            }
            ctx.request_repaint();
        }
        if let Some(n) = self.smoke_frames {
            if self.frames >= n {
                self.finish(ctx);
            } else {
                ctx.request_repaint();
            }
        }
    }

    fn finish(&mut self, ctx: &egui::Context) {
        match self.screenshot.clone() {
            Some(path) if !self.screenshot_requested => {
                self.screenshot_requested = true;
                let c = ctx.clone();
                ctx.request_screenshot(move |img| {
                    let size = [img.size[0] as u32, img.size[1] as u32];
                    let bytes: Vec<u8> = img.pixels.iter().flat_map(|p| p.to_array()).collect();
                    if let Some(buf) = image::RgbaImage::from_raw(size[0], size[1], bytes) {
                        if let Err(e) = crate::images::save_png(&buf, &path) {
                            eprintln!("error: screenshot: {e}");
                        }
                    }
                    c.send_viewport_cmd(egui::ViewportCommand::Close);
                });
                ctx.request_repaint();
            }
            Some(_) => ctx.request_repaint(),
            None => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
        }
    }

    fn write_bench(&self, s: &Shared) {
        let pct = |r: &Rolling, p| r.percentile(p).unwrap_or(f64::NAN);
        let v = serde_json::json!({
            "frames": s.frame_ms.total,
            "frame_ms_p50": pct(&s.frame_ms, 50.0),
            "frame_ms_p99": pct(&s.frame_ms, 99.0),
            "frame_ms_max": pct(&s.frame_ms, 100.0),
            "decodes": s.decode_ms.total,
            "decode_ms_p50": pct(&s.decode_ms, 50.0),
            "decode_ms_p99": pct(&s.decode_ms, 99.0),
            "decode_ms_max": pct(&s.decode_ms, 100.0),
            "decode_to_frame_ms_p50": pct(&s.decode_to_frame_ms, 50.0),
            "decode_to_frame_ms_p99": pct(&s.decode_to_frame_ms, 99.0),
            "frame_interval_ms_p50": pct(&s.frame_interval_ms, 50.0),
            "frame_interval_ms_p99": pct(&s.frame_interval_ms, 99.0),
            "training_step": s.run.step,
            // What the UI holds that grows with the run (for a memory curve to be read
            // against): the sample history (bounded by its budget) and the loss points.
            "timeline_frames": s.run.timeline.len(),
            "timeline_bytes": s.run.timeline.bytes(),
            "history_points": s.run.history.points.len(),
            "images_per_sec": s.run.last_point.as_ref().map(|p| p.images_per_sec),
            "gpu_colormap": s.gpu_colormap,
            "analyses": s.analysis.timings_json(),
        });
        let text = v.to_string();
        match &self.bench_out {
            Some(p) => {
                if let Err(e) = std::fs::write(p, &text) {
                    eprintln!("error: {}: {e}", p.display());
                }
            }
            None => println!("{text}"),
        }
    }
}
