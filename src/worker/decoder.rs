//! The decoder thread: decodes and encodes on a frozen CPU copy of the model
//! ([`Inference`] from [`super::Event::Snapshot`]), never on the training device.
//!
//! Each view owns a [`Slot`]; a newer request replaces a pending one in the same slot
//! (latest request wins), so dragging a slider never builds a queue.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::Waker;
use crate::explore::{self, Directions, Projection};
use crate::images::ImageBatch;
use crate::infer::Inference;

/// Who asked; one pending request per slot. Lower slots are served first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// The latent explorer's single image (the slider path).
    Explorer,
    /// An image (dataset thumbnail or dropped file) to encode into the explorer.
    EncodeImage,
    Interpolation,
    Manifold,
    /// The test set, encoded for the scatter plot.
    EncodeSet,
    /// The explorer's latent in every class (conditional models: "same style, every class").
    ClassStrip,
    /// The directions view's image (the explorer's latent).
    Directions,
    /// The traversal grid.
    Traversal,
    /// Principal directions of the model ([`Job::Directions`], analysis thread).
    PrincipalDirections,
    /// A 2-D projection of the encoded test set ([`Job::Project`], analysis thread).
    Projection,
    /// The explorer's latent through the reference run's model (its own decoder thread).
    Reference,
}

#[derive(Clone, Debug)]
pub enum Job {
    /// `n × latent_dim` latents → images.
    Decode(Vec<f32>),
    /// `n × latent_dim` latents with a class label each → images (conditional models).
    DecodeLabelled { latents: Vec<f32>, labels: Vec<u32> },
    /// `n × pixels` images in [0, 1] → posterior means and log-variances.
    Encode(Vec<f32>),
    /// [`Job::Encode`] with each image's class label (conditional models).
    EncodeLabelled { images: Vec<f32>, labels: Vec<u32> },
    /// The top `k` principal directions: PCA of `means` (`n × latent_dim` encoder means of
    /// a VAE), or GANSpace over `samples` latents of `seed` when `means` is empty.
    Directions {
        means: Vec<f32>,
        k: usize,
        samples: usize,
        seed: u64,
    },
    /// A 2-D projection of `points` (`n × dim`), reporting to `progress`.
    Project {
        points: Vec<f32>,
        dim: usize,
        method: Projection,
        progress: Arc<Progress>,
    },
}

impl Job {
    /// Analyses take seconds: they run on the analysis thread, not behind a slider's decode.
    pub fn is_analysis(&self) -> bool {
        matches!(self, Job::Directions { .. } | Job::Project { .. })
    }
}

/// The analysis threads: one for principal directions (milliseconds to a second), one for
/// projections (a t-SNE takes seconds), so that new directions never wait behind a t-SNE.
/// Both at training priority (nice 10, their pools too), so that the UI, the decoder and
/// (equally) training keep their share of the CPU while they compute.
pub struct AnalysisThreads {
    directions: DecoderHandle,
    projections: DecoderHandle,
}

impl AnalysisThreads {
    pub fn spawn(waker: Option<Waker>) -> std::io::Result<Self> {
        Ok(Self {
            directions: DecoderHandle::spawn_named("latent-lab-analysis", true, waker.clone())?,
            projections: DecoderHandle::spawn_named("latent-lab-projection", true, waker)?,
        })
    }

    pub fn set_model(&self, model: Option<Arc<Inference>>) {
        self.directions.set_model(model.clone());
        self.projections.set_model(model);
    }

    /// Queue an analysis job ([`Job::is_analysis`]) on its thread.
    pub fn request(&self, slot: Slot, job: Job) {
        match job {
            Job::Project { .. } => self.projections.request(slot, job),
            _ => self.directions.request(slot, job),
        }
    }

    pub fn try_recv(&self) -> Option<Output> {
        self.directions
            .try_recv()
            .or_else(|| self.projections.try_recv())
    }
}

