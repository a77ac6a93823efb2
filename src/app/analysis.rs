//! The latent analyses the views share — the encoded test set, the principal directions and
//! the 2-D projections — cached per model snapshot and computed off the UI thread: encodes on
//! the decoder thread, directions and projections on their analysis threads (`AnalysisThreads`).
//!
//! A view asks with `want_*` while it draws (and reads what is there); after the frame the
//! app calls [`Analysis::request`], which sends what is wanted and older than the newest
//! snapshot, one job per kind at a time. Plain data only: no tensors cross.

use std::collections::HashMap;
use std::sync::Arc;

use super::{AppCommand, Shared};
use crate::explore::{Directions, Encoded, Projection};
use crate::worker::decoder::{Analysed, Job, Output, Progress, Slot};

/// Principal directions computed per snapshot.
pub const DIRECTIONS: usize = 8;
/// Latents sampled for a GAN's directions (GANSpace).
const GAN_SAMPLES: usize = 1000;

/// A result and the snapshot it was computed from.
#[derive(Clone, Debug)]
pub struct Cached<T> {
    pub value: Arc<T>,
    /// Training step of the weights.
    pub step: u64,
    /// [`Analysis::generation`] when asked.
    generation: u64,
    /// Request to result, seconds.
    pub seconds: f64,
}

#[derive(Default)]
pub struct Analysis {
    /// Counts snapshots: a result older than this is stale.
    generation: u64,
    encoded: Option<Cached<Encoded>>,
    directions: Option<Cached<Directions>>,
    projections: HashMap<Projection, Cached<Vec<[f32; 2]>>>,
    /// Asked and not answered: slot → generation (and the projection's method and progress).
    in_flight: HashMap<Slot, u64>,
    projecting: Option<(Projection, Arc<Progress>)>,
    /// Wanted this frame.
    want_encoded: bool,
    want_directions: bool,
    want_projection: Option<Projection>,
    /// The user asked to recompute a projection with the newest weights.
    refresh_projection: bool,
    /// Seconds from request to result, and of the computation alone, of each result so far,
    /// per kind (for `--bench-ui`).
    timings: HashMap<&'static str, Vec<(f64, f64)>>,
}

/// The slots whose results belong to [`Analysis`].
pub const SLOTS: [Slot; 3] = [Slot::EncodeSet, Slot::PrincipalDirections, Slot::Projection];

impl Analysis {
    /// Forget the previous run's results.
    pub fn reset(&mut self) {
        if let Some((_, p)) = &self.projecting {
            p.cancel();
        }
        *self = Self {
            generation: self.generation + 1,
            ..Self::default()
        };
    }

    /// New weights arrived.
    pub fn on_snapshot(&mut self) {
        self.generation += 1;
    }

    /// The encoded test preview (posterior means), when a view needs it.
    pub fn want_encoded(&mut self) -> Option<&Cached<Encoded>> {
        self.want_encoded = true;
        self.encoded.as_ref()
    }

    /// The encoded test preview if it exists (without asking for it).
    pub fn encoded(&self) -> Option<&Cached<Encoded>> {
        self.encoded.as_ref()
    }

    /// The principal directions computed last (without asking for new ones).
    pub fn directions(&self) -> Option<&Cached<Directions>> {
        self.directions.as_ref()
    }

    /// The projection by `method` computed last (without asking for one).
    pub fn projection(&self, method: Projection) -> Option<&Cached<Vec<[f32; 2]>>> {
        self.projections.get(&method)
    }

    /// The principal directions of the newest weights available.
    pub fn want_directions(&mut self) -> Option<&Cached<Directions>> {
        self.want_directions = true;
        self.directions.as_ref()
    }

    /// The projection by `method` (the last computed; t-SNE is recomputed only on
    /// [`Analysis::refresh_projection`], PCA with every snapshot).
    pub fn want_projection(&mut self, method: Projection) -> Option<&Cached<Vec<[f32; 2]>>> {
        self.want_projection = Some(method);
        self.want_encoded = true;
        self.projections.get(&method)
    }

    /// Recompute the wanted projection from the newest weights.
    pub fn refresh_projection(&mut self) {
        self.refresh_projection = true;
    }

    /// The progress of a projection being computed by `method`.
    pub fn projecting(&self, method: Projection) -> Option<f32> {
        match &self.projecting {
            Some((m, p)) if *m == method => Some(p.fraction()),
            _ => None,
        }
    }

    fn stale<T>(&self, c: &Option<Cached<T>>) -> bool {
        c.as_ref().is_none_or(|c| c.generation < self.generation)
    }

