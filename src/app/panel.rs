//! The one trait every panel implements, and the intents panels hand back to the app.
//!
//! A panel draws from [`Shared`] and changes only its own state and plain UI state there
//! (settings, the explorer's latent, error lists). Anything that acts — a worker command,
//! a decoder request, a file dialog, a new run — is pushed as an [`AppCommand`] and runs
//! after every panel has drawn (`LatentLabApp::execute`).

use std::any::Any;
use std::path::PathBuf;

use super::files::FileAction;
use super::Shared;
use crate::worker::decoder::{Job, Output, Slot};
use crate::worker::{Command, RunInfo, TrainRequest};

/// A view of the app: a tab in the central area (listed in [`super::panels`]) or the
/// left-hand controls.
pub trait Panel: AsAny {
    /// Stable key: `--tab` takes it (or a prefix), and `Shared::tab` holds it. Never rename.
    fn id(&self) -> &'static str;
    /// The tab button's text.
    fn title(&self) -> &'static str;
    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared);
    /// Decoder slots this panel requests; their results come to [`Panel::on_decoded`].
    fn slots(&self) -> &'static [Slot] {
        &[]
    }
    /// A decoder result for one of [`Panel::slots`] (before this frame is drawn).
    fn on_decoded(&mut self, _out: Output, _shared: &mut Shared) {}
    /// A run was started or loaded: forget what belonged to the previous one.
    fn on_run_ready(&mut self, _info: &RunInfo, _shared: &mut Shared) {}
}

/// What the UI asked for during a frame, executed in order after drawing.
#[derive(Debug)]
pub enum AppCommand {
    /// Send to the training worker.
    Worker(Command),
    /// Ask the decoder thread (a newer request replaces a pending one of the same slot).
    Decoder(Slot, Job),
    /// Start a fresh model (the request already validated); `train` also starts training.
    StartRun {
        request: Box<TrainRequest>,
        train: bool,
    },
    /// Send the learning rate, β and epochs of the settings that the run does not have yet.
    ApplyHyperparameters,
    /// Ask the user for a path: a file dialog, or the path prompt where there is none.
    ChoosePath(FileAction),
    /// Show the path prompt.
    PromptPath(FileAction),
    /// A path was chosen for `action`.
    FileChosen(FileAction, PathBuf),
    /// Load an autosave (it stays out of the recent-files list).
    RestoreAutosave(PathBuf),
    /// Switch to the tab with this id.
    ShowTab(&'static str),
}

/// `&dyn Panel` to `&dyn Any` (for `LatentLabApp::panel`), implemented for every panel; the
/// language does this by itself only from Rust 1.86, above our `rust-version`.
pub trait AsAny {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
