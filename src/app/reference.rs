//! A second run opened beside the live one to compare with (β = 1 against β = 4, one
//! learning rate against another): its curves overlay the Training view's plots, its sample
//! history sits beside the live grid at the cursor's step, and the explorer decodes the same
//! latent through it. The checkpoint is read and its networks built on a helper thread; the
//! model goes to a decoder thread of its own, so the UI never holds a tensor.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use crate::infer::Inference;
use crate::run::MetricsHistory;
use crate::timeline::Timeline;
use crate::worker::decoder::DecoderHandle;
use crate::worker::Waker;

/// The opened reference run: plain data, and a decoder thread holding its model.
pub struct Reference {
    /// The file's name (the legend names the run by it).
    pub name: String,
    pub path: PathBuf,
    /// Model and hyperparameters, e.g. "VAE 784-400-20 · β 4 · lr 1e-3".
    pub describe: String,
    pub latent_dim: usize,
    /// Conditional models' class count.
    pub classes: Option<usize>,
    pub history: MetricsHistory,
    pub timeline: Timeline,
    pub step: u64,
    pub decoder: DecoderHandle,
}

/// What the loading thread sends back.
struct Loaded {
    path: PathBuf,
    describe: String,
    latent_dim: usize,
    classes: Option<usize>,
    history: MetricsHistory,
    timeline: Timeline,
    step: u64,
    model: Arc<Inference>,
}

/// A reference run being read.
pub struct Loading {
    rx: Receiver<Result<Loaded, String>>,
    pub path: PathBuf,
}

/// Start reading `path` (a `.llck` or `.safetensors`) on a helper thread.
pub fn load(path: &Path, waker: Option<Waker>) -> Loading {
    let (tx, rx) = mpsc::sync_channel(1);
    let failed = tx.clone();
    let p = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("latent-lab-reference".into())
        .spawn(move || {
            let r = read(&p).map_err(|e| format!("reference run {}: {e}", p.display()));
            let _ = tx.send(r);
            if let Some(w) = waker {
                w();
            }
        });
    if let Err(e) = spawned {
        let _ = failed.send(Err(format!(
            "could not start reading the reference run: {e}"
        )));
    }
    Loading {
        rx,
        path: path.to_path_buf(),
    }
}

fn read(path: &Path) -> anyhow::Result<Loaded> {
    let ckpt = crate::import::open(path)?;
    let h = &ckpt.header;
    let model = Inference::from_checkpoint_on_cpu(&ckpt)?;
    let mut describe = format!("{} · lr {:.0e}", h.model.describe(), h.train.learning_rate);
    if h.model.capabilities().beta {
        describe.push_str(&format!(" · β {}", h.train.beta));
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        describe,
        latent_dim: h.model.latent_dim(),
        classes: h.model.classes(),
        history: h.history.clone(),
        timeline: ckpt.timeline()?,
        step: h.step,
        model: Arc::new(model),
    })
}

impl Loading {
    /// The reference run once it is read: `Some(Ok)` with its own decoder thread started.
    pub fn poll(&self, waker: Option<Waker>) -> Option<Result<Reference, String>> {
        let loaded = match self.rx.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => {
                return Some(Err("reading the reference run stopped unexpectedly".into()))
            }
        };
        Some(loaded.and_then(|l| {
            let decoder = DecoderHandle::spawn_named("latent-lab-ref-decoder", false, waker)
                .map_err(|e| format!("could not start the reference decoder: {e}"))?;
            decoder.set_model(Some(l.model));
            let name = l
                .path
                .file_name()
                .map_or_else(|| "reference".into(), |n| n.to_string_lossy().into_owned());
            Ok(Reference {
                name,
                path: l.path,
                describe: l.describe,
                latent_dim: l.latent_dim,
                classes: l.classes,
                history: l.history,
                timeline: l.timeline,
                step: l.step,
                decoder,
            })
        }))
    }
}