    /// Send the jobs the views wanted this frame (after drawing).
    pub fn request(shared: &mut Shared) {
        let Some(info) = shared.run.info.as_ref() else {
            return;
        };
        if !shared.decoder.has_model() {
            return;
        }
        let encoder = info.spec.has_encoder();
        let a = &mut shared.analysis;
        let (want_enc, want_dir, want_proj) = (
            std::mem::take(&mut a.want_encoded) && encoder,
            std::mem::take(&mut a.want_directions),
            std::mem::take(&mut a.want_projection).filter(|_| encoder),
        );
        let generation = a.generation;
        let mut jobs = Vec::new();
        let free = |a: &Analysis, s: Slot| !a.in_flight.contains_key(&s);
        if (want_enc || (want_dir && encoder)) && a.stale(&a.encoded) && free(a, Slot::EncodeSet) {
            let pixels = info.test_preview.pixels.clone();
            jobs.push((
                Slot::EncodeSet,
                shared.encode_job(pixels, info.test_preview_labels.clone()),
            ));
        }
        let a = &mut shared.analysis;
        if want_dir && a.stale(&a.directions) && free(a, Slot::PrincipalDirections) {
            // A VAE's come from the encoded set of this generation; a GAN's from samples.
            let means = match &a.encoded {
                Some(e) if encoder && e.generation == generation => Some(e.value.mu.clone()),
                _ if encoder => None,
                _ => Some(Vec::new()),
            };
            if let Some(means) = means {
                jobs.push((
                    Slot::PrincipalDirections,
                    Job::Directions {
                        means,
                        k: DIRECTIONS,
                        samples: GAN_SAMPLES,
                        seed: 0,
                    },
                ));
            }
        }
        if let (Some(m), Some(e)) = (want_proj, &a.encoded) {
            let have = a.projections.get(&m);
            let fresh_enough = match have {
                None => false,
                // PCA follows every snapshot; t-SNE (seconds) when asked.
                Some(p) => {
                    p.generation >= e.generation || (m == Projection::Tsne && !a.refresh_projection)
                }
            };
            if !fresh_enough && free(a, Slot::Projection) && e.generation == generation {
                let progress = Arc::new(Progress::default());
                a.projecting = Some((m, progress.clone()));
                a.refresh_projection = false;
                jobs.push((
                    Slot::Projection,
                    Job::Project {
                        points: e.value.mu.clone(),
                        dim: e.value.d,
                        method: m,
                        progress,
                    },
                ));
            }
        }
        for (slot, job) in jobs {
            shared.analysis.in_flight.insert(slot, generation);
            shared.push(AppCommand::Decoder(slot, job));
        }
    }

    /// Count, mean and largest seconds of each kind of result so far.
    pub fn timings_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.timings {
            let n = v.len().max(1) as f64;
            let mean = v.iter().map(|t| t.0).sum::<f64>() / n;
            let max = v.iter().map(|t| t.0).fold(0.0, f64::max);
            let compute = v.iter().map(|t| t.1).sum::<f64>() / n;
            let compute_max = v.iter().map(|t| t.1).fold(0.0, f64::max);
            m.insert(
                (*k).into(),
                serde_json::json!({
                    "count": v.len(),
                    "mean_s": mean,
                    "max_s": max,
                    "compute_mean_s": compute,
                    "compute_max_s": compute_max,
                }),
            );
        }
        m.into()
    }

    fn timed(&mut self, kind: &'static str, seconds: f64, compute: f64) {
        let v = self.timings.entry(kind).or_default();
        if v.len() < 10_000 {
            v.push((seconds, compute));
        }
    }

    /// A result for one of [`SLOTS`]; a failure's message (other than a cancellation) comes
    /// back for the window to show.
    pub fn on_output(&mut self, out: Output, latent_dim: usize) -> Option<String> {
        let slot = out.slot();
        let generation = self.in_flight.remove(&slot).unwrap_or(self.generation);
        match out {
            Output::Encoded {
                mu,
                logvar,
                latency_secs,
                model_step,
                ..
            } => {
                let d = latent_dim.max(1);
                self.timed("encode", latency_secs, latency_secs);
                self.encoded = Some(Cached {
                    step: model_step,
                    generation,
                    seconds: latency_secs,
                    value: Arc::new(Encoded {
                        n: mu.len() / d,
                        mu,
                        logvar,
                        d,
                    }),
                });
            }
            Output::Analysed {
                result,
                latency_secs,
                compute_secs,
                model_step,
                ..
            } => match result {
                Analysed::Directions(mut dirs) => {
                    self.timed("directions", latency_secs, compute_secs);
                    // Keep each slider's meaning: same slot, same sign as before.
                    if let Some(prev) = &self.directions {
                        dirs.align_to(&prev.value);
                    }
                    self.directions = Some(Cached {
                        value: Arc::new(dirs),
                        step: model_step,
                        generation,
                        seconds: latency_secs,
                    });
                }
                Analysed::Projection(points) => {
                    if let Some((m, _)) = self.projecting.take() {
                        self.timed(m.name(), latency_secs, compute_secs);
                        self.projections.insert(
                            m,
                            Cached {
                                value: Arc::new(points),
                                step: model_step,
                                generation,
                                seconds: latency_secs,
                            },
                        );
                    }
                }
            },
            Output::Failed { message, .. } => {
                if slot == Slot::Projection {
                    self.projecting = None;
                }
                if message != "cancelled" {
                    return Some(message);
                }
            }
            Output::Decoded { .. } => {}
        }
        None
    }
}
