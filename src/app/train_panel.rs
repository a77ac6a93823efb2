//! Left panel: model, hyperparameters, dataset, backend and the run buttons.

use super::files::FileAction;
use super::settings;
use super::{AppCommand, Panel, Shared, Status};
use crate::backend::BackendChoice;
use crate::data::DataSource;
use crate::model::{ModelKind, ModelOverrides};
use crate::worker::{Command, TrainRequest};

#[derive(Default)]
pub struct TrainPanel {
    hidden_error: Option<String>,
}

impl TrainPanel {
    /// Build the request from the settings; `None` (with the reason shown) when invalid.
    fn request(&mut self, shared: &mut Shared) -> Option<TrainRequest> {
        let s = &shared.settings;
        let hidden = match s.hidden_widths() {
            Ok(h) => h,
            Err(e) => {
                self.hidden_error = Some(e);
                return None;
            }
        };
        let config = s.train_config();
        if let Err(e) = config.validate() {
            shared.run.errors.push(e.to_string());
            return None;
        }
        Some(TrainRequest {
            kind: s.model,
            overrides: ModelOverrides {
                latent_dim: s.latent_dim,
                hidden,
                ..Default::default()
            },
            data: s.data.clone(),
            config,
            backend: s.backend,
        })
    }

    /// Ask for a fresh model with the current settings; `train` also starts training.
    pub fn start_new(&mut self, shared: &mut Shared, train: bool) {
        if let Some(req) = self.request(shared) {
            shared.push(AppCommand::StartRun {
                request: Box::new(req),
                train,
            });
        }
    }

    /// Send learning-rate, β and epoch changes the running session does not have yet
    /// ([`AppCommand::ApplyHyperparameters`]; the divergence banner's "lower the learning
    /// rate" queues it too).
    pub fn apply_changes(shared: &mut Shared) {
        let Some(cfg) = shared.run.config.clone() else {
            return;
        };
        let s = shared.settings.clone();
        let is_vae = shared.run.capabilities().beta;
        let mut cmds = Vec::new();
        let mut marks = Vec::new();
        if cfg.learning_rate != s.learning_rate {
            cmds.push(Command::SetLearningRate(s.learning_rate));
            marks.push(format!("lr = {:.2e}", s.learning_rate));
        }
        if cfg.beta != s.beta && is_vae {
            cmds.push(Command::SetBeta(s.beta));
            marks.push(format!("β = {}", s.beta));
        }
        if cfg.epochs != s.epochs {
            cmds.push(Command::SetEpochs(s.epochs));
        }
        for c in cmds {
            shared.send(c);
        }
        // The session marks its own history the same way; mirror it on the live plot.
        let step = shared.run.step;
        for text in marks {
            shared
                .run
                .history
                .markers
                .push(crate::train::metrics::Marker { step, text });
        }
        // Until the worker confirms, treat the request as the run's value (no repeats).
        if let Some(c) = shared.run.config.as_mut() {
            c.learning_rate = s.learning_rate;
            c.epochs = s.epochs;
            if is_vae {
                c.beta = s.beta;
            }
        }
    }
}

