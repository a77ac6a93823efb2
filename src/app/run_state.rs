//! What the UI knows about the current run: plain data built from worker events.

use std::time::{Duration, Instant};

use crate::images::ImageBatch;
use crate::timeline::Timeline;
use crate::train::metrics::{MetricPoint, MetricsHistory};
use crate::train::TrainConfig;
use crate::worker::{Event, RunInfo};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No run: nothing started or loaded.
    Idle,
    /// Data loading / model building on the worker.
    Preparing,
    Ready,
    Running,
    Paused,
    Finished,
    Diverged {
        step: u64,
    },
    /// The training thread hit an internal error and dropped the run.
    Crashed,
}

impl Status {
    pub fn label(self) -> String {
        match self {
            Status::Idle => "no model".into(),
            Status::Preparing => "preparing…".into(),
            Status::Ready => "ready".into(),
            Status::Running => "training".into(),
            Status::Paused => "paused".into(),
            Status::Finished => "finished".into(),
            Status::Diverged { step } => format!("diverged at step {step}"),
            Status::Crashed => "stopped by an error".into(),
        }
    }
}

pub struct RunState {
    pub status: Status,
    pub info: Option<RunInfo>,
    pub config: Option<TrainConfig>,
    pub history: MetricsHistory,
    pub step: u64,
    pub last_point: Option<MetricPoint>,
    pub samples: Option<(u64, ImageBatch)>,
    /// `[step, diversity of the samples / diversity of the test preview]` of every sample
    /// grid of this session ([`crate::health::diversity`]).
    pub sample_diversity: Vec<[f64; 2]>,
    /// The same measure of the run's test preview (real images).
    pub real_diversity: f64,
    /// `[step, label coverage]` of every sample grid (labelled data).
    pub sample_coverage: Vec<[f64; 2]>,
    pub recon: Option<(ImageBatch, ImageBatch)>,
    /// Every sample grid of the run (from the checkpoint, then from [`Event::Samples`]).
    pub timeline: Timeline,
    /// Training time of this session (excludes pauses).
    pub elapsed: Duration,
    running_since: Option<Instant>,
    /// Messages for the user, newest last.
    pub errors: Vec<String>,
    pub notices: Vec<String>,
    /// Set when a snapshot arrived since the views last asked.
    pub new_weights: bool,
}

impl Default for RunState {
    fn default() -> Self {
        Self {
            status: Status::Idle,
            info: None,
            config: None,
            history: MetricsHistory::default(),
            step: 0,
            last_point: None,
            samples: None,
            sample_diversity: Vec::new(),
            real_diversity: 0.0,
            sample_coverage: Vec::new(),
            recon: None,
            timeline: Timeline::default(),
            elapsed: Duration::ZERO,
            running_since: None,
            errors: Vec::new(),
            notices: Vec::new(),
            new_weights: false,
        }
    }
}

