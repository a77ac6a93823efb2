//! The desktop app (eframe/egui). It drives the engine only through the worker's
//! messages and the decoder thread; it never holds a tensor.
//!
//! One file per panel; each panel is a struct with a `ui(&mut self, ui, &mut Shared)`.

pub mod colormap;
mod explorer;
mod files;
pub mod gpu_image;
mod interpolation;
mod manifold;
mod recovery;
mod run_state;
mod scatter;
pub mod settings;
pub mod stats;
mod status_bar;
mod train_panel;
mod training_view;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use files::FileAction;
pub use run_state::{RunState, Status};
pub use settings::Settings;

use crate::worker::decoder::{DecoderHandle, Output, Slot};
use crate::worker::{Command, Event, WorkerHandle, WorkerOptions};
use stats::Rolling;

/// Flags of the GUI (see `latent-lab --help`).
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// Exit after this many frames (window smoke test).
    pub smoke_frames: Option<u64>,
    /// Save a screenshot of the window here (at exit with `smoke_frames`/`bench_secs`).
    pub screenshot: Option<PathBuf>,
    /// Start training the configured model at once (with `open`: the loaded one).
    pub autostart: bool,
    /// Open this checkpoint at start.
    pub open: Option<PathBuf>,
    /// Open on this tab.
    pub tab: Option<Tab>,
    /// Drag the first latent slider every frame for this many seconds while training,
    /// then write frame-time and decode-latency percentiles to `bench_out` and exit.
    pub bench_secs: Option<f64>,
    pub bench_out: Option<PathBuf>,
    /// Ignore saved settings (tests, benchmarks).
    pub fresh_settings: bool,
    /// Autosave folder (with the crash marker); `None` turns autosave off.
    pub autosave_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tab {
    #[default]
    Training,
    Explorer,
    Interpolation,
    Manifold,
    Scatter,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Training,
        Tab::Explorer,
        Tab::Interpolation,
        Tab::Manifold,
        Tab::Scatter,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Tab::Training => "Training",
            Tab::Explorer => "Latent explorer",
            Tab::Interpolation => "Interpolation",
            Tab::Manifold => "Manifold",
            Tab::Scatter => "Scatter",
        }
    }
    /// `training`, `explorer`, `interpolation`, `manifold` or `scatter` (any prefix).
    pub fn parse(s: &str) -> Option<Tab> {
        let s = s.trim().to_lowercase();
        if s.is_empty() {
            return None;
        }
        Tab::ALL.into_iter().find(|t| t.key().starts_with(&s))
    }
    fn key(self) -> &'static str {
        match self {
            Tab::Training => "training",
            Tab::Explorer => "explorer",
            Tab::Interpolation => "interpolation",
            Tab::Manifold => "manifold",
            Tab::Scatter => "scatter",
        }
    }
}

/// State every panel may read or change.
pub struct Shared {
    pub settings: Settings,
    pub worker: WorkerHandle,
    pub decoder: DecoderHandle,
    pub run: RunState,
    /// Frame time (ms): eframe's CPU time for the last frame.
    pub frame_ms: Rolling,
    /// Explorer request (slider move) to decoded pixels ready, on the decoder's clock (ms).
    pub decode_ms: Rolling,
    /// Explorer request to the frame that draws the result (ms): adds the frame wait.
    pub decode_to_frame_ms: Rolling,
    /// Wall time between frames (ms).
    pub frame_interval_ms: Rolling,
    last_frame: Option<Instant>,
    /// The WGSL colour-map pipeline is installed (eframe on wgpu).
    pub gpu_colormap: bool,
    textures: HashMap<String, egui::TextureHandle>,
    pub tab: Tab,
}

impl Shared {
    /// Send a command to the worker, reporting a dead worker in the window.
    pub fn send(&mut self, cmd: Command) {
        if let Err(e) = self.worker.send(cmd) {
            self.run.errors.push(e.to_string());
        }
    }