/// How far a long job is, and a way to stop it.
#[derive(Debug, Default)]
pub struct Progress {
    permille: AtomicU32,
    cancelled: AtomicBool,
}

impl Progress {
    /// Done so far, in [0, 1].
    pub fn fraction(&self) -> f32 {
        self.permille.load(Ordering::Relaxed) as f32 / 1000.0
    }

    /// Ask the job to stop (its slot then answers [`Output::Failed`] with "cancelled").
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    fn report(&self, f: f32) -> bool {
        self.permille
            .store((f.clamp(0.0, 1.0) * 1000.0) as u32, Ordering::Relaxed);
        !self.cancelled.load(Ordering::Relaxed)
    }
}

/// What an analysis job found.
#[derive(Clone, Debug)]
pub enum Analysed {
    Directions(Directions),
    /// One `[x, y]` per point.
    Projection(Vec<[f32; 2]>),
}

#[derive(Debug)]
pub enum Output {
    Decoded {
        slot: Slot,
        images: ImageBatch,
        /// From the request to the decoded pixels.
        latency_secs: f64,
        /// Training step of the weights used.
        model_step: u64,
    },
    Encoded {
        slot: Slot,
        mu: Vec<f32>,
        logvar: Vec<f32>,
        latency_secs: f64,
        /// Training step of the weights used.
        model_step: u64,
    },
    Analysed {
        slot: Slot,
        result: Analysed,
        /// From the request to the result (waiting behind other analyses included).
        latency_secs: f64,
        /// The computation alone.
        compute_secs: f64,
        model_step: u64,
    },
    Failed {
        slot: Slot,
        message: String,
    },
}

impl Output {
    pub fn slot(&self) -> Slot {
        match self {
            Output::Decoded { slot, .. }
            | Output::Encoded { slot, .. }
            | Output::Analysed { slot, .. }
            | Output::Failed { slot, .. } => *slot,
        }
    }
}

#[derive(Default)]
struct Shared {
    model: Option<Arc<Inference>>,
    pending: BTreeMap<Slot, (Job, Instant)>,
    shutdown: bool,
}

pub struct DecoderHandle {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    results: Receiver<Output>,
    thread: Option<JoinHandle<()>>,
}

impl DecoderHandle {
    /// The decoder thread of the sliders and views.
    pub fn spawn(waker: Option<Waker>) -> std::io::Result<Self> {
        Self::spawn_named("latent-lab-decoder", false, waker)
    }

    pub fn spawn_named(
        name: &'static str,
        low: bool,
        waker: Option<Waker>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let (tx, rx) = mpsc::sync_channel(64);
        let s = shared.clone();
        let pool_name = format!("{name}-pool");
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if low {
                    crate::backend::lower_thread_priority();
                }
                decoder_loop(s, tx, waker, pool_name, low)
            })?;
        Ok(Self {
            shared,
            results: rx,
            thread: Some(thread),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut g);
        cv.notify_one();
        r
    }

    /// Use these weights from now on (requests already pending use them too).
    pub fn set_model(&self, model: Option<Arc<Inference>>) {
        self.with(|s| s.model = model);
    }

    pub fn has_model(&self) -> bool {
        self.with(|s| s.model.is_some())
    }

    /// Queue `job` for `slot`, replacing any request still pending there.
    pub fn request(&self, slot: Slot, job: Job) {
        self.with(|s| {
            s.pending.insert(slot, (job, Instant::now()));
        });
    }

    pub fn try_recv(&self) -> Option<Output> {
        self.results.try_recv().ok()
    }

    /// Wait for the next output (tests and benchmarks).
    pub fn recv_timeout(&self, t: std::time::Duration) -> Option<Output> {
        self.results.recv_timeout(t).ok()
    }
}

