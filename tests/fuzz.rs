//! Mutation fuzzing of the three loaders that read untrusted files: IDX, images (the
//! image-folder decoder) and checkpoints. Each target starts from valid seed files, applies
//! random byte-level and structure-aware mutations, and checks for every input that the
//! loader
//!
//! * returns (`Ok` or a readable `Err`) instead of panicking,
//! * never makes a single allocation larger than the input can justify (a counting global
//!   allocator measures the largest request made by the fuzzing thread), and
//! * finishes in bounded time (a watchdog aborts the process on a hang, saving the input).
//!
//! `cargo test` runs each target for a few seconds. For longer runs:
//!
//! ```text
//! LATENT_LAB_FUZZ_SECS=600 cargo test --release --test fuzz -- --nocapture --test-threads 3
//! ```
//!
//! Failing inputs are written to `target/tmp/fuzz-failures/` and named in the panic; copy one
//! to `tests/fuzz-corpus/<target>/` to replay it on every run once it is fixed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latent_lab::backend::Backend;
use latent_lab::checkpoint::Checkpoint;
use latent_lab::data::folder::{decode_alloc_limit, decode_image};
use latent_lab::data::idx::{parse_images_bytes, parse_labels_bytes};
use latent_lab::infer::Inference;
use latent_lab::model::{ImageShape, ModelKind, ModelOverrides, ModelSpec};
use latent_lab::train::{Session, TrainConfig};

// ---------------------------------------------------------------------------------------
// Allocation tracking: the largest single request made on this thread since the last reset.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations during thread teardown must not touch a destroyed slot.
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

thread_local! {
    /// Set while a fuzz target runs: its panics are expected and caught, so the panic hook
    /// stays quiet (printing one would also allocate for the backtrace, blamed on the input).
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
}

fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TARGET.with(|t| t.get()) {
                previous(info);
            }
        }));
    });
}

fn reset_largest() {
    LARGEST.with(|l| l.set(0));
}
fn largest() -> usize {
    LARGEST.with(|l| l.get())
}

// ---------------------------------------------------------------------------------------
// A small, seeded mutator.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    3,
    4,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    100_000_000,
];

/// Offsets near the start matter most (headers): half the mutations land in the first 64 bytes.
fn offset(rng: &mut Rng, len: usize) -> usize {
    if rng.below(2) == 0 {
        rng.below(len.min(64))
    } else {
        rng.below(len)
    }
}

fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = offset(rng, len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = offset(rng, len);
                data[i] = rng.next() as u8;
            }
            2 if len >= 4 => {
                // An interesting 32-bit value, big- or little-endian (IDX is BE, we write LE).
                let i = offset(rng, len - 3);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let b = if rng.below(2) == 0 {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                data[i..i + 4].copy_from_slice(&b);
            }
            3 if len >= 8 => {
                let i = offset(rng, len - 7);
                let v: u64 = [0, 1, u64::MAX, 1 << 40, 1 << 62][rng.below(5)];
                data[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            4 => data.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                // Delete a range.
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                data.drain(a..b);
            }
            6 => {
                // Insert random bytes.
                let at = rng.below(len + 1);
                let n = 1 + rng.below(32);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            7 if len > 0 => {
                // Duplicate a chunk (repeated structures, longer streams).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(256)).min(len);
                let chunk = data[a..b].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            8 => {
                // Replace a run of ASCII digits (JSON numbers in checkpoint headers).
                let digits: Vec<usize> = (0..len).filter(|&i| data[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let start = digits[rng.below(digits.len())];
                    let mut end = start;
                    while end < len && data[end].is_ascii_digit() {
                        end += 1;
                    }
                    let v = [
                        "0",
                        "1",
                        "65536",
                        "4294967295",
                        "18446744073709551615",
                        "99999999",
                    ][rng.below(6)];
                    data.splice(start..end, v.bytes());
                }
            }
            _ => {
                if len > 1 {
                    let i = rng.below(len);
                    let j = rng.below(len);
                    data.swap(i, j);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The harness.

fn fuzz_secs() -> f64 {
    std::env::var("LATENT_LAB_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

fn crash_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = std::fs::create_dir_all(&d);
    d
}

fn save_input(name: &str, what: &str, input: &[u8]) -> PathBuf {
    let p = crash_dir().join(format!("{name}-{what}-{}.bin", std::process::id()));
    let _ = std::fs::write(&p, input);
    p
}

struct Report {
    execs: u64,
    ok: u64,
    largest_alloc: usize,
}

/// Run `target` on mutations of `seeds` for the configured time. `budget(input)` is the
/// largest single allocation the input may cause (computed before tracking starts).
fn fuzz(
    name: &str,
    seeds: Vec<Vec<u8>>,
    seed: u64,
    budget: impl Fn(&[u8]) -> usize,
    mut target: impl FnMut(&[u8]) -> bool,
) -> Report {
    assert!(!seeds.is_empty());
    install_quiet_hook();
    let secs = fuzz_secs();
    let mut rng = Rng(seed | 1);
    // Watchdog: an input that runs for more than HANG seconds aborts the process.
    const HANG: Duration = Duration::from_secs(20);
    let started = Arc::new(AtomicU64::new(0));
    let current = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    {
        let (started, current, done) = (started.clone(), current.clone(), done.clone());
        let name = name.to_string();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let s = started.load(Ordering::Relaxed);
                if s > 0 && t0.elapsed().as_millis() as u64 > s + HANG.as_millis() as u64 {
                    let input = current.lock().map(|c| c.clone()).unwrap_or_default();
                    let p = save_input(&name, "hang", &input);
                    eprintln!("fuzz {name}: an input ran for over {HANG:?}; saved to {p:?}");
                    std::process::abort();
                }
            }
        });
    }
    let mut report = Report {
        execs: 0,
        ok: 0,
        largest_alloc: 0,
    };
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    // The seeds themselves first, unmutated (they must load), then inputs that once failed
    // (`tests/fuzz-corpus/<name>/`), replayed on every run.
    let mut queue: Vec<Vec<u8>> = seeds.clone();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(name);
    if let Ok(rd) = std::fs::read_dir(&corpus) {
        queue.extend(rd.flatten().filter_map(|e| std::fs::read(e.path()).ok()));
    }
    while !queue.is_empty() || Instant::now() < deadline {
        let input = queue.pop().unwrap_or_else(|| {
            let mut d = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut d);
            d
        });
        let allowed = budget(&input);
        if let Ok(mut c) = current.lock() {
            c.clone_from(&input);
        }
        started.store(t0.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
        reset_largest();
        IN_TARGET.with(|t| t.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| target(&input)));
        IN_TARGET.with(|t| t.set(false));
        let peak = largest();
        started.store(0, Ordering::Relaxed);
        report.execs += 1;
        match result {
            Ok(true) => report.ok += 1,
            Ok(false) => {}
            Err(_) => {
                done.store(true, Ordering::Relaxed);
                let p = save_input(name, "panic", &input);
                panic!("fuzz {name}: the loader panicked on an input (saved to {p:?})");
            }
        }
        report.largest_alloc = report.largest_alloc.max(peak);
        if peak > allowed {
            done.store(true, Ordering::Relaxed);
            let p = save_input(name, "alloc", &input);
            panic!(
                "fuzz {name}: a {}-byte input caused a {peak}-byte allocation (allowed {allowed}); saved to {p:?}",
                input.len()
            );
        }
    }
    done.store(true, Ordering::Relaxed);
    eprintln!(
        "fuzz {name}: {} executions in {:.1} s ({} accepted), largest allocation {} bytes",
        report.execs,
        t0.elapsed().as_secs_f64(),
        report.ok,
        report.largest_alloc
    );
    report
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// What a gzip stream really holds (capped), or the raw length.
fn payload_len(bytes: &[u8]) -> usize {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        let _ = flate2::read::GzDecoder::new(bytes)
            .take(256 << 20)
            .read_to_end(&mut out);
        out.len()
    } else {
        bytes.len()
    }
}

// ---------------------------------------------------------------------------------------
// Targets.

fn idx_header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

#[test]
fn fuzz_idx_parser() {
    // Real MNIST pixels (the first 40 images of the built-in file), raw and gzipped, 3-D and
    // 4-D (RGB), and labels.
    let mnist = latent_lab::data::builtin_mnist().unwrap();
    let n = 40;
    let mut images = idx_header(0x803, &[n as u32, 28, 28]);
    images.extend_from_slice(&mnist.pixels[..n * 784]);
    let mut rgb = idx_header(0x804, &[6, 5, 7, 3]);
    rgb.extend((0..6 * 5 * 7 * 3).map(|i| (i * 7 % 256) as u8));
    let mut labels = idx_header(0x801, &[n as u32]);
    labels.extend((0..n).map(|i| (i % 10) as u8));
    let seeds = vec![
        images.clone(),
        gzip(&images),
        rgb.clone(),
        gzip(&rgb),
        labels.clone(),
        gzip(&labels),
    ];
    let name = Path::new("fuzz.idx");
    let r = fuzz(
        "idx",
        seeds,
        0x1D1D,
        // Twice the real payload (a growing buffer doubles), plus the CHW copy, plus slack.
        |input| 3 * payload_len(input) + (128 << 10),
        |input| {
            let a = parse_images_bytes(input, name).is_ok();
            let b = parse_labels_bytes(input, name).is_ok();
            a || b
        },
    );
    assert!(r.ok >= 6, "the unmutated seeds must parse");
}

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

#[test]
fn fuzz_image_decoder() {
    use image::{DynamicImage, ImageFormat};
    let gray = image::GrayImage::from_fn(9, 13, |x, y| image::Luma([(x * 20 + y * 7) as u8]));
    let rgba = image::RgbaImage::from_fn(16, 10, |x, y| {
        image::Rgba([(x * 15) as u8, (y * 25) as u8, 90, (x * y) as u8])
    });
    let rgb = image::RgbImage::from_fn(20, 20, |x, y| {
        image::Rgb([(x * 12) as u8, 40, (y * 12) as u8])
    });
    let gray16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(8, 8, |x, y| {
        image::Luma([(x * 8000 + y * 300) as u16])
    });
    let seeds = vec![
        encode(DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png),
        encode(DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png),
        encode(DynamicImage::ImageLuma16(gray16), ImageFormat::Png),
        encode(DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Jpeg),
        encode(DynamicImage::ImageRgb8(rgb), ImageFormat::Bmp),
        encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Gif),
        encode(DynamicImage::ImageLuma8(gray), ImageFormat::Bmp),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.img");
    let r = fuzz(
        "image",
        seeds,
        0x1A6E,
        // The decoder's limit for a file of this size, times 4 for the conversions after
        // decoding (e.g. gray to RGB), plus slack.
        |input| 4 * decode_alloc_limit(input.len() as u64) as usize + (1 << 20),
        |input| {
            std::fs::write(&path, input).unwrap();
            let a = decode_image(&path, 28, 1);
            let b = decode_image(&path, 16, 3);
            if let Ok(p) = &a {
                assert_eq!(p.len(), 28 * 28);
            }
            if let Ok(p) = &b {
                assert_eq!(p.len(), 3 * 16 * 16);
            }
            a.is_ok() && b.is_ok()
        },
    );
    assert!(r.ok >= 7, "the unmutated seeds must decode");
}

/// A small checkpoint of `kind` (tiny widths keep each execution fast).
fn checkpoint_seed(kind: ModelKind, hidden: Vec<usize>, latent: usize) -> Vec<u8> {
    let shape = ImageShape::new(1, 28, 28);
    let spec = ModelSpec::new(
        kind,
        shape,
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
    s.checkpoint().unwrap().to_bytes().unwrap()
}

#[test]
fn fuzz_checkpoint_loader() {
    // As the binary does (`main.rs`): loaded optimiser state goes to the CPU, not to a lazily
    // started GPU runtime (whose one-time start-up allocations would be blamed on an input).
    std::env::set_var("BURN_DEVICE", "flex");
    let seeds = vec![
        checkpoint_seed(kind("vae"), vec![8], 2),
        checkpoint_seed(kind("gan"), vec![8], 4),
        checkpoint_seed(kind("dcgan"), vec![2], 3),
        checkpoint_seed(kind("conv-vae"), vec![2], 2),
    ];
    let device = Backend::cpu().device;
    let path = Path::new("fuzz.llck");
    let r = fuzz(
        "checkpoint",
        seeds,
        0xC4EC,
        // Copies of the file's bytes (blobs, records, weights) but never more than that.
        |input| 8 * input.len() + (1 << 20),
        |input| {
            let mut bytes = input.to_vec();
            // Half of the inputs get a valid CRC, so that the parser behind the checksum is
            // reached; deterministic per input, so that a saved failing input replays exactly.
            if bytes.len() > 4 && crc32fast::hash(input) % 2 == 0 {
                let n = bytes.len() - 4;
                let crc = crc32fast::hash(&bytes[..n]);
                bytes[n..].copy_from_slice(&crc.to_le_bytes());
            }
            let Ok(ckpt) = Checkpoint::from_bytes(&bytes, path) else {
                return false;
            };
            let nets = Inference::from_checkpoint(&ckpt, &device);
            let mut ok = nets.is_ok();
            for name in ["optim", "optim_g", "optim_d"] {
                if ckpt.blob(name).is_ok() {
                    let fresh = burn::optim::AdamConfig::new().init();
                    ok &= ckpt.optimizer(name, fresh).is_ok();
                }
            }
            if let Ok(inf) = nets {
                // A model that loaded must also run.
                let z = vec![0.0f32; inf.latent_dim()];
                ok &= inf.decode(&z).is_ok();
            }
            ok
        },
    );
    assert!(r.ok >= 4, "the unmutated seeds must load");
}

#[test]
fn fuzz_safetensors_import() {
    std::env::set_var("BURN_DEVICE", "flex");
    let fixture = |name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    };
    // Written by PyTorch (f16 VAE, bf16 GAN) and by our own export (f32, a DCGAN's batch norm).
    let dcgan = Checkpoint::from_bytes(
        &checkpoint_seed(kind("dcgan"), vec![2], 3),
        Path::new("seed.llck"),
    )
    .unwrap();
    let seeds = vec![
        fixture("torch-vae.safetensors"),
        fixture("torch-gan.safetensors"),
        latent_lab::export::safetensors_bytes(&dcgan).unwrap(),
    ];
    let device = Backend::cpu().device;
    let path = Path::new("fuzz.safetensors");
    let opts = latent_lab::import::ImportOptions::default();
    // Each seed on its own (a mutant that imports cannot stand in for a seed that does not).
    for (i, seed) in seeds.iter().enumerate() {
        if let Err(e) = latent_lab::import::import_bytes(seed, path, &opts) {
            panic!("seed {i} must import: {e}");
        }
    }
    let r = fuzz(
        "safetensors",
        seeds,
        0x5AFE,
        // The tensors converted to f32 (up to twice the bytes), copies into the networks and
        // the checkpoint built from them; never more.
        |input| 8 * input.len() + (1 << 20),
        |input| {
            let Ok(ckpt) = latent_lab::import::import_bytes(input, path, &opts) else {
                return false;
            };
            match Inference::from_checkpoint(&ckpt, &device) {
                Ok(inf) => inf.decode(&vec![0.0f32; inf.latent_dim()]).is_ok(),
                Err(_) => false,
            }
        },
    );
    assert!(r.execs > r.ok, "mutants were tried");
}

/// The model preset `name`.
fn kind(name: &str) -> ModelKind {
    ModelKind::parse(name).unwrap_or_else(|| panic!("no preset {name}"))
}