    /// A texture updated in place under `key`.
    pub fn texture(
        &mut self,
        ctx: &egui::Context,
        key: &str,
        img: egui::ColorImage,
    ) -> egui::TextureHandle {
        match self.textures.get_mut(key) {
            Some(t) => {
                t.set(img, egui::TextureOptions::NEAREST);
                t.clone()
            }
            None => {
                let t = ctx.load_texture(key, img, egui::TextureOptions::NEAREST);
                self.textures.insert(key.to_string(), t.clone());
                t
            }
        }
    }

    pub fn cached_texture(&self, key: &str) -> Option<egui::TextureHandle> {
        self.textures.get(key).cloned()
    }
}

pub struct LatentLabApp {
    pub shared: Shared,
    pub train_panel: train_panel::TrainPanel,
    pub training: training_view::TrainingView,
    pub explorer: explorer::Explorer,
    pub interpolation: interpolation::Interpolation,
    pub manifold: manifold::Manifold,
    pub scatter: scatter::Scatter,
    pub files: files::Files,
    pub recovery: recovery::Recovery,
    opts: AppOptions,
    frames: u64,
    bench_started: Option<Instant>,
    screenshot_requested: bool,
    exit_after_screenshot: bool,
}

impl LatentLabApp {
    /// The app with a real worker and decoder; `ctx` is woken when they have news.
    pub fn new(ctx: &egui::Context, settings: Settings, opts: AppOptions) -> anyhow::Result<Self> {
        let waker_ctx = ctx.clone();
        // Throttled: at most ~60 wake-ups a second whatever the event rate.
        let waker: crate::worker::Waker = Arc::new(move || {
            waker_ctx.request_repaint_after(Duration::from_millis(16));
        });
        let worker = WorkerHandle::spawn(WorkerOptions {
            snapshot_every: Some(25),
            samples: true,
            waker: Some(waker.clone()),
        })?;
        let decoder = DecoderHandle::spawn(Some(waker))?;
        let tab = opts.tab.unwrap_or_default();
        let (recovery, autosave_problem) = recovery::Recovery::new(opts.autosave_dir.clone());
        let mut app = Self {
            shared: Shared {
                settings,
                worker,
                decoder,
                run: RunState::default(),
                frame_ms: Rolling::new(600),
                decode_ms: Rolling::new(600),
                decode_to_frame_ms: Rolling::new(600),
                frame_interval_ms: Rolling::new(600),
                last_frame: None,
                gpu_colormap: false,
                textures: HashMap::new(),
                tab,
            },
            train_panel: Default::default(),
            training: Default::default(),
            explorer: Default::default(),
            interpolation: Default::default(),
            manifold: Default::default(),
            scatter: Default::default(),
            files: files::Files::new(),
            recovery,
            opts,
            frames: 0,
            bench_started: None,
            screenshot_requested: false,
            exit_after_screenshot: false,
        };
        app.shared.run.notices.extend(autosave_problem);
        if app.opts.bench_secs.is_some() {
            // Training must outlast the measurement.
            app.shared.settings.epochs = 1000;
        }
        if let Some(path) = app.opts.open.clone() {
            app.on_file_chosen(FileAction::OpenCheckpoint, path);
            if app.opts.autostart {
                // The worker takes commands in order: the run is loaded before this arrives.
                app.shared.send(Command::Train);
            }
        } else if app.opts.autostart || app.opts.bench_secs.is_some() {
            app.train_panel.start_new(&mut app.shared, true);
        }
        Ok(app)
    }

