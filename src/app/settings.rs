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

impl Settings {
    /// Remember `path` at the top of the recent-files list.
    pub fn add_recent(&mut self, path: PathBuf) {
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(8);
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
