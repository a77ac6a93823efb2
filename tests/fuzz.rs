//! The fuzz corpus, replayed on every `cargo test`.
//!
//! The loaders that read untrusted files (IDX, images, checkpoints, safetensors, the settings
//! file) are fuzzed coverage-guided by libFuzzer (`fuzz/`, see docs/reliability.md). What
//! the fuzzers kept — a minimised corpus that reaches every branch they found, the seed files
//! they started from, and each input that once broke a promise — lives in
//! `tests/fuzz-corpus/<target>/`. Each file here goes through the same target function the
//! fuzzer ran (`latent_lab::fuzzing`), which checks that opening it
//!
//! * returns (accepted or a readable error) instead of panicking,
//! * never makes a single allocation, on any thread, larger than the target's budget,
//! * finishes in bounded time (a watchdog aborts the test on a hang, naming the file),
//!
//! and the seed files (`seed-*`) must each be accepted: they are real files of the kind, so
//! a loader that starts refusing them is broken even if no mutant notices.
//!
//! `cargo test --test fuzz -- --ignored write_fuzz_seeds` rewrites the seed files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latent_lab::backend::Backend;
use latent_lab::fuzzing::{check, Target, TrackingAlloc};
use latent_lab::model::{ImageShape, ModelKind, ModelOverrides, ModelSpec};
use latent_lab::train::{Session, TrainConfig};

#[global_allocator]
static ALLOC: TrackingAlloc = TrackingAlloc;

/// One replay at a time: the allocation peak is process-wide.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// The message of the last panic outside contained decoding.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn corpus_dir(target: Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target.name())
}

fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            // Panics the loaders catch themselves (third-party decoders) are not failures.
            if latent_lab::util::panic_is_contained() {
                return;
            }
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(info.to_string());
            }
        }));
    });
}

