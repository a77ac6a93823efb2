//! What the app remembers between runs (eframe persistence). New fields get defaults so
//! settings written by older versions still load.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::data::DataSource;
use crate::model::ModelKind;
use crate::train::TrainConfig;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Colormap {
    #[default]
    Gray,
    Viridis,
    Magma,
}

impl Colormap {
    pub const ALL: [Colormap; 3] = [Colormap::Gray, Colormap::Viridis, Colormap::Magma];
    pub fn name(self) -> &'static str {
        match self {
            Colormap::Gray => "gray",
            Colormap::Viridis => "viridis",
            Colormap::Magma => "magma",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub model: ModelKind,
    /// `None`: the preset's own latent size.
    pub latent_dim: Option<usize>,
    /// Comma-separated hidden widths; empty: the preset's.
    pub hidden: String,
    pub learning_rate: f64,
    pub beta: f64,
    /// KL warm-up steps of a new VAE run (0: none).
    pub kl_warmup: u64,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    pub data: DataSource,
    pub backend: BackendChoice,
    pub recent: Vec<PathBuf>,
    pub colormap: Colormap,
    pub log_scale: bool,
    pub sort_by_kl: bool,
    /// The scatter's axes: a projection, or `None` for two raw dimensions.
    pub scatter_projection: Option<crate::explore::Projection>,
    /// Autosave checkpoints while training (see `app::recovery`).
    pub autosave: bool,
    pub autosave_minutes: f64,
    /// Autosaves kept (older ones are deleted).
    pub autosave_keep: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let t = TrainConfig::for_kind(ModelKind::default());
        Self {
            model: ModelKind::default(),
            latent_dim: None,
            hidden: String::new(),
            learning_rate: t.learning_rate,
            beta: t.beta,
            kl_warmup: 0,
            batch_size: t.batch_size,
            epochs: t.epochs,
            seed: 0,
            data: DataSource::Mnist,
            backend: BackendChoice::Auto,
            recent: Vec::new(),
            colormap: Colormap::Gray,
            log_scale: false,
            sort_by_kl: true,
            scatter_projection: None,
            autosave: true,
            autosave_minutes: 5.0,
            autosave_keep: 3,
        }
    }
}

/// What the controls allow (the same ranges as their drag values).
pub const LEARNING_RATE: std::ops::RangeInclusive<f64> = 1e-8..=1e4;
pub const BETA: std::ops::RangeInclusive<f64> = 0.0..=1e4;
pub const KL_WARMUP: std::ops::RangeInclusive<u64> = 0..=10_000_000;
pub const BATCH_SIZE: std::ops::RangeInclusive<usize> = 1..=65_536;
pub const EPOCHS: std::ops::RangeInclusive<usize> = 1..=1_000_000;
pub const AUTOSAVE_MINUTES: std::ops::RangeInclusive<f64> = 0.5..=240.0;
pub const AUTOSAVE_KEEP: std::ops::RangeInclusive<usize> = 1..=50;
/// Entries of the recent-files menu.
pub const RECENT: usize = 8;
/// Longest hidden-widths text kept from a settings file.
const MAX_HIDDEN_TEXT: usize = 256;

/// `v` inside `range`, or `fallback` when it is not a number.
fn clamp_f64(v: f64, range: &std::ops::RangeInclusive<f64>, fallback: f64) -> f64 {
    if v.is_nan() {
        fallback
    } else {
        v.clamp(*range.start(), *range.end())
    }
}

impl Settings {
    /// The settings with every value inside what the controls allow: a settings file edited
    /// by hand, written by another version or damaged must not start the app with values no
    /// control can produce (an infinite autosave interval, a zero batch size).
    pub fn sanitized(mut self) -> Self {
        let d = Settings::default();
        self.learning_rate = clamp_f64(self.learning_rate, &LEARNING_RATE, d.learning_rate);
        self.beta = clamp_f64(self.beta, &BETA, d.beta);
        self.autosave_minutes =
            clamp_f64(self.autosave_minutes, &AUTOSAVE_MINUTES, d.autosave_minutes);
        self.kl_warmup = self.kl_warmup.clamp(*KL_WARMUP.start(), *KL_WARMUP.end());
        self.batch_size = self
            .batch_size
            .clamp(*BATCH_SIZE.start(), *BATCH_SIZE.end());
        self.epochs = self.epochs.clamp(*EPOCHS.start(), *EPOCHS.end());
        self.autosave_keep = self
            .autosave_keep
            .clamp(*AUTOSAVE_KEEP.start(), *AUTOSAVE_KEEP.end());
        self.recent.truncate(RECENT);
        if self.hidden.len() > MAX_HIDDEN_TEXT {
            self.hidden.clear();
        }
        self
    }

    /// Settings from the RON text eframe's storage keeps under the app's key (`None` when it
    /// does not parse: the app starts with the defaults), sanitised.
    pub fn from_ron(text: &str) -> Option<Self> {
        ron::from_str::<Settings>(text)
            .ok()
            .map(Settings::sanitized)
    }

    /// How often autosave writes.
    /// Never past the controls' range; below it only where a test sets a fraction of a
    /// second; a value that is not a number gives the default interval.
    pub fn autosave_interval(&self) -> std::time::Duration {
        let secs = (self.autosave_minutes * 60.0).clamp(0.01, AUTOSAVE_MINUTES.end() * 60.0);
        std::time::Duration::try_from_secs_f64(secs).unwrap_or_else(|_| {
            std::time::Duration::from_secs_f64(Settings::default().autosave_minutes * 60.0)
        })
    }

    /// The training configuration of a new run with these settings (not yet validated).
    pub fn train_config(&self) -> TrainConfig {
        let mut config = TrainConfig::for_kind(self.model);
        config.learning_rate = self.learning_rate;
        config.beta = self.beta;
        if self.model.capabilities().beta {
            config.kl_warmup_steps = self.kl_warmup;
        }
        config.batch_size = self.batch_size;
        config.epochs = self.epochs;
        config.seed = self.seed;
        config
    }

    /// Remember `path` at the top of the recent-files list.
    pub fn add_recent(&mut self, path: PathBuf) {
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(RECENT);
    }

    /// Switch model preset, resetting the optimiser defaults of that family.
    pub fn set_model(&mut self, kind: ModelKind) {
        if kind.objective().name != self.model.objective().name {
            let t = TrainConfig::for_kind(kind);
            self.learning_rate = t.learning_rate;
        }
        self.model = kind;
        self.latent_dim = None;
        self.hidden.clear();
    }

    /// Parsed hidden widths, or an error message for the UI.
    pub fn hidden_widths(&self) -> Result<Option<Vec<usize>>, String> {
        let s = self.hidden.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.split(',')
            .map(|w| {
                w.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("'{w}' is not a width"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
