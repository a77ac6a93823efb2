//! File dialogs that never block rendering: rfd's async dialog runs on a helper thread and
//! its answer arrives by message. When no dialog can be shown (no portal, no zenity: rfd
//! then answers "cancelled" within milliseconds) a path prompt is offered instead.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use super::LatentLabApp;
use crate::data::DataSource;
use crate::images::ImageBatch;
use crate::worker::Command;

/// A dialog answered faster than this was not shown to anyone.
const NO_DIALOG: Duration = Duration::from_millis(150);

#[derive(Clone, Debug)]
pub enum FileAction {
    OpenCheckpoint,
    SaveCheckpoint,
    OpenIdx,
    OpenFolder,
    ExportPng(ImageBatch),
    ExportGif(ImageBatch),
    /// A second run to compare with.
    OpenReference,
    /// The run's sample history: an animated GIF, or a PNG contact sheet.
    ExportTimelapse {
        timeline: Box<crate::timeline::Timeline>,
        sheet: bool,
    },
    /// A grid of `cols` columns (the traversal grid), as PNG; `name` is the suggested file.
    ExportGrid {
        images: ImageBatch,
        cols: usize,
        name: &'static str,
    },
}

impl FileAction {
    fn title(&self) -> &'static str {
        match self {
            FileAction::OpenCheckpoint => "Open checkpoint",
            FileAction::SaveCheckpoint => "Save checkpoint",
            FileAction::OpenIdx => "Open IDX file",
            FileAction::OpenFolder => "Open image folder",
            FileAction::ExportPng(_) => "Export PNG strip",
            FileAction::ExportGif(_) => "Export GIF",
            FileAction::ExportGrid { .. } => "Export PNG grid",
            FileAction::OpenReference => "Open a run to compare with",
            FileAction::ExportTimelapse { sheet: false, .. } => "Export timelapse GIF",
            FileAction::ExportTimelapse { sheet: true, .. } => "Export contact sheet",
        }
    }
}

type Answer = (FileAction, Option<PathBuf>, Duration);

pub struct Files {
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    /// A dialog is open.
    pub busy: bool,
    prompt: Option<(FileAction, String)>,
    prompt_answer: Option<(FileAction, PathBuf)>,
    messages: (Sender<String>, Receiver<String>),
    /// Set once a dialog came back instantly: we then go straight to the prompt.
    pub dialogs_unavailable: bool,
}

impl Files {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            busy: false,
            prompt: None,
            prompt_answer: None,
            messages: mpsc::channel(),
            dialogs_unavailable: false,
        }
    }

    /// Ask the user for a path for `action`.
    pub fn open(&mut self, action: FileAction, frame: Option<&eframe::Frame>, ctx: &egui::Context) {
        if self.busy {
            return;
        }
        if self.dialogs_unavailable || frame.is_none() {
            self.prompt(action);
            return;
        }
        let mut d = rfd::AsyncFileDialog::new().set_title(action.title());
        if let Some(f) = frame {
            d = d.set_parent(f);
        }
        let ext = crate::checkpoint::EXTENSION;
        type Pick =
            std::pin::Pin<Box<dyn std::future::Future<Output = Option<rfd::FileHandle>> + Send>>;
        let save = |d: rfd::AsyncFileDialog, name: &str, filter: (&str, &[&str])| -> Pick {
            Box::pin(
                d.add_filter(filter.0, filter.1)
                    .set_file_name(name)
                    .save_file(),
            )
        };
        let ckpt_filter = ("Latent Lab checkpoint", &[ext][..]);
        let pick: Pick = match &action {
            FileAction::OpenCheckpoint | FileAction::OpenReference => Box::pin(
                d.add_filter("Checkpoint or safetensors", &[ext, "safetensors"])
                    .add_filter(ckpt_filter.0, ckpt_filter.1)
                    .add_filter("safetensors (e.g. from PyTorch)", &["safetensors"])
                    .pick_file(),
            ),
            FileAction::SaveCheckpoint => save(d, &format!("model.{ext}"), ckpt_filter),
            FileAction::OpenIdx => Box::pin(
                d.add_filter("IDX", &["gz", "idx", "idx3-ubyte", "ubyte"])
                    .pick_file(),
            ),
            FileAction::OpenFolder => Box::pin(d.pick_folder()),
            FileAction::ExportPng(_) => save(d, "interpolation.png", ("PNG", &["png"])),
            FileAction::ExportGif(_) => save(d, "interpolation.gif", ("GIF", &["gif"])),
            FileAction::ExportGrid { name, .. } => save(d, name, ("PNG", &["png"])),
            FileAction::ExportTimelapse { sheet: false, .. } => {
                save(d, "timelapse.gif", ("GIF", &["gif"]))
            }
            FileAction::ExportTimelapse { sheet: true, .. } => {
                save(d, "timelapse.png", ("PNG", &["png"]))
            }
        };
        let fut = async move { pick.await.map(|h| h.path().to_path_buf()) };
        let tx = self.tx.clone();
        let ctx = ctx.clone();
        self.busy = true;
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("latent-lab-dialog".into())
            .spawn(move || {
                let path = pollster::block_on(fut);
                let _ = tx.send((action, path, started.elapsed()));
                ctx.request_repaint();
            });
        if spawned.is_err() {
            self.busy = false;
        }
    }

    /// Show the path prompt for `action`.
    pub fn prompt(&mut self, action: FileAction) {
        self.prompt = Some((action, String::new()));
    }

    /// A dialog's answer, if one arrived.
    pub fn poll(&mut self) -> Option<(FileAction, PathBuf)> {
        let (action, path, took) = self.rx.try_recv().ok()?;
        self.busy = false;
        match path {
            Some(p) => Some((action, p)),
            None if took < NO_DIALOG => {
                // Nobody could have pressed Cancel that fast: no dialog was shown.
                self.dialogs_unavailable = true;
                self.prompt(action);
                None
            }
            None => None,
        }
    }

    pub fn take_prompt_answer(&mut self) -> Option<(FileAction, PathBuf)> {
        self.prompt_answer.take()
    }

    pub fn take_message(&mut self) -> Option<String> {
        self.messages.1.try_recv().ok()
    }

    pub fn prompt_ui(&mut self, ctx: &egui::Context) {
        let Some((action, text)) = &mut self.prompt else {
            return;
        };
        let mut open = true;
        let mut done = false;
        egui::Window::new(action.title())
            .collapsible(false)
            .open(&mut open)
            .show(ctx, |ui| {
                if self.dialogs_unavailable {
                    ui.label("No file dialog is available on this desktop (install xdg-desktop-portal-gtk/-kde or zenity). Type a path instead:");
                } else {
                    ui.label("Path:");
                }
                let r = ui.add(egui::TextEdit::singleline(text).desired_width(420.0).hint_text("/path/to/file"));
                let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("OK").clicked() || enter {
                    done = true;
                }
            });
        if done && !text.trim().is_empty() {
            let path = PathBuf::from(text.trim());
            if let Some((action, _)) = self.prompt.take() {
                self.prompt_answer = Some((action, path));
            }
        } else if !open {
            self.prompt = None;
        }
    }

    /// Write an interpolation export on a helper thread; the outcome comes back as a message.
    /// Write `batch` to `path` off the UI thread: a GIF of its frames, or a PNG grid of
    /// `cols` columns (`None`: one strip).
    fn export(&self, path: PathBuf, batch: ImageBatch, gif: bool, cols: Option<usize>) {
        let tx = self.messages.0.clone();
        std::thread::spawn(move || {
            let r = if gif {
                let frames: Vec<_> = (0..batch.count()).map(|i| batch.single(i, 4)).collect();
                crate::images::save_gif(&frames, 80, &path)
            } else {
                let cols = cols.unwrap_or(batch.count()).max(1);
                crate::images::save_png(&batch.grid(cols, 2, 2), &path)
            };
            let _ = tx.send(match r {
                Ok(()) => format!("exported {}", path.display()),
                Err(e) => format!("export failed: {e}"),
            });
        });
    }
}