    /// Drain worker events and decoder results, at most ~8 ms per frame.
    pub fn poll(&mut self) {
        let budget = Instant::now() + Duration::from_millis(8);
        while Instant::now() < budget {
            let Some(ev) = self.shared.worker.try_recv() else {
                break;
            };
            match ev {
                Event::Snapshot(snap) => {
                    self.shared.decoder.set_model(Some(snap));
                    self.shared.run.new_weights = true;
                }
                Event::Ready(info) => {
                    // The controls show the run's own settings (e.g. a loaded checkpoint's).
                    let st = &mut self.shared.settings;
                    st.model = info.spec.kind;
                    st.learning_rate = info.config.learning_rate;
                    st.beta = info.config.beta;
                    st.batch_size = info.config.batch_size;
                    st.epochs = info.config.epochs;
                    st.seed = info.config.seed;
                    self.explorer.reset(info.spec.latent_dim());
                    self.scatter.reset();
                    self.interpolation.reset();
                    self.shared.run.apply(Event::Ready(info));
                }
                Event::Saved { path, step } if self.recovery.owns(&path) => {
                    self.recovery
                        .on_saved(step, self.shared.settings.autosave_keep);
                }
                Event::Crashed(msg) => {
                    self.recovery.offer_after_crash();
                    self.shared.run.apply(Event::Crashed(msg));
                }
                other => self.shared.run.apply(other),
            }
        }
        while let Some(out) = self.shared.decoder.try_recv() {
            let slot = match &out {
                Output::Decoded { slot, .. }
                | Output::Encoded { slot, .. }
                | Output::Failed { slot, .. } => *slot,
            };
            match slot {
                Slot::Explorer | Slot::EncodeImage => {
                    self.explorer.on_output(out, &mut self.shared)
                }
                Slot::Interpolation => self.interpolation.on_output(out, &mut self.shared),
                Slot::Manifold => self.manifold.on_output(out, &mut self.shared),
                Slot::EncodeSet => self.scatter.on_output(out, &mut self.shared),
            }
        }
        if let Some(done) = self.files.poll() {
            self.on_file_chosen(done.0, done.1);
        }
        if let Some(msg) = self.files.take_message() {
            self.shared.run.notices.push(msg);
        }
    }

    /// What a file dialog's answer does (also called directly by tests and the path prompt).
    pub fn on_file_chosen(&mut self, action: FileAction, path: PathBuf) {
        files::apply(self, action, path);
    }