impl Drop for DecoderHandle {
    fn drop(&mut self) {
        self.with(|s| s.shutdown = true);
        while self.results.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn decoder_loop(
    shared: Arc<(Mutex<Shared>, Condvar)>,
    tx: SyncSender<Output>,
    waker: Option<Waker>,
    pool_name: String,
    low: bool,
) {
    let (lock, cv) = &*shared;
    // burn's CPU backend runs its kernels on rayon. On the global pool, a decode queues
    // behind the training thread's kernels (measured: ~100 ms per slider move while
    // training); a pool of our own keeps it to the decode's own cost.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(move |i| format!("{pool_name}-{i}"))
        .start_handler(move |_| {
            if low {
                crate::backend::lower_thread_priority();
            }
        })
        .build()
        .ok();
    loop {
        let (slot, job, asked, model) = {
            let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if g.shutdown {
                    return;
                }
                if g.model.is_some() {
                    if let Some((&slot, _)) = g.pending.iter().next() {
                        let (job, asked) = g.pending.remove(&slot).expect("slot present");
                        let model = g.model.clone().expect("model present");
                        break (slot, job, asked, model);
                    }
                }
                g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
            }
        };
        let started = Instant::now();
        let decoded = |r: Result<ImageBatch, crate::error::TrainError>| match r {
            Ok(images) => Output::Decoded {
                slot,
                images,
                latency_secs: asked.elapsed().as_secs_f64(),
                model_step: model.step,
            },
            Err(e) => Output::Failed {
                slot,
                message: e.to_string(),
            },
        };
        let encoded = |r: Result<(Vec<f32>, Vec<f32>), crate::error::TrainError>| match r {
            Ok((mu, logvar)) => Output::Encoded {
                slot,
                mu,
                logvar,
                latency_secs: asked.elapsed().as_secs_f64(),
                model_step: model.step,
            },
            Err(e) => Output::Failed {
                slot,
                message: e.to_string(),
            },
        };
        let analysed = |r: Result<Analysed, crate::error::TrainError>| match r {
            Ok(result) => Output::Analysed {
                slot,
                result,
                latency_secs: asked.elapsed().as_secs_f64(),
                compute_secs: started.elapsed().as_secs_f64(),
                model_step: model.step,
            },
            Err(e) => Output::Failed {
                slot,
                message: e.to_string(),
            },
        };
        let work = || match &job {
            Job::Decode(z) => decoded(model.decode(z)),
            Job::DecodeLabelled { latents, labels } => {
                decoded(model.decode_labelled(latents, labels))
            }
            Job::Encode(x) => encoded(model.encode(x)),
            Job::EncodeLabelled { images, labels } => {
                encoded(model.encode_labelled(images, labels))
            }
            Job::Directions {
                means,
                k,
                samples,
                seed,
            } => {
                let d = model.latent_dim();
                let r = if means.is_empty() {
                    explore::gan_space(&model, *k, *samples, *seed)
                } else {
                    let n = means.len() / d.max(1);
                    Ok(explore::directions_of_means(means, n, d, *k))
                };
                analysed(r.map(Analysed::Directions))
            }
            Job::Project {
                points,
                dim,
                method,
                progress,
            } => {
                let n = points.len() / (*dim).max(1);
                let mut report = |f: f32| progress.report(f);
                match explore::project(points, n, *dim, *method, 0, &mut report) {
                    Some(p) => analysed(Ok(Analysed::Projection(p))),
                    None => Output::Failed {
                        slot,
                        message: "cancelled".into(),
                    },
                }
            }
        };
        // A decode the plain-Rust path handles runs right here: handing it to a pool thread
        // would add a wake-up (milliseconds when training keeps the cores busy).
        let direct = matches!(&job, Job::Decode(z) if model.decodes_without_backend(z.len()));
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &pool {
            Some(p) if !direct => p.install(work),
            _ => work(),
        }))
        .unwrap_or_else(|_| Output::Failed {
            slot,
            message: "the decoder hit an internal error".into(),
        });
        if tx.send(out).is_err() {
            return;
        }
        if let Some(w) = &waker {
            w();
        }
    }
}
