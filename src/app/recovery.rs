//! Autosave while training, and the offer to restore after a crash.
//!
//! The files and the crash marker are handled by [`crate::autosave`]; this decides when to
//! save (every few minutes of progress, on the worker like any save) and shows the offer.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{AppCommand, Settings, Shared, Status};
use crate::autosave::{Autosave, AutosaveEntry, PreviousSession};
use crate::worker::Command;

pub struct Recovery {
    store: Option<Autosave>,
    last_save: Instant,
    /// Step of the last autosave requested (no new file while training stands still).
    last_step: Option<u64>,
    /// Step and time of the last autosave written.
    pub last_written: Option<(u64, Instant)>,
    offer: Option<(String, AutosaveEntry)>,
}

fn ago(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        _ => format!("{:.1} h", secs as f64 / 3600.0),
    }
}

/// The newest autosave, with a sentence about it that starts with `lead`.
fn newest_offer(store: &Autosave, lead: &str) -> Option<(String, AutosaveEntry)> {
    let newest = store.list().into_iter().next()?;
    let why = format!(
        "{lead} newest autosave is from {} ago (step {}).",
        ago(newest.age_secs()),
        newest.step
    );
    Some((why, newest))
}

impl Recovery {
    /// Autosave into `dir` (`None`: autosave off, e.g. in tests). Returns a problem to show.
    pub fn new(dir: Option<PathBuf>) -> (Self, Option<String>) {
        let mut r = Self {
            store: None,
            last_save: Instant::now(),
            last_step: None,
            last_written: None,
            offer: None,
        };
        let Some(dir) = dir else {
            return (r, None);
        };
        let store = Autosave::new(dir);
        match store.open() {
            Ok(PreviousSession::Crashed) => {
                r.offer = newest_offer(&store, "Latent Lab did not close cleanly last time. Its");
            }
            Ok(PreviousSession::Clean | PreviousSession::Running(_)) => {}
            Err(e) => {
                return (
                    r,
                    Some(format!(
                        "autosave is off: cannot use {}: {e}",
                        store.dir().display()
                    )),
                )
            }
        }
        r.store = Some(store);
        (r, None)
    }

    pub fn dir(&self) -> Option<&Path> {
        self.store.as_ref().map(|s| s.dir())
    }

    /// Whether `path` is one of our autosaves (its `Saved` event is not news for the user).
    pub fn owns(&self, path: &Path) -> bool {
        self.store.as_ref().is_some_and(|s| s.owns(path))
    }

    /// Once per frame: ask for an autosave (on the worker) when one is due.
    pub fn tick(&mut self, shared: &mut Shared) {
        let Some(store) = &self.store else {
            return;
        };
        let s = &shared.settings;
        let interval = s.autosave_interval();
        let run = &shared.run;
        let has_model = run.info.is_some()
            && !matches!(
                run.status,
                Status::Preparing | Status::Crashed | Status::Idle
            );
        if !s.autosave
            || !has_model
            || run.step == 0
            || self.last_step == Some(run.step)
            || self.last_save.elapsed() < interval
        {
            return;
        }
        let path = store.path_for(run.step);
        self.last_step = Some(run.step);
        self.last_save = Instant::now();
        shared.push(AppCommand::Worker(Command::Save(path)));
    }

    /// An autosave was written: keep only the newest few.
    pub fn on_saved(&mut self, step: u64, keep: usize) {
        self.last_written = Some((step, Instant::now()));
        if let Some(store) = &self.store {
            store.prune(keep);
        }
    }

    /// The training thread crashed: offer the newest autosave of this session, if any.
    pub fn offer_after_crash(&mut self) {
        let Some(store) = &self.store else {
            return;
        };
        if self.last_written.is_some() {
            self.offer = newest_offer(store, "The");
        }
    }

    /// The restore offer, if there is one; returns the checkpoint to load when accepted.
    pub fn offer_ui(&mut self, ui: &mut egui::Ui) -> Option<PathBuf> {
        let (why, entry) = self.offer.as_ref()?;
        let mut chosen = None;
        let mut dismiss = false;
        egui::Frame::new()
            .fill(egui::Color32::from_rgb(30, 60, 90))
            .inner_margin(6.0)
            .corner_radius(4.0)
            .show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    ui.colored_label(egui::Color32::WHITE, why);
                    if ui.button("Restore autosave").clicked() {
                        chosen = Some(entry.path.clone());
                    }
                    if ui.small_button("Dismiss").clicked() {
                        dismiss = true;
                    }
                });
            });
        if chosen.is_some() || dismiss {
            self.offer = None;
        }
        chosen
    }

    /// Autosave settings (left panel).
    pub fn settings_ui(&self, ui: &mut egui::Ui, settings: &mut Settings) {
        egui::CollapsingHeader::new("Autosave")
            .id_salt("autosave")
            .show(ui, |ui| {
                let Some(dir) = self.dir() else {
                    ui.weak("autosave is not available in this session");
                    return;
                };
                ui.checkbox(&mut settings.autosave, "autosave while training");
                ui.add_enabled_ui(settings.autosave, |ui| {
                    ui.horizontal(|ui| {
                        let l = ui.label("every");
                        ui.add(
                            egui::DragValue::new(&mut settings.autosave_minutes)
                                .range(super::settings::AUTOSAVE_MINUTES)
                                .speed(0.5)
                                .suffix(" min"),
                        )
                        .labelled_by(l.id);
                    });
                    ui.horizontal(|ui| {
                        let l = ui.label("keep the last");
                        ui.add(
                            egui::DragValue::new(&mut settings.autosave_keep)
                                .range(super::settings::AUTOSAVE_KEEP),
                        )
                        .labelled_by(l.id);
                    });
                });
                ui.label(
                    egui::RichText::new(dir.display().to_string())
                        .small()
                        .weak(),
                );
                if let Some((step, at)) = self.last_written {
                    ui.weak(format!(
                        "last autosave: step {step}, {} ago",
                        ago(at.elapsed().as_secs())
                    ));
                }
            });
    }

    /// This session ends cleanly: no restore offer at the next start.
    pub fn close(&self) {
        if let Some(s) = &self.store {
            s.close();
        }
    }
}
