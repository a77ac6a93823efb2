//! The desktop app (eframe/egui). It drives the engine only through the worker's
//! messages and the decoder thread; it never holds a tensor.
//!
//! One file per panel, each behind the [`Panel`] trait; the tabs are listed once, in
//! [`panels`]. Panels push [`AppCommand`]s while drawing; [`LatentLabApp`] runs them after
//! every panel has drawn.

pub mod analysis;
mod automation;
pub mod colormap;
mod directions;
mod explorer;
mod files;
pub mod gpu_image;
mod health;
mod interpolation;
mod manifold;
mod panel;
mod recovery;
pub mod reference;
mod run_state;
mod scatter;
pub mod settings;
pub mod stats;
mod status_bar;
mod train_panel;
mod training_view;
mod traversal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use directions::DirectionsView;
pub use explorer::Explorer;
pub use files::FileAction;
pub use health::Health;
pub use panel::{AppCommand, Panel};
pub use run_state::{RunState, Status};
pub use scatter::Scatter;
pub use settings::Settings;
pub use training_view::TrainingView;
pub use traversal::Traversal;

use crate::worker::decoder::{AnalysisThreads, DecoderHandle, Job, Output, Slot};
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
    /// Open this checkpoint as the reference run to compare with.
    pub reference: Option<PathBuf>,
    /// The Training view's step cursor at start.
    pub cursor: Option<u64>,
    /// Open on the tab with this id (see [`tab_id`]).
    pub tab: Option<&'static str>,
    /// Drag the first latent slider every frame for this many seconds while training,
    /// then write frame-time and decode-latency percentiles to `bench_out` and exit.
    pub bench_secs: Option<f64>,
    pub bench_out: Option<PathBuf>,
    /// With `bench_secs`: keep the analyses (directions, t-SNE) computing all along.
    pub bench_analyses: bool,
    /// Ignore saved settings (tests, benchmarks).
    pub fresh_settings: bool,
    /// Autosave folder (with the crash marker); `None` turns autosave off.
    pub autosave_dir: Option<PathBuf>,
}

/// The tabs, in menu order. A new tab is a file with a [`Panel`] (and its `mod` line
/// above) plus one line here.
pub fn panels() -> Vec<Box<dyn Panel>> {
    vec![
        Box::new(training_view::TrainingView::default()),
        Box::new(explorer::Explorer::default()),
        Box::new(interpolation::Interpolation::default()),
        Box::new(manifold::Manifold::default()),
        Box::new(scatter::Scatter::default()),
        Box::new(directions::DirectionsView::default()),
        Box::new(traversal::Traversal::default()),
        Box::new(health::Health::default()),
    ]
}

/// The ids of the tabs, in menu order.
pub fn tab_ids() -> Vec<&'static str> {
    panels().iter().map(|p| p.id()).collect()
}

/// The tab `name` means: an id (`training`, `explorer`, `interpolation`, `manifold`,
/// `scatter`) or any prefix of one, in any case.
pub fn tab_id(name: &str) -> Option<&'static str> {
    let s = name.trim().to_lowercase();
    if s.is_empty() {
        return None;
    }
    tab_ids().into_iter().find(|id| id.starts_with(&s))
}

/// The latent point of the explorer: its sliders edit it, the manifold fills the dimensions
/// it does not draw from it, a scatter click or an encoded image moves it.
#[derive(Clone, Debug, Default)]
pub struct Latent {
    pub z: Vec<f32>,
    /// Where it came from (a test image, a file), shown under the explorer's image.
    pub source: Option<String>,
}

impl Latent {
    /// Move to `z` when it has the current latent size.
    pub fn set(&mut self, z: Vec<f32>) {
        if z.len() == self.z.len() {
            self.z = z;
        }
    }
}

/// State every panel may read or change, and the queue of what they ask for.
pub struct Shared {
    pub settings: Settings,
    pub worker: WorkerHandle,
    pub decoder: DecoderHandle,
    /// The analysis threads: principal directions, and projections ([`Job::is_analysis`]).
    pub analyser: AnalysisThreads,
    /// Results of the analyses the views share, per snapshot.
    pub analysis: analysis::Analysis,
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
    /// The id of the tab shown.
    pub tab: &'static str,
    pub latent: Latent,
    /// Test-preview images the user selected as groups A and B (the scatter's boxes): an
    /// attribute vector is the mean of A's latents minus B's.
    pub groups: [Vec<usize>; 2],
    /// Test-preview images the scatter chose as the interpolation's ends (taken by the
    /// interpolation view).
    pub interpolation_ends: Option<[usize; 2]>,
    /// The class the explorer, interpolation and manifold decode (conditional models).
    pub class: u32,
    /// A second run opened to compare with ([`reference`]), and one being read.
    pub reference: Option<reference::Reference>,
    pub reference_loading: Option<reference::Loading>,
    /// Wakes the UI (given to the threads the app starts).
    waker: Option<crate::worker::Waker>,
    commands: Vec<AppCommand>,
}