impl Files {
    /// Write a run's sample history off the UI thread: a GIF
    /// ([`crate::timeline::write_timelapse`]) or a PNG contact sheet.
    fn export_timelapse(&self, path: PathBuf, timeline: crate::timeline::Timeline, sheet: bool) {
        let tx = self.messages.0.clone();
        std::thread::spawn(move || {
            let r = crate::timeline::write_timelapse(&timeline, &path, sheet, None, 2);
            let _ = tx.send(match r {
                Ok(n) => format!("exported {} ({n} frames)", path.display()),
                Err(e) => format!("export failed: {e}"),
            });
        });
    }
}

impl Default for Files {
    fn default() -> Self {
        Self::new()
    }
}

/// What a chosen path does. Saving and loading run on the worker, never on the UI thread.
pub fn apply(app: &mut LatentLabApp, action: FileAction, path: PathBuf) {
    let shared = &mut app.shared;
    match action {
        FileAction::OpenCheckpoint => {
            shared.run.errors.clear();
            shared.run.status = super::Status::Preparing;
            shared.decoder.set_model(None);
            shared.analyser.set_model(None);
            shared.send(Command::Load {
                path: path.clone(),
                backend: shared.settings.backend,
            });
            shared.settings.add_recent(path);
        }
        FileAction::SaveCheckpoint => {
            let path = if path.extension().is_none() {
                path.with_extension(crate::checkpoint::EXTENSION)
            } else {
                path
            };
            shared.send(Command::Save(path.clone()));
            shared.settings.add_recent(path);
        }
        FileAction::OpenIdx | FileAction::OpenFolder => {
            match DataSource::parse(&path.to_string_lossy()) {
                Ok(src) => {
                    shared.settings.data = src;
                    shared
                        .run
                        .notices
                        .push(format!("dataset: {}", shared.settings.data.describe()));
                }
                Err(e) => shared.run.errors.push(e.to_string()),
            }
        }
        FileAction::ExportPng(b) => app.files.export(path, b, false, None),
        FileAction::ExportGif(b) => app.files.export(path, b, true, None),
        FileAction::ExportGrid { images, cols, .. } => {
            app.files.export(path, images, false, Some(cols))
        }
        FileAction::OpenReference => {
            shared.reference_loading = Some(super::reference::load(&path, shared.waker.clone()));
        }
        FileAction::ExportTimelapse { timeline, sheet } => {
            app.files.export_timelapse(path, *timeline, sheet)
        }
    }
}