/// Replay every file of `target`'s corpus; the failures, one line each, in one panic.
fn replay(target: Target, at_least: usize) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    install_hook();
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= at_least,
        "{}: {} files, expected at least {at_least}",
        dir.display(),
        files.len()
    );
    // Watchdog: a file that runs for more than HANG aborts the process, naming it.
    const HANG: Duration = Duration::from_secs(30);
    let t0 = Instant::now();
    let started = Arc::new(AtomicU64::new(0));
    let current = Arc::new(Mutex::new(PathBuf::new()));
    let done = Arc::new(AtomicU64::new(0));
    {
        let (started, current, done) = (started.clone(), current.clone(), done.clone());
        std::thread::spawn(move || {
            while done.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(200));
                let s = started.load(Ordering::Relaxed);
                if s > 0 && t0.elapsed().as_millis() as u64 > s + HANG.as_millis() as u64 {
                    let p = current.lock().map(|c| c.clone()).unwrap_or_default();
                    eprintln!("fuzz corpus: {} ran for over {HANG:?}", p.display());
                    std::process::abort();
                }
            }
        });
    }
    let mut failures = Vec::new();
    let (mut accepted, mut seeds) = (0, 0);
    for path in &files {
        let input = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Ok(mut c) = current.lock() {
            c.clone_from(path);
        }
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = None;
        started.store(t0.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
        let result = std::panic::catch_unwind(|| check(target, &input));
        started.store(0, Ordering::Relaxed);
        match result {
            Ok(ok) => {
                accepted += usize::from(ok);
                if name.starts_with("seed-") {
                    seeds += 1;
                    if !ok {
                        failures.push(format!("{name}: a seed file was rejected"));
                    }
                }
            }
            Err(_) => {
                let msg = LAST_PANIC
                    .lock()
                    .ok()
                    .and_then(|m| m.clone())
                    .unwrap_or_else(|| "panicked (no message)".into());
                failures.push(format!("{name}: {msg}"));
            }
        }
    }
    done.store(1, Ordering::Relaxed);
    eprintln!(
        "fuzz corpus {}: {} files ({seeds} seeds, {accepted} accepted) in {:.1} s",
        target.name(),
        files.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(seeds > 0, "{}: no seed-* files", dir.display());
    assert!(
        failures.is_empty(),
        "fuzz corpus {}: {} of {} files break a promise:\n{}",
        target.name(),
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn idx_corpus_replays() {
    replay(Target::Idx, 6);
}

#[test]
fn image_corpus_replays() {
    replay(Target::Image, 7);
}

#[test]
fn checkpoint_corpus_replays() {
    replay(Target::Checkpoint, 4);
}

#[test]
fn safetensors_corpus_replays() {
    replay(Target::Safetensors, 3);
}

#[test]
fn settings_corpus_replays() {
    replay(Target::Settings, 3);
}

// ---------------------------------------------------------------------------------------
// Seed files: real files of each kind, written by this version of the app (and, for
// safetensors, by PyTorch).

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A small checkpoint of `kind` after one step (tiny widths keep each execution fast);
/// `history`: with its sample grid recorded.
fn checkpoint_seed(name: &str, hidden: Vec<usize>, latent: usize, history: bool) -> Vec<u8> {
    let kind = ModelKind::parse(name).unwrap();
    let spec = ModelSpec::new(
        kind,
        ImageShape::new(1, 28, 28),
        &ModelOverrides {
            latent_dim: Some(latent),
            hidden: Some(hidden),
            ..Default::default()
        },
    )
    .unwrap();
    let mut config = TrainConfig::for_kind(kind);
    config.batch_size = 8;
    config.log_every = 1;
    let data = Arc::new(latent_lab::data::builtin_mnist().unwrap());
    let mut s = Session::new(spec, config, data, Backend::cpu()).unwrap();
    s.step().unwrap();
    if history {
        s.record_images().unwrap();
    }
    s.checkpoint().unwrap().to_bytes().unwrap()
}

/// The settings file as eframe writes it: a RON map from key to the RON of the value.
fn settings_file(s: &latent_lab::app::Settings) -> Vec<u8> {
    let mut map = std::collections::BTreeMap::new();
    map.insert("app".to_string(), ron::to_string(s).unwrap());
    map.insert("egui".to_string(), "(zoom_factor:1.0)".to_string());
    ron::ser::to_string_pretty(&map, ron::ser::PrettyConfig::default())
        .unwrap()
        .into_bytes()
}

fn seeds(target: Target) -> Vec<(&'static str, Vec<u8>)> {
    use image::{DynamicImage, ImageFormat};
    match target {
        Target::Idx => {
            let mnist = latent_lab::data::builtin_mnist().unwrap();
            let n = 3;
            let mut images = idx_header(0x803, &[n as u32, 28, 28]);
            images.extend_from_slice(&mnist.pixels[..n * 784]);
            let mut rgb = idx_header(0x804, &[2, 5, 7, 3]);
            rgb.extend((0..2 * 5 * 7 * 3).map(|i| (i * 7 % 256) as u8));
            let mut labels = idx_header(0x801, &[10]);
            labels.extend(0..10u8);
            vec![
                ("images", images.clone()),
                ("images-gz", gzip(&images)),
                ("rgb", rgb.clone()),
                ("rgb-gz", gzip(&rgb)),
                ("labels", labels.clone()),
                ("labels-gz", gzip(&labels)),
            ]
        }
        Target::Image => {
            let gray =
                image::GrayImage::from_fn(9, 13, |x, y| image::Luma([(x * 20 + y * 7) as u8]));
            let rgba = image::RgbaImage::from_fn(16, 10, |x, y| {
                image::Rgba([(x * 15) as u8, (y * 25) as u8, 90, (x * y) as u8])
            });
            let rgb = image::RgbImage::from_fn(20, 20, |x, y| {
                image::Rgb([(x * 12) as u8, 40, (y * 12) as u8])
            });
            let gray16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(8, 8, |x, y| {
                image::Luma([(x * 8000 + y * 300) as u16])
            });
            vec![
                (
                    "gray.png",
                    encode(DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png),
                ),
                (
                    "rgba.png",
                    encode(DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png),
                ),
                (
                    "gray16.png",
                    encode(DynamicImage::ImageLuma16(gray16), ImageFormat::Png),
                ),
                (
                    "rgb.jpg",
                    encode(DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Jpeg),
                ),
                (
                    "rgb.bmp",
                    encode(DynamicImage::ImageRgb8(rgb), ImageFormat::Bmp),
                ),
                (
                    "rgba.gif",
                    encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Gif),
                ),
                (
                    "gray.bmp",
                    encode(DynamicImage::ImageLuma8(gray), ImageFormat::Bmp),
                ),
            ]
        }
        Target::Checkpoint => vec![
            // (A conv-VAE's dense layer has no override: its smallest file is 1.2 MB.)
            ("vae", checkpoint_seed("vae", vec![2], 2, false)),
            ("vae-history", checkpoint_seed("vae", vec![2], 2, true)),
            ("gan", checkpoint_seed("gan", vec![2], 2, false)),
            ("dcgan", checkpoint_seed("dcgan", vec![2], 3, false)),
        ],
        Target::Safetensors => {
            let fixture = |name: &str| {
                std::fs::read(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/fixtures")
                        .join(name),
                )
                .unwrap()
            };
            let dcgan = latent_lab::checkpoint::Checkpoint::from_bytes(
                &checkpoint_seed("dcgan", vec![2], 3, false),
                Path::new("seed.llck"),
            )
            .unwrap();
            // Written by PyTorch (f16 VAE, bf16 GAN) and by our own export (f32, batch norm).
            vec![
                ("torch-vae", fixture("torch-vae.safetensors")),
                ("torch-gan", fixture("torch-gan.safetensors")),
                (
                    "export-dcgan",
                    latent_lab::export::safetensors_bytes(&dcgan).unwrap(),
                ),
            ]
        }
        Target::Settings => {
            let default = latent_lab::app::Settings::default();
            let mut used = default.clone();
            used.set_model(ModelKind::parse("dcgan").unwrap());
            used.hidden = "32, 64".into();
            used.latent_dim = Some(16);
            used.recent = vec!["/home/me/runs/a.llck".into(), "b.safetensors".into()];
            used.data = latent_lab::data::DataSource::Folder {
                path: "/home/me/faces".into(),
                size: 64,
                channels: 3,
            };
            used.scatter_projection = Some(latent_lab::explore::Projection::Pca);
            vec![
                ("default", settings_file(&default)),
                ("used", settings_file(&used)),
                ("minimal", b"{\"app\":\"(batch_size:64)\"}".to_vec()),
            ]
        }
    }
}

/// The seeds, each accepted on its own, written as `seed-<name>` into the corpus.
#[test]
#[ignore = "rewrites tests/fuzz-corpus/*/seed-*"]
fn write_fuzz_seeds() {
    for target in Target::ALL {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds(target) {
            assert!(
                target.run(&bytes),
                "{} seed {name} is accepted",
                target.name()
            );
            std::fs::write(dir.join(format!("seed-{name}")), &bytes).unwrap();
            eprintln!("{}/seed-{name}: {} bytes", target.name(), bytes.len());
        }
    }
}