impl Panel for TrainPanel {
    fn id(&self) -> &'static str {
        "controls"
    }

    fn title(&self) -> &'static str {
        "Controls"
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let status = shared.run.status;
        let has_run = shared.run.info.is_some();
        let running = status == Status::Running;
        // Architecture and data are fixed once a run exists; Reset starts over.
        let editable = !has_run || matches!(status, Status::Idle | Status::Crashed);

        ui.heading("Model");
        ui.add_enabled_ui(editable, |ui| {
            let mut kind = shared.settings.model;
            egui::ComboBox::from_label("model family")
                .selected_text(kind.name())
                .show_ui(ui, |ui| {
                    for k in ModelKind::all() {
                        ui.selectable_value(&mut kind, k, k.name());
                    }
                });
            if kind != shared.settings.model {
                shared.settings.set_model(kind);
            }
            ui.horizontal(|ui| {
                let mut custom = shared.settings.latent_dim.is_some();
                ui.checkbox(&mut custom, "latent dim");
                if custom {
                    let mut d = shared.settings.latent_dim.unwrap_or(20);
                    ui.add(egui::DragValue::new(&mut d).range(1..=512));
                    shared.settings.latent_dim = Some(d);
                } else {
                    shared.settings.latent_dim = None;
                    ui.weak("preset");
                }
            });
            ui.horizontal(|ui| {
                ui.label("hidden");
                let r = ui.add(
                    egui::TextEdit::singleline(&mut shared.settings.hidden)
                        .hint_text("preset, e.g. 400 or 128,64")
                        .desired_width(120.0),
                );
                if r.changed() {
                    self.hidden_error = shared.settings.hidden_widths().err();
                }
            });
            if let Some(e) = &self.hidden_error {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
        });

        ui.separator();
        ui.heading("Hyperparameters");
        egui::Grid::new("hyper").num_columns(2).show(ui, |ui| {
            let l = ui.label("learning rate");
            let lr = ui
                .add(
                    // Wide enough for any rate a loaded checkpoint may carry: a narrower
                    // range would clamp it, and the clamped value would be sent as a change.
                    egui::DragValue::new(&mut shared.settings.learning_rate)
                        .range(settings::LEARNING_RATE)
                        .speed(1e-5)
                        .custom_formatter(|v, _| format!("{v:.1e}")),
                )
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("β (KL weight)");
            let beta = ui
                .add_enabled(
                    shared.settings.model.capabilities().beta,
                    egui::DragValue::new(&mut shared.settings.beta)
                        .range(settings::BETA)
                        .speed(0.01),
                )
                .labelled_by(l.id);
            ui.end_row();
            let vae = shared.settings.model.capabilities().beta;
            let l = ui
                .add_enabled(editable && vae, egui::Label::new("KL warm-up steps"))
                .on_hover_text(
                    "β rises from 0 over this many steps at the start of a new run (0: off)",
                );
            ui.add_enabled(
                editable && vae,
                egui::DragValue::new(&mut shared.settings.kl_warmup).range(settings::KL_WARMUP),
            )
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.add_enabled(editable, egui::Label::new("batch size"));
            ui.add_enabled(
                editable,
                egui::DragValue::new(&mut shared.settings.batch_size).range(settings::BATCH_SIZE),
            )
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("epochs");
            let epochs = ui
                .add(egui::DragValue::new(&mut shared.settings.epochs).range(settings::EPOCHS))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.add_enabled(editable, egui::Label::new("seed"));
            ui.add_enabled(editable, egui::DragValue::new(&mut shared.settings.seed))
                .labelled_by(l.id);
            ui.end_row();
            // Mid-run changes apply from the next step once the edit is finished
            // (not while a value is being dragged or typed).
            let editing = [&lr, &beta, &epochs]
                .iter()
                .any(|r| r.dragged() || r.has_focus());
            if has_run && !editing {
                // A no-op when nothing changed.
                shared.push(AppCommand::ApplyHyperparameters);
            }
        });

        ui.separator();
        ui.heading("Data");
        ui.add_enabled_ui(editable, |ui| {
            let d = &mut shared.settings.data;
            if ui
                .radio(matches!(d, DataSource::Mnist), "Built-in MNIST")
                .clicked()
            {
                *d = DataSource::Mnist;
            }
            if ui
                .radio(
                    matches!(d, DataSource::Shapes { .. }),
                    "Shapes (procedural)",
                )
                .clicked()
            {
                *d = DataSource::Shapes {
                    count: crate::data::DEFAULT_SHAPES_COUNT,
                    size: 28,
                    seed: 0,
                };
            }
            if let DataSource::Shapes { size, .. } = &*d {
                ui.label(format!("shapes, {size}×{size} px"));
            }
            if let DataSource::Idx { images: path, .. } | DataSource::Folder { path, .. } = &*d {
                ui.label(format!("file: {}", d.describe()))
                    .on_hover_text(path.display().to_string());
                if !path.exists() {
                    ui.colored_label(
                        ui.visuals().error_fg_color,
                        format!(
                            "{} cannot be reached any more (moved or deleted?)",
                            path.display()
                        ),
                    );
                }
            }
            ui.horizontal(|ui| {
                if ui.button("Open IDX file…").clicked() {
                    shared.push(AppCommand::ChoosePath(FileAction::OpenIdx));
                }
                if ui.button("Open image folder…").clicked() {
                    shared.push(AppCommand::ChoosePath(FileAction::OpenFolder));
                }
            });
        });

        ui.separator();
        ui.heading("Backend");
        ui.add_enabled_ui(editable, |ui| {
            ui.horizontal(|ui| {
                let b = &mut shared.settings.backend;
                ui.selectable_value(b, BackendChoice::Auto, "auto");
                ui.selectable_value(b, BackendChoice::Wgpu, "GPU (wgpu)");
                ui.selectable_value(b, BackendChoice::Cpu, "CPU");
            });
        });
        if let Some(info) = &shared.run.info {
            ui.label(egui::RichText::new(&info.backend).small());
        }

        ui.separator();
        ui.horizontal_wrapped(|ui| {
            let idle = matches!(status, Status::Idle | Status::Crashed);
            let startable = idle || status == Status::Finished && !has_run;
            if startable || !has_run {
                if ui.button("Train").clicked() {
                    self.start_new(shared, true);
                }
            } else if running {
                if ui.button("Pause").clicked() {
                    shared.push(AppCommand::Worker(Command::Pause));
                }
            } else {
                let label = if status == Status::Ready {
                    "Train"
                } else {
                    "Resume"
                };
                if ui
                    .add_enabled(status != Status::Preparing, egui::Button::new(label))
                    .clicked()
                {
                    shared.run.errors.clear();
                    shared.push(AppCommand::Worker(Command::Train));
                }
            }
            if ui
                .add_enabled(has_run && !running && !idle, egui::Button::new("Step"))
                .on_hover_text("run one optimiser step")
                .clicked()
            {
                shared.push(AppCommand::Worker(Command::Step(1)));
            }
            if ui
                .add_enabled(has_run && !idle, egui::Button::new("Stop"))
                .clicked()
            {
                shared.push(AppCommand::Worker(Command::Stop));
            }
            if ui
                .button("Reset")
                .on_hover_text("discard this run and start a fresh model with these settings")
                .clicked()
            {
                self.start_new(shared, false);
            }
        });
        ui.label(format!("status: {}", status.label()));
    }
}