impl RunState {
    fn set_running(&mut self, running: bool) {
        match (running, self.running_since) {
            (true, None) => self.running_since = Some(Instant::now()),
            (false, Some(t)) => {
                self.elapsed += t.elapsed();
                self.running_since = None;
            }
            _ => {}
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.elapsed + self.running_since.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Estimated time to the configured number of epochs.
    pub fn eta(&self) -> Option<Duration> {
        let info = self.info.as_ref()?;
        let cfg = self.config.as_ref()?;
        let total = (cfg.epochs * info.batches_per_epoch) as u64;
        let ips = self.last_point.as_ref()?.images_per_sec as f64;
        if ips <= 0.0 || self.step >= total {
            return None;
        }
        let images = (total - self.step) as f64 * cfg.batch_size as f64;
        Some(Duration::from_secs_f64(images / ips))
    }

    /// What the current run's family can do (nothing without a run).
    pub fn capabilities(&self) -> crate::model::Capabilities {
        self.info
            .as_ref()
            .map_or(crate::model::Capabilities::default(), |i| {
                i.spec.capabilities()
            })
    }

    /// The KL of each latent dimension at the last test evaluation (VAEs).
    pub fn last_kl_per_dim(&self) -> Option<&[f64]> {
        match &self.history.test.last()?.report {
            crate::run::EvalReport::Vae(r) => Some(&r.kl_per_dim),
            crate::run::EvalReport::Gan(_) => None,
        }
    }

    pub fn latent_dim(&self) -> Option<usize> {
        self.info.as_ref().map(|i| i.spec.latent_dim())
    }

    /// `sample_diversity` and `sample_coverage` from the timeline's frames.
    fn record_diversity(&mut self) {
        self.sample_coverage = self.timeline.coverages();
        self.sample_diversity = self.timeline.diversity_ratios(self.real_diversity);
    }

    /// Apply one worker event. Snapshots are handled by the app (they go to the decoder).
    pub fn apply(&mut self, ev: Event) {
        match ev {
            Event::Ready(mut info) => {
                self.history = info.history.clone();
                self.step = info.step;
                self.config = Some(info.config.clone());
                self.last_point = info.history.points.last().cloned();
                self.samples = None;
                self.recon = None;
                self.elapsed = Duration::ZERO;
                self.running_since = None;
                if let Some(n) = &info.backend_notice {
                    self.notices.push(n.clone());
                }
                if let Some(m) = imported(&info.history, info.step) {
                    self.notices.push(format!(
                        "{m} ({}): fresh optimiser state, no history yet. \
                         Train trains it on; Save keeps it as a checkpoint.",
                        info.spec.describe()
                    ));
                }
                if !info.data_skipped.is_empty() {
                    self.notices.push(format!(
                        "{} unreadable file(s) skipped, e.g. {}",
                        info.data_skipped.len(),
                        info.data_skipped[0]
                    ));
                }
                self.real_diversity = crate::health::diversity(&info.test_preview);
                self.timeline = std::mem::take(&mut info.timeline);
                self.record_diversity();
                self.info = Some(*info);
                self.status = Status::Ready;
            }
            Event::Running { step } => {
                self.step = step;
                self.status = Status::Running;
                self.set_running(true);
            }
            Event::Paused { step } => {
                self.step = step;
                self.set_running(false);
                if !matches!(self.status, Status::Diverged { .. }) {
                    self.status = Status::Paused;
                }
            }
            Event::Stopped { .. } => {
                self.set_running(false);
                self.status = Status::Idle;
                self.info = None;
            }
            Event::Finished { step, .. } => {
                self.step = step;
                self.set_running(false);
                self.status = Status::Finished;
            }
            Event::Metrics(p) => {
                self.step = p.step;
                self.history.points.push(p.clone());
                self.last_point = Some(p);
            }
            Event::TestMetrics(t) => {
                self.history.test.retain(|x| x.step != t.step);
                self.history.test.push(t);
            }
            Event::Samples {
                step,
                images,
                recon,
                measures,
            } => {
                let cols = crate::train::SAMPLE_COLS;
                let pair = recon.as_ref().map(|(o, r)| (o, r));
                self.timeline.push(step, &images, cols, pair, measures);
                self.record_diversity();
                self.samples = Some((step, images));
                if recon.is_some() {
                    self.recon = recon;
                }
            }
            Event::ConfigChanged(c) => self.config = Some(c),
            Event::Diverged {
                step,
                restored_step,
                term,
            } => {
                self.set_running(false);
                self.status = Status::Diverged { step };
                self.step = restored_step;
                self.history.truncate_after(restored_step);
                self.history.markers.push(crate::train::metrics::Marker {
                    step: restored_step,
                    text: format!("diverged at step {step}"),
                });
                self.errors.push(format!(
                    "Training diverged at step {step} ({term} became NaN or infinite). Training is paused and the last good weights (step {restored_step}) are back."
                ));
            }
            Event::Saved { path, step } => {
                self.notices
                    .push(format!("saved {} (step {step})", path.display()));
            }
            // Training goes on (a save is not a step); the file on disk is as it was.
            Event::SaveFailed { message, .. } => self.errors.push(message),
            Event::Error(e) => {
                self.set_running(false);
                if matches!(self.status, Status::Running | Status::Preparing) {
                    self.status = if self.info.is_some() {
                        Status::Paused
                    } else {
                        Status::Idle
                    };
                }
                self.errors.push(e);
            }
            Event::Crashed(e) => {
                // The run is gone on the worker; its info stays so the views keep showing
                // the last snapshot, and the controls allow a new start or a load.
                self.set_running(false);
                self.status = Status::Crashed;
                self.errors.push(e);
            }
            Event::Snapshot(_) => self.new_weights = true,
        }
    }
}

/// The "imported from …" marker of a model imported at `step` and not trained since.
fn imported(history: &crate::run::MetricsHistory, step: u64) -> Option<&str> {
    history
        .markers
        .iter()
        .rev()
        .find(|m| m.step == step && m.text.starts_with("imported from"))
        .filter(|_| history.points.iter().all(|p| p.step <= step))
        .map(|m| m.text.as_str())
}