    /// The whole UI; `frame` is `None` under egui_kittest.
    pub fn draw(&mut self, ui: &mut egui::Ui, frame: Option<&eframe::Frame>) {
        self.poll();
        self.shortcuts(ui, frame);
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui, frame));
        egui::Panel::bottom("status").show(ui, |ui| status_bar::status_ui(ui, &self.shared));
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(270.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.train_panel
                        .ui(ui, &mut self.shared, &mut self.files, frame);
                    ui.separator();
                    self.recovery.settings_ui(ui, &mut self.shared.settings);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.messages_ui(ui);
            match self.shared.tab {
                Tab::Training => self.training.ui(ui, &mut self.shared),
                Tab::Explorer => self.explorer.ui(ui, &mut self.shared),
                Tab::Interpolation => {
                    self.interpolation
                        .ui(ui, &mut self.shared, &mut self.files, frame)
                }
                Tab::Manifold => self.manifold.ui(ui, &mut self.shared, &self.explorer.z),
                Tab::Scatter => {
                    if let Some(z) = self.scatter.ui(ui, &mut self.shared) {
                        self.explorer.set_latent(z);
                        self.shared.tab = Tab::Explorer;
                    }
                }
            }
        });
        self.files.prompt_ui(ui.ctx());
        if let Some(done) = self.files.take_prompt_answer() {
            self.on_file_chosen(done.0, done.1);
        }
        self.dropped_files(ui);
        self.recovery.tick(&mut self.shared);
        self.shared.run.new_weights = false;
        // Keep the clock in the status bar and the progress line moving while training.
        if self.shared.run.status == Status::Running {
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
    }

    fn shortcuts(&mut self, ui: &mut egui::Ui, frame: Option<&eframe::Frame>) {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let open = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
        let save = KeyboardShortcut::new(Modifiers::COMMAND, Key::S);
        if ui.input_mut(|i| i.consume_shortcut(&open)) {
            self.files.open(FileAction::OpenCheckpoint, frame, ui.ctx());
        }
        if ui.input_mut(|i| i.consume_shortcut(&save)) && self.shared.run.info.is_some() {
            self.files.open(FileAction::SaveCheckpoint, frame, ui.ctx());
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui, frame: Option<&eframe::Frame>) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open checkpoint…  (Ctrl+O)").clicked() {
                    self.files.open(FileAction::OpenCheckpoint, frame, ui.ctx());
                    ui.close();
                }
                let has_run = self.shared.run.info.is_some();
                if ui
                    .add_enabled(has_run, egui::Button::new("Save checkpoint…  (Ctrl+S)"))
                    .clicked()
                {
                    self.files.open(FileAction::SaveCheckpoint, frame, ui.ctx());
                    ui.close();
                }
                ui.separator();
                if ui.button("Open IDX file…").clicked() {
                    self.files.open(FileAction::OpenIdx, frame, ui.ctx());
                    ui.close();
                }
                if ui.button("Open image folder…").clicked() {
                    self.files.open(FileAction::OpenFolder, frame, ui.ctx());
                    ui.close();
                }
                if ui.button("Type a path…").clicked() {
                    self.files.prompt(FileAction::OpenCheckpoint);
                    ui.close();
                }
                let recent = self.shared.settings.recent.clone();
                if !recent.is_empty() {
                    ui.separator();
                    ui.label("Recent checkpoints");
                    for p in recent {
                        if ui.button(p.display().to_string()).clicked() {
                            self.on_file_chosen(FileAction::OpenCheckpoint, p);
                            ui.close();
                        }
                    }
                }
            });
            ui.separator();
            for t in Tab::ALL {
                ui.selectable_value(&mut self.shared.tab, t, t.name());
            }
        });
    }

    fn messages_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(path) = self.recovery.offer_ui(ui) {
            self.on_file_chosen(FileAction::OpenCheckpoint, path.clone());
            // Autosaves rotate away; they do not belong in the recent-files list.
            self.shared.settings.recent.retain(|p| p != &path);
        }
        let shared = &mut self.shared;
        if let Some(e) = shared.run.errors.last().cloned() {
            let diverged = matches!(shared.run.status, Status::Diverged { .. });
            let lr = shared
                .run
                .config
                .as_ref()
                .map_or(shared.settings.learning_rate, |c| c.learning_rate);
            egui::Frame::new()
                .fill(egui::Color32::from_rgb(90, 30, 30))
                .inner_margin(6.0)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.horizontal_wrapped(|ui| {
                        ui.colored_label(egui::Color32::WHITE, format!("Error: {e}"));
                        if diverged {
                            // The worker already rolled back to the last good weights.
                            let lower = lr / 10.0;
                            if ui
                                .button(format!("Lower learning rate to {lower:.1e} and resume"))
                                .clicked()
                            {
                                // The same path as an edited rate (sent, marked, mirrored),
                                // before `Train`, so no step runs with the old rate.
                                shared.settings.learning_rate = lower;
                                train_panel::TrainPanel::apply_changes(shared);
                                shared.send(Command::Train);
                                shared.run.errors.clear();
                            }
                            if ui.button("Resume as is").clicked() {
                                shared.send(Command::Train);
                                shared.run.errors.clear();
                            }
                        }
                        if ui.small_button("Dismiss").clicked() {
                            shared.run.errors.clear();
                        }
                    });
                });
        }
        let run = &mut shared.run;
        if let Some(n) = run.notices.last().cloned() {
            ui.horizontal_wrapped(|ui| {
                ui.weak(n.to_string());
                if ui.small_button("×").clicked() {
                    run.notices.clear();
                }
            });
        }
    }

    fn dropped_files(&mut self, ui: &egui::Ui) {
        let dropped: Vec<PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        for p in dropped {
            let is_ckpt = p
                .extension()
                .is_some_and(|e| e == crate::checkpoint::EXTENSION);
            if is_ckpt {
                self.on_file_chosen(FileAction::OpenCheckpoint, p);
            } else {
                self.explorer.encode_file(&p, &mut self.shared);
                self.shared.tab = Tab::Explorer;
            }
        }
    }

    /// Window-test and benchmark hooks, run once per frame.
    fn automation(&mut self, ctx: &egui::Context) {
        self.frames += 1;
        if let Some(secs) = self.opts.bench_secs {
            // Wait until training runs, then drag slider 0 back and forth every frame.
            let running =
                self.shared.run.status == Status::Running && self.shared.decoder.has_model();
            if running || self.bench_started.is_some() {
                let t0 = *self.bench_started.get_or_insert_with(Instant::now);
                let t = t0.elapsed().as_secs_f64();
                self.shared.tab = Tab::Explorer;
                self.explorer.drag_for_benchmark(t);
                if t > secs {
                    self.write_bench();
                    self.finish(ctx);
                }
            }
            ctx.request_repaint();
        }
        if let Some(n) = self.opts.smoke_frames {
            if self.frames >= n {
                self.finish(ctx);
            } else {
                ctx.request_repaint();
            }
        }
    }

    fn finish(&mut self, ctx: &egui::Context) {
        match self.opts.screenshot.clone() {
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
                self.exit_after_screenshot = true;
                ctx.request_repaint();
            }
            Some(_) => ctx.request_repaint(),
            None => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
        }
    }

    fn write_bench(&self) {
        let s = &self.shared;
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
            "images_per_sec": s.run.last_point.as_ref().map(|p| p.images_per_sec),
            "gpu_colormap": s.gpu_colormap,
        });
        let text = v.to_string();
        match &self.opts.bench_out {
            Some(p) => {
                if let Err(e) = std::fs::write(p, &text) {
                    eprintln!("error: {}: {e}", p.display());
                }
            }
            None => println!("{text}"),
        }
    }
}

