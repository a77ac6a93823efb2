//! `latent-lab bench`: training throughput per model family and backend, decode latency on
//! the UI's decode path while a training thread runs, manifold-grid decode time, peak RSS,
//! and an optional memory soak. Results are plain data; the CLI prints them.
//!
//! Throughput is measured on the real training loop ([`Session::step`]: batching, forward,
//! backward, Adam, loss read-back every `log_every` steps) after warm-up steps, over whole
//! steps for at least the requested time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::{Backend, BackendChoice};
use crate::data::Dataset;
use crate::infer::normal_latents;
use crate::model::{ImageShape, ModelKind, ModelOverrides, ModelSpec};
use crate::train::{Session, StepOutcome, TrainConfig, TrainError};
use crate::worker::decoder::{DecoderHandle, Job, Output, Slot};
use crate::worker::{Command, Event, TrainRequest, WorkerHandle, WorkerOptions};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub models: Vec<ModelKind>,
    pub backends: Vec<BackendChoice>,
    pub batch_size: usize,
    /// Loss read-back interval (steps).
    pub log_every: u64,
    pub warmup_steps: usize,
    /// Timed training per model and backend (at least this long, whole steps).
    pub seconds: f64,
    /// Measure decode latency and the manifold grid.
    pub decode: bool,
    /// Decodes measured for the latency percentiles.
    pub decodes: usize,
    /// Train the VAE this long while sampling RSS (0: no soak).
    pub soak_seconds: f64,
    /// The training throughput's data (`None`: the built-in MNIST), e.g. a 64 px RGB folder.
    pub data: Option<crate::data::DataSource>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainResult {
    pub model: String,
    pub backend: String,
    pub batch_size: usize,
    pub steps: u64,
    pub seconds: f64,
    pub images_per_s: f64,
    /// The first step alone (kernel compilation and autotune on wgpu).
    pub first_step_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DecodeResult {
    /// One latent → one 28×28 image through the decoder thread, while the VAE trains.
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// A 16×16 manifold grid (256 latents) in one request, median of 9.
    pub grid16_ms: f64,
    /// Training throughput meanwhile (the trainer does not wait for decodes).
    pub training_images_per_s: Option<f32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakSample {
    pub seconds: f64,
    pub step: u64,
    pub rss_mb: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub version: &'static str,
    pub threads: usize,
    pub cpu: String,
    pub train: Vec<TrainResult>,
    pub decode: Option<DecodeResult>,
    pub soak: Vec<SoakSample>,
    pub peak_rss_mb: Option<f64>,
}

/// `kind` for images of `data` (its classes for the conditional families).
fn data_spec(kind: ModelKind, data: &Dataset) -> Result<ModelSpec, TrainError> {
    Ok(ModelSpec::new(
        kind,
        ImageShape::new(data.channels, data.height, data.width),
        &ModelOverrides {
            classes: data.classes(),
            ..Default::default()
        },
    )?)
}

/// Training throughput of `kind` on `backend`.
pub fn train_throughput(
    kind: ModelKind,
    backend: &Backend,
    data: &Arc<Dataset>,
    opts: &BenchOptions,
) -> Result<TrainResult, TrainError> {
    let mut config = TrainConfig::for_kind(kind);
    config.batch_size = opts.batch_size;
    config.log_every = opts.log_every;
    config.epochs = usize::MAX / 2;
    let spec = data_spec(kind, data)?;
    let mut s = Session::new(spec, config, data.clone(), backend.clone())?;
    let step = |s: &mut Session| -> Result<(), TrainError> {
        match s.step()? {
            StepOutcome::Ran { .. } => Ok(()),
            StepOutcome::Diverged { step, .. } => Err(TrainError::Invalid(format!(
                "{} diverged at step {step} during the benchmark",
                kind.name()
            ))),
        }
    };
    let t = Instant::now();
    step(&mut s)?;
    s.flush()?;
    let first_step_ms = t.elapsed().as_secs_f64() * 1e3;
    for _ in 1..opts.warmup_steps.max(1) {
        step(&mut s)?;
    }
    s.flush()?;
    let t = Instant::now();
    let mut steps = 0u64;
    while t.elapsed().as_secs_f64() < opts.seconds || steps == 0 {
        step(&mut s)?;
        steps += 1;
    }
    s.flush()?; // the last read-back is part of the work
    let seconds = t.elapsed().as_secs_f64();
    Ok(TrainResult {
        model: kind.name().to_string(),
        backend: s.describe_backend(),
        batch_size: opts.batch_size,
        steps,
        seconds,
        images_per_s: (steps as f64 * opts.batch_size as f64) / seconds,
        first_step_ms,
    })
}

/// The nearest-rank `p`-th percentile of `sorted` (ascending).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The `ps`-th percentiles of the measurements `v` (in any order).
fn percentiles<const N: usize>(mut v: Vec<f64>, ps: [f64; N]) -> [f64; N] {
    v.sort_by(f64::total_cmp);
    ps.map(|p| percentile(&v, p))
}

/// Decode latency on the app's path (decoder thread, CPU snapshot) while the VAE trains on
/// the worker thread.
pub fn decode_latency(data_backend: BackendChoice, n: usize) -> Result<DecodeResult, TrainError> {
    let worker = WorkerHandle::spawn(WorkerOptions {
        snapshot_every: Some(25),
        samples: false,
        waker: None,
        // As in the app: the decodes measured compete with training at its priority.
        low_priority: true,
    })
    .map_err(|e| TrainError::Invalid(format!("cannot start the training thread: {e}")))?;
    let mut config = TrainConfig::for_kind(ModelKind::default());
    config.epochs = 1000;
    worker.send(Command::Start(Box::new(TrainRequest {
        kind: ModelKind::default(),
        overrides: ModelOverrides::default(),
        data: crate::data::DataSource::Mnist,
        config,
        backend: data_backend,
    })))?;
    worker.send(Command::Train)?;
    let decoder = DecoderHandle::spawn(None)
        .map_err(|e| TrainError::Invalid(format!("cannot start the decoder thread: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut latest_ips = None;
    // Wait for training to run and the first snapshot.
    while !decoder.has_model() {
        match worker.recv_timeout(Duration::from_millis(100)) {
            Some(Event::Snapshot(s)) => decoder.set_model(Some(s)),
            Some(Event::Error(e) | Event::Crashed(e)) => return Err(TrainError::Invalid(e)),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(TrainError::Invalid("no snapshot from the trainer".into()));
        }
    }
    let drain = |decoder: &DecoderHandle, latest: &mut Option<f32>| {
        while let Some(ev) = worker.try_recv() {
            match ev {
                Event::Snapshot(s) => decoder.set_model(Some(s)),
                Event::Metrics(p) => *latest = Some(p.images_per_sec),
                _ => {}
            }
        }
    };
    let wait = |decoder: &DecoderHandle| -> Result<f64, TrainError> {
        match decoder.recv_timeout(Duration::from_secs(30)) {
            Some(Output::Decoded { latency_secs, .. }) => Ok(latency_secs * 1e3),
            Some(Output::Failed { message, .. }) => Err(TrainError::Invalid(message)),
            _ => Err(TrainError::Invalid("the decoder did not answer".into())),
        }
    };
    let latent = 20;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        drain(&decoder, &mut latest_ips);
        // A slider drag: one dimension moves a little each time.
        let mut z = vec![0.0f32; latent];
        z[i % latent] = ((i as f32) * 0.37).sin() * 3.0;
        decoder.request(Slot::Explorer, Job::Decode(z));
        lat.push(wait(&decoder)?);
        // Roughly one request per frame at 60 Hz would be idle most of the time; keep a
        // short gap so the trainer's kernels interleave with the decodes.
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut grid = Vec::new();
    for i in 0..9 {
        drain(&decoder, &mut latest_ips);
        let z = normal_latents(256, latent, i);
        decoder.request(Slot::Manifold, Job::Decode(z));
        grid.push(wait(&decoder)?);
    }
    drain(&decoder, &mut latest_ips);
    let _ = worker.send(Command::Stop);
    let [p50_ms, p99_ms, max_ms] = percentiles(lat, [50.0, 99.0, 100.0]);
    let [grid16_ms] = percentiles(grid, [50.0]);
    Ok(DecodeResult {
        n,
        p50_ms,
        p99_ms,
        max_ms,
        grid16_ms,
        training_images_per_s: latest_ips,
    })
}

/// Train the default VAE for `seconds`, sampling the resident set size every few seconds.
pub fn soak(
    backend: &Backend,
    data: &Arc<Dataset>,
    seconds: f64,
) -> Result<Vec<SoakSample>, TrainError> {
    let mut config = TrainConfig::for_kind(ModelKind::default());
    config.epochs = usize::MAX / 2;
    let mut s = Session::new(
        data_spec(ModelKind::default(), data)?,
        config,
        data.clone(),
        backend.clone(),
    )?;
    let t = Instant::now();
    let mut next = 0.0;
    let mut out = Vec::new();
    while t.elapsed().as_secs_f64() < seconds {
        s.step()?;
        let now = t.elapsed().as_secs_f64();
        if now >= next {
            if let Some(rss) = rss_mb() {
                out.push(SoakSample {
                    seconds: now,
                    step: s.step_count(),
                    rss_mb: rss,
                });
            }
            next = now + (seconds / 60.0).max(1.0);
        }
    }
    Ok(out)
}

fn proc_status_mb(key: &str) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resident set size now (Linux).
pub fn rss_mb() -> Option<f64> {
    proc_status_mb("VmRSS:")
}

/// Peak resident set size (Linux).
pub fn peak_rss_mb() -> Option<f64> {
    proc_status_mb("VmHWM:")
}

pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Run everything `opts` asks for. `progress` gets one line per finished measurement.
pub fn run(opts: &BenchOptions, mut progress: impl FnMut(&str)) -> Result<BenchReport, TrainError> {
    let mnist = Arc::new(crate::data::builtin_mnist()?);
    let data = match &opts.data {
        Some(src) => Arc::new(src.load()?),
        None => mnist.clone(),
    };
    let mut train = Vec::new();
    for &choice in &opts.backends {
        let backend = match Backend::select(choice) {
            Ok(b) => b,
            Err(e) => {
                progress(&format!("skipping backend {choice:?}: {e}"));
                continue;
            }
        };
        if let Some(n) = &backend.notice {
            progress(n);
        }
        for &kind in &opts.models {
            let r = train_throughput(kind, &backend, &data, opts)?;
            progress(&format!(
                "train {:<9} {:<44} {:>9.0} images/s ({} steps in {:.1} s; first step {:.0} ms)",
                r.model, r.backend, r.images_per_s, r.steps, r.seconds, r.first_step_ms
            ));
            train.push(r);
        }
    }
    let decode = if opts.decode {
        let d = decode_latency(BackendChoice::Cpu, opts.decodes)?;
        progress(&format!(
            "decode 1 image while training: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} decodes); 16x16 grid {:.2} ms",
            d.p50_ms, d.p99_ms, d.max_ms, d.n, d.grid16_ms
        ));
        Some(d)
    } else {
        None
    };
    let soak = if opts.soak_seconds > 0.0 {
        let samples = soak(&Backend::cpu(), &mnist, opts.soak_seconds)?;
        if let (Some(a), Some(b)) = (samples.first(), samples.last()) {
            progress(&format!(
                "soak: RSS {:.1} MB at {:.0} s (step {}) → {:.1} MB at {:.0} s (step {})",
                a.rss_mb, a.seconds, a.step, b.rss_mb, b.seconds, b.step
            ));
        }
        samples
    } else {
        Vec::new()
    };
    Ok(BenchReport {
        implementation: "latent-lab",
        version: env!("CARGO_PKG_VERSION"),
        threads: rayon::current_num_threads(),
        cpu: cpu_model(),
        train,
        decode,
        soak,
        peak_rss_mb: peak_rss_mb(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_measurements_in_any_order() {
        // 1..=200 ms, shuffled; one slow outlier of 900 ms.
        let mut v: Vec<f64> = (1..=200).map(|i| ((i * 37) % 200 + 1) as f64).collect();
        v.push(900.0);
        let [p50, p99, max] = percentiles(v, [50.0, 99.0, 100.0]);
        assert_eq!(p50, 101.0);
        assert_eq!(p99, 199.0);
        assert_eq!(max, 900.0);
        assert!(percentiles(Vec::new(), [50.0])[0].is_nan());
    }
}