impl Shared {
    /// The class count of the run's model if it is conditional.
    pub fn classes(&self) -> Option<usize> {
        self.run.info.as_ref().and_then(|i| i.spec.classes())
    }

    /// The decoder job for latents `z`: with the picked class for a conditional model.
    pub fn decode_job(&self, z: Vec<f32>) -> Job {
        match self.run.info.as_ref() {
            Some(info) if info.spec.classes().is_some() => {
                let n = z.len() / info.spec.latent_dim().max(1);
                Job::DecodeLabelled {
                    latents: z,
                    labels: vec![self.class; n],
                }
            }
            _ => Job::Decode(z),
        }
    }

    /// The decoder job encoding `images` with their `labels` (used by conditional models).
    pub fn encode_job(&self, images: Vec<f32>, labels: Vec<u32>) -> Job {
        match self.classes() {
            Some(_) => Job::EncodeLabelled { images, labels },
            None => Job::Encode(images),
        }
    }

    /// Class `c`'s name in the run's dataset (its number when the dataset names none).
    pub fn class_name(&self, c: u32) -> String {
        self.run
            .info
            .as_ref()
            .and_then(|i| i.label_names.get(c as usize).cloned())
            .unwrap_or_else(|| c.to_string())
    }

    /// The class picker of a conditional model (nothing for the others); true when the
    /// class changed.
    pub fn class_picker(&mut self, ui: &mut egui::Ui) -> bool {
        let Some(k) = self.classes() else {
            return false;
        };
        let before = self.class.min(k as u32 - 1);
        self.class = before;
        let names: Vec<String> = (0..k as u32).map(|c| self.class_name(c)).collect();
        ui.horizontal(|ui| {
            ui.label("class");
            egui::ComboBox::from_id_salt("class picker")
                .selected_text(&names[self.class as usize])
                .show_ui(ui, |ui| {
                    for (c, name) in (0..k as u32).zip(&names) {
                        ui.selectable_value(&mut self.class, c, name);
                    }
                });
        });
        self.class != before
    }

    /// Ask for something; it runs after this frame's panels have drawn.
    pub fn push(&mut self, cmd: AppCommand) {
        self.commands.push(cmd);
    }