impl eframe::App for LatentLabApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        if let Some(cpu) = frame.info().cpu_usage {
            self.shared.frame_ms.push(cpu as f64 * 1000.0);
        }
        let now = Instant::now();
        if let Some(t) = self.shared.last_frame.replace(now) {
            self.shared
                .frame_interval_ms
                .push((now - t).as_secs_f64() * 1000.0);
        }
        self.draw(ui, Some(frame));
        self.automation(ui.ctx());
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if !self.opts.fresh_settings {
            eframe::set_value(storage, eframe::APP_KEY, &self.shared.settings);
        }
    }

    fn on_exit(&mut self) {
        self.recovery.close();
    }
}

/// Where autosaves go by default: beside eframe's settings.
pub fn default_autosave_dir() -> Option<PathBuf> {
    eframe::storage_dir("latent-lab").map(|d| d.join("autosave"))
}

/// Open the window and run until it is closed.
pub fn run(opts: AppOptions) -> anyhow::Result<()> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 840.0])
            .with_min_inner_size([800.0, 560.0])
            .with_title("Latent Lab")
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        persist_window: !opts.fresh_settings,
        ..Default::default()
    };
    let result = eframe::run_native(
        "latent-lab",
        native,
        Box::new(move |cc| {
            let settings = if opts.fresh_settings {
                Settings::default()
            } else {
                cc.storage
                    .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                    .unwrap_or_default()
            };
            let mut app = LatentLabApp::new(&cc.egui_ctx, settings, opts)?;
            // The WGSL colour-map path is opt-in: on Mesa lavapipe its draw inside egui's
            // render pass grew memory by ~170 KB a frame (see ARCHITECTURE.md), and for
            // 28×28 images a texture upload measured as fast.
            app.shared.gpu_colormap =
                std::env::var_os("LATENT_LAB_SHADER").is_some() && gpu_image::install(cc);
            Ok(Box::new(app))
        }),
    );
    result.map_err(|e| anyhow::anyhow!("cannot open the window: {e} (is a display available? set DISPLAY or run under xvfb-run)"))
}
