//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod ui;

use std::sync::{Arc, OnceLock};

use latent_lab::backend::Backend;
use latent_lab::data::{DataSource, Dataset};
use latent_lab::model::{ImageShape, ModelKind, ModelOverrides, ModelSpec};
use latent_lab::train::{Session, StepOutcome, TrainConfig};

/// As `main.rs` does: burn loads optimiser state onto `Device::default()`; keep that on the
/// CPU instead of a lazily started (software) GPU runtime. Called before any test builds a
/// session or an app.
pub fn cpu_default_device() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("BURN_DEVICE").is_none() {
            std::env::set_var("BURN_DEVICE", "flex");
        }
    });
}

/// The built-in MNIST, loaded once per test binary.
pub fn mnist() -> Arc<Dataset> {
    cpu_default_device();
    static DATA: OnceLock<Arc<Dataset>> = OnceLock::new();
    DATA.get_or_init(|| Arc::new(DataSource::Mnist.load().expect("built-in MNIST loads")))
        .clone()
}

/// The largest absolute difference between two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The model preset `name` (`vae`, `conv-vae`, `gan`, `dcgan`, `seed-vae`, `seed-gan`).
pub fn kind(name: &str) -> ModelKind {
    ModelKind::parse(name).unwrap_or_else(|| panic!("no preset {name}"))
}

/// `kind` for the built-in MNIST (10 classes, for the conditional families).
pub fn mnist_spec(kind: ModelKind) -> ModelSpec {
    let o = ModelOverrides {
        classes: Some(10),
        ..Default::default()
    };
    ModelSpec::new(kind, ImageShape::new(1, 28, 28), &o).unwrap()
}

pub fn session(kind: ModelKind, configure: impl FnOnce(&mut TrainConfig)) -> Session {
    let mut config = TrainConfig::for_kind(kind);
    config.seed = 1;
    configure(&mut config);
    Session::new(mnist_spec(kind), config, mnist(), Backend::cpu()).unwrap()
}

/// Run `n` steps, returning every logged point's values.
pub fn run_steps(s: &mut Session, n: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for _ in 0..n {
        match s.step().unwrap() {
            StepOutcome::Ran { point, .. } => {
                if let Some(p) = point {
                    out.push(p.values);
                }
            }
            StepOutcome::Diverged { step, .. } => panic!("diverged at step {step}"),
        }
    }
    out
}