    /// Send a command to the worker now, reporting a dead worker in the window. For the
    /// app's own command execution and tests; panels push [`AppCommand::Worker`].
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
    /// The left-hand controls (model, hyperparameters, data, run buttons).
    pub controls: train_panel::TrainPanel,
    /// The tabs, from [`panels`].
    pub tabs: Vec<Box<dyn Panel>>,
    pub files: files::Files,
    pub recovery: recovery::Recovery,
    /// Smoke-test, screenshot and benchmark hooks, when a flag asks for them.
    automation: Option<automation::Automation>,
    fresh_settings: bool,
    /// A checkpoint dropped on a window with a run: open it as the run, or compare with it?
    dropped: Option<PathBuf>,
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
            low_priority: true,
        })?;
        let decoder = DecoderHandle::spawn(Some(waker.clone()))?;
        let analyser = AnalysisThreads::spawn(Some(waker.clone()))?;
        let tabs = panels();
        let tab = opts
            .tab
            .or_else(|| tabs.first().map(|p| p.id()))
            .unwrap_or_default();
        let (recovery, autosave_problem) = recovery::Recovery::new(opts.autosave_dir.clone());
        let mut app = Self {
            shared: Shared {
                settings,
                worker,
                decoder,
                analyser,
                analysis: Default::default(),
                run: RunState::default(),
                frame_ms: Rolling::new(600),
                decode_ms: Rolling::new(600),
                decode_to_frame_ms: Rolling::new(600),
                frame_interval_ms: Rolling::new(600),
                last_frame: None,
                gpu_colormap: false,
                textures: HashMap::new(),
                tab,
                latent: Latent::default(),
                groups: Default::default(),
                interpolation_ends: None,
                class: 0,
                reference: None,
                reference_loading: None,
                waker: Some(waker),
                commands: Vec::new(),
            },
            controls: Default::default(),
            tabs,
            files: files::Files::new(),
            recovery,
            automation: automation::Automation::from_options(&opts),
            fresh_settings: opts.fresh_settings,
            dropped: None,
        };
        app.shared.run.notices.extend(autosave_problem);
        let benchmark = app.automation.as_ref().is_some_and(|a| a.trains());
        if let Some(a) = &app.automation {
            a.prepare(&mut app.shared);
        }
        if let Some(path) = opts.reference {
            app.on_file_chosen(FileAction::OpenReference, path);
        }
        if let Some(step) = opts.cursor {
            for p in &mut app.tabs {
                let p: &mut dyn Panel = p.as_mut();
                if let Some(t) = p.as_any_mut().downcast_mut::<training_view::TrainingView>() {
                    t.cursor = Some(step);
                }
            }
        }
        if let Some(path) = opts.open {
            app.on_file_chosen(FileAction::OpenCheckpoint, path);
            if opts.autostart {
                // The worker takes commands in order: the run is loaded before this arrives.
                app.shared.send(Command::Train);
            }
        } else if opts.autostart || benchmark {
            app.controls.start_new(&mut app.shared, true);
            app.execute(ctx, None);
        }
        Ok(app)
    }

    /// The tab panel of type `T` (tests look inside panels this way).
    pub fn panel<T: Panel + std::any::Any>(&self) -> Option<&T> {
        self.tabs.iter().find_map(|p| {
            let p: &dyn Panel = p.as_ref();
            p.as_any().downcast_ref::<T>()
        })
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
                    self.shared.analyser.set_model(Some(snap.clone()));
                    self.shared.decoder.set_model(Some(snap));
                    self.shared.analysis.on_snapshot();
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
                    // …and its architecture and data, so that Train or Reset from here trains
                    // what the run is (not what the controls showed before).
                    let o = info.spec.overrides();
                    st.latent_dim = o.latent_dim;
                    st.hidden = o
                        .hidden
                        .map(|h| {
                            h.iter()
                                .map(|w| w.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    st.data = info.data_source.clone();
                    self.shared.analysis.reset();
                    self.shared.groups = Default::default();
                    for p in &mut self.tabs {
                        p.on_run_ready(&info, &mut self.shared);
                    }
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
        while let Some(out) = self
            .shared
            .decoder
            .try_recv()
            .or_else(|| self.shared.analyser.try_recv())
        {
            let slot = out.slot();
            if analysis::SLOTS.contains(&slot) {
                let d = (self.shared.run.latent_dim()).unwrap_or(self.shared.latent.z.len());
                if let Some(e) = self.shared.analysis.on_output(out, d) {
                    self.shared.run.errors.push(e);
                }
                continue;
            }
            match self.tabs.iter_mut().find(|p| p.slots().contains(&slot)) {
                Some(p) => p.on_decoded(out, &mut self.shared),
                // No panel asks for this slot; only a failure is news.
                None => {
                    if let Output::Failed { message, .. } = out {
                        self.shared.run.errors.push(message);
                    }
                }
            }
        }
        if let Some(r) = self
            .shared
            .reference_loading
            .as_ref()
            .and_then(|l| l.poll(self.shared.waker.clone()))
        {
            self.shared.reference_loading = None;
            match r {
                Ok(r) => {
                    self.shared
                        .run
                        .notices
                        .push(format!("comparing with {} ({})", r.name, r.describe));
                    self.shared.reference = Some(r);
                }
                Err(e) => self.shared.run.errors.push(e),
            }
        }
        while let Some(out) = self
            .shared
            .reference
            .as_ref()
            .and_then(|r| r.decoder.try_recv())
        {
            let slot = out.slot();
            if let Some(p) = self.tabs.iter_mut().find(|p| p.slots().contains(&slot)) {
                p.on_decoded(out, &mut self.shared);
            }
        }
        if let Some(done) = self.files.poll() {
            self.on_file_chosen(done.0, done.1);
        }
        if let Some(msg) = self.files.take_message() {
            self.shared.run.notices.push(msg);
        }
    }

    /// What a file dialog's answer does (also called directly by tests).
    pub fn on_file_chosen(&mut self, action: FileAction, path: PathBuf) {
        files::apply(self, action, path);
    }

    /// The whole UI; `frame` is `None` under egui_kittest.
    pub fn draw(&mut self, ui: &mut egui::Ui, frame: Option<&eframe::Frame>) {
        self.poll();
        self.shortcuts(ui);
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| status_bar::status_ui(ui, &self.shared));
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(270.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.controls.ui(ui, &mut self.shared);
                    ui.separator();
                    self.recovery.settings_ui(ui, &mut self.shared.settings);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.messages_ui(ui);
            let shown = self.shared.tab;
            if let Some(p) = self.tabs.iter_mut().find(|p| p.id() == shown) {
                p.ui(ui, &mut self.shared);
            }
        });
        self.files.prompt_ui(ui.ctx());
        if let Some((action, path)) = self.files.take_prompt_answer() {
            self.shared.push(AppCommand::FileChosen(action, path));
        }
        self.dropped_files(ui);
        self.dropped_ui(ui.ctx());
        self.recovery.tick(&mut self.shared);
        analysis::Analysis::request(&mut self.shared);
        self.execute(ui.ctx(), frame);
        self.shared.run.new_weights = false;
        // Keep the clock in the status bar and the progress line moving while training.
        if self.shared.run.status == Status::Running {
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
    }

    /// Run what was asked for during this frame, in order.
    fn execute(&mut self, ctx: &egui::Context, frame: Option<&eframe::Frame>) {
        let mut repaint = false;
        for cmd in std::mem::take(&mut self.shared.commands) {
            // What the worker and the decoder answer wakes the UI by itself; the rest
            // changes what the window shows, and this frame is drawn already.
            repaint |= !matches!(
                cmd,
                AppCommand::Worker(_) | AppCommand::Decoder(..) | AppCommand::ApplyHyperparameters
            );
            match cmd {
                AppCommand::Worker(c) => self.shared.send(c),
                AppCommand::Decoder(Slot::Reference, job) => {
                    if let Some(r) = &self.shared.reference {
                        r.decoder.request(Slot::Reference, job);
                    }
                }
                AppCommand::Decoder(slot, job) if job.is_analysis() => {
                    self.shared.analyser.request(slot, job)
                }
                AppCommand::Decoder(slot, job) => self.shared.decoder.request(slot, job),
                AppCommand::StartRun { request, train } => {
                    let s = &mut self.shared;
                    s.run.errors.clear();
                    s.run.status = Status::Preparing;
                    s.decoder.set_model(None);
                    s.analyser.set_model(None);
                    s.send(Command::Start(request));
                    if train {
                        s.send(Command::Train);
                    }
                }
                AppCommand::ApplyHyperparameters => {
                    train_panel::TrainPanel::apply_changes(&mut self.shared)
                }
                AppCommand::ChoosePath(action) => self.files.open(action, frame, ctx),
                AppCommand::PromptPath(action) => self.files.prompt(action),
                AppCommand::FileChosen(action, path) => self.on_file_chosen(action, path),
                AppCommand::RestoreAutosave(path) => {
                    self.on_file_chosen(FileAction::OpenCheckpoint, path.clone());
                    // Autosaves rotate away; they do not belong in the recent-files list.
                    self.shared.settings.recent.retain(|p| p != &path);
                }
                AppCommand::ShowTab(id) => self.shared.tab = id,
            }
        }
        if repaint {
            ctx.request_repaint();
        }
    }

    fn shortcuts(&mut self, ui: &mut egui::Ui) {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let open = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
        let save = KeyboardShortcut::new(Modifiers::COMMAND, Key::S);
        if ui.input_mut(|i| i.consume_shortcut(&open)) {
            self.shared
                .push(AppCommand::ChoosePath(FileAction::OpenCheckpoint));
        }
        if ui.input_mut(|i| i.consume_shortcut(&save)) && self.shared.run.info.is_some() {
            self.shared
                .push(AppCommand::ChoosePath(FileAction::SaveCheckpoint));
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        let shared = &mut self.shared;
        let mut asked = None;
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open checkpoint…  (Ctrl+O)").clicked() {
                    asked = Some(AppCommand::ChoosePath(FileAction::OpenCheckpoint));
                }
                let has_run = shared.run.info.is_some();
                if ui
                    .add_enabled(has_run, egui::Button::new("Save checkpoint…  (Ctrl+S)"))
                    .clicked()
                {
                    asked = Some(AppCommand::ChoosePath(FileAction::SaveCheckpoint));
                }
                ui.separator();
                if ui
                    .button("Compare with a run…")
                    .on_hover_text("open a second checkpoint as a reference: its curves and samples sit beside this run's")
                    .clicked()
                {
                    asked = Some(AppCommand::ChoosePath(FileAction::OpenReference));
                }
                if shared.reference.is_some() && ui.button("Close the reference run").clicked() {
                    shared.reference = None;
                }
                ui.separator();
                if ui.button("Open IDX file…").clicked() {
                    asked = Some(AppCommand::ChoosePath(FileAction::OpenIdx));
                }
                if ui.button("Open image folder…").clicked() {
                    asked = Some(AppCommand::ChoosePath(FileAction::OpenFolder));
                }
                if ui.button("Type a path…").clicked() {
                    asked = Some(AppCommand::PromptPath(FileAction::OpenCheckpoint));
                }
                if !shared.settings.recent.is_empty() {
                    ui.separator();
                    ui.label("Recent checkpoints");
                    for p in &shared.settings.recent {
                        if ui.button(p.display().to_string()).clicked() {
                            asked = Some(AppCommand::FileChosen(
                                FileAction::OpenCheckpoint,
                                p.clone(),
                            ));
                        }
                    }
                }
                if asked.is_some() {
                    ui.close();
                }
            });
            ui.separator();
            for p in &self.tabs {
                ui.selectable_value(&mut shared.tab, p.id(), p.title());
            }
        });
        if let Some(cmd) = asked {
            shared.push(cmd);
        }
    }

    fn messages_ui(&mut self, ui: &mut egui::Ui) {
        let shared = &mut self.shared;
        if let Some(path) = self.recovery.offer_ui(ui) {
            shared.push(AppCommand::RestoreAutosave(path));
        }
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
                                // queued before `Train`, so no step runs with the old rate.
                                shared.settings.learning_rate = lower;
                                shared.push(AppCommand::ApplyHyperparameters);
                                shared.push(AppCommand::Worker(Command::Train));
                                shared.run.errors.clear();
                            }
                            if ui.button("Resume as is").clicked() {
                                shared.push(AppCommand::Worker(Command::Train));
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

    /// What to do with a checkpoint dropped while a run is open.
    fn dropped_ui(&mut self, ctx: &egui::Context) {
        let Some(p) = self.dropped.clone() else {
            return;
        };
        let name = p
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut open = true;
        let mut choice = None;
        egui::Window::new("Open the dropped checkpoint")
            .collapsible(false)
            .open(&mut open)
            .show(ctx, |ui| {
                ui.label(format!("{name}:"));
                ui.horizontal(|ui| {
                    if ui.button("Compare with this run").clicked() {
                        choice = Some(FileAction::OpenReference);
                    }
                    if ui.button("Open it instead").clicked() {
                        choice = Some(FileAction::OpenCheckpoint);
                    }
                });
            });
        if let Some(action) = choice {
            self.shared.push(AppCommand::FileChosen(action, p));
            self.dropped = None;
        } else if !open {
            self.dropped = None;
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
            let is_ckpt = p.extension().is_some_and(|e| {
                e == crate::checkpoint::EXTENSION || e.eq_ignore_ascii_case("safetensors")
            });
            if is_ckpt && self.shared.run.info.is_some() {
                // A run is open: the drop may be the run to compare with.
                self.dropped = Some(p);
            } else if is_ckpt {
                self.shared
                    .push(AppCommand::FileChosen(FileAction::OpenCheckpoint, p));
            } else {
                explorer::encode_file(&p, &mut self.shared);
                self.shared.push(AppCommand::ShowTab(explorer::ID));
            }
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
        if let Some(a) = &mut self.automation {
            a.after_frame(&mut self.shared, ui.ctx());
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if !self.fresh_settings {
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
                    .and_then(|s| s.get_string(eframe::APP_KEY))
                    .and_then(|text| Settings::from_ron(&text))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::decoder::Slot;

    #[test]
    fn tab_names_of_the_command_line_keep_working() {
        for (name, id) in [
            ("training", "training"),
            ("explorer", "explorer"),
            ("interpolation", "interpolation"),
            ("manifold", "manifold"),
            ("scatter", "scatter"),
            ("t", "training"),
            ("e", "explorer"),
            ("i", "interpolation"),
            ("m", "manifold"),
            ("s", "scatter"),
            (" Explo ", "explorer"),
        ] {
            assert_eq!(tab_id(name), Some(id), "{name}");
        }
        assert_eq!(tab_id(""), None);
        assert_eq!(tab_id("plots"), None);
    }

    #[test]
    fn tab_ids_are_unique_and_every_decoder_slot_has_one_tab() {
        let tabs = panels();
        let mut ids: Vec<&str> = tabs.iter().map(|p| p.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), tabs.len(), "two tabs share an id");
        let mut slots: Vec<Slot> = tabs.iter().flat_map(|p| p.slots().to_vec()).collect();
        slots.extend(analysis::SLOTS);
        let all = slots.len();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), all, "two owners claim one decoder slot");
        for s in [
            Slot::Explorer,
            Slot::EncodeImage,
            Slot::Interpolation,
            Slot::Manifold,
            Slot::EncodeSet,
            Slot::ClassStrip,
            Slot::Directions,
            Slot::Traversal,
            Slot::PrincipalDirections,
            Slot::Projection,
        ] {
            assert!(slots.contains(&s), "no tab receives {s:?}");
        }
    }
}
