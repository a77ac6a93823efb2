//! What opening an untrusted file does, one function per kind of file, shared by the
//! coverage-guided fuzzers (`fuzz/`, cargo-fuzz and libFuzzer) and by `cargo test`, which
//! replays the committed corpus (`tests/fuzz-corpus/<target>/`). See docs/reliability.md.
//!
//! A target returns whether the input was accepted and panics where a promise is broken: a
//! loader that panics, a model that loads but cannot decode, an image of the wrong size,
//! settings outside what the controls allow. [`check`] adds the memory promise: the largest
//! single allocation made while the target ran, on any thread, stays within
//! [`Target::budget`] — figures written here from the promises in docs/reliability.md, not
//! read from the loaders' own limits, so a loader whose limit is loosened fails here.
//!
//! The allocation count needs [`TrackingAlloc`] as the binary's global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::app::settings::{self, Settings};
use crate::backend::Backend;
use crate::checkpoint::Checkpoint;
use crate::data::folder::decode_image_bytes;
use crate::data::idx::{parse_images_bytes, parse_labels_bytes};
use crate::import::{import_bytes, ImportOptions};
use crate::infer::Inference;
use crate::model::{ImageShape, ModelOverrides, ModelSpec};

/// The kinds of untrusted file the app opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// MNIST-style IDX images and labels, raw or gzipped (`--data idx:…`).
    Idx,
    /// One file of an image folder (and an image dropped on the explorer).
    Image,
    /// A Latent Lab checkpoint (`.llck`): header, weights, optimiser states, history.
    Checkpoint,
    /// A safetensors file written by PyTorch or by `export`.
    Safetensors,
    /// The app's settings file (eframe's `app.ron`).
    Settings,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Idx,
        Target::Image,
        Target::Checkpoint,
        Target::Safetensors,
        Target::Settings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Idx => "idx",
            Target::Image => "image",
            Target::Checkpoint => "checkpoint",
            Target::Safetensors => "safetensors",
            Target::Settings => "settings",
        }
    }

    /// The largest single allocation opening `input` may make.
    pub fn budget(self, input: &[u8]) -> usize {
        const MIB: usize = 1 << 20;
        match self {
            // What the file really holds (a gzip stream inflated, capped), twice for a
            // growing buffer, once more for the CHW copy.
            Target::Idx => 3 * payload_len(input) + MIB / 8,
            // An image may describe at most 16,384 decoded bytes per byte of file (deflate
            // tops out near 1,032:1, GIF's LZW near 2,730:1 at 4 bytes a pixel), never less
            // than 16 MiB nor more than 512 MiB, and the conversions after decoding (gray to
            // RGB, alpha flattening) copy it at most 4 times.
            Target::Image => 4 * (input.len() * 16_384).clamp(16 * MIB, 512 * MIB) + MIB,
            // Copies of the file's bytes (blobs, records, weights as f32), never more.
            Target::Checkpoint | Target::Safetensors => 8 * input.len() + MIB,
            // Parsed text: a few copies of the file.
            Target::Settings => 8 * input.len() + MIB / 4,
        }
    }

    /// Open `input` as the app does; `true` when it was accepted.
    pub fn run(self, input: &[u8]) -> bool {
        match self {
            Target::Idx => idx(input),
            Target::Image => image(input),
            Target::Checkpoint => checkpoint(input),
            Target::Safetensors => safetensors(input),
            Target::Settings => settings_file(input),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("no fuzz target {s}"))
    }
}

/// Run `target` on `input` and check the allocation promise (needs [`TrackingAlloc`]).
pub fn check(target: Target, input: &[u8]) -> bool {
    quiet_about_contained_panics();
    let allowed = target.budget(input);
    reset_largest();
    let accepted = target.run(input);
    let peak = largest();
    assert!(
        peak <= allowed,
        "fuzz {}: a {}-byte input made a {peak}-byte allocation (allowed {allowed})",
        target.name(),
        input.len()
    );
    accepted
}

/// Panics the loaders catch themselves (`util::contained`: third-party decoders that panic on
/// malformed data) are errors, not findings; libFuzzer's hook would abort on them.
fn quiet_about_contained_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !crate::util::panic_is_contained() {
                previous(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------
// Allocation tracking over all threads.

static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// A global allocator that remembers the largest single request since [`reset_largest`],
/// whichever thread made it (burn and rayon work on their own threads).
pub struct TrackingAlloc;

unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

pub fn reset_largest() {
    LARGEST.store(0, Ordering::Relaxed);
}

/// The largest single allocation since [`reset_largest`] (0 without [`TrackingAlloc`]).
pub fn largest() -> usize {
    LARGEST.load(Ordering::Relaxed)
}

/// What a gzip stream really holds (capped at 256 MiB) — the bytes it inflates to before it
/// ends or turns out corrupt —, or the raw length.
fn payload_len(bytes: &[u8]) -> usize {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return bytes.len();
    }
    let mut r = flate2::read::GzDecoder::new(bytes).take(256 << 20);
    let mut buf = [0u8; 8192];
    let mut n = 0;
    while let Ok(k @ 1..) = r.read(&mut buf) {
        n += k;
    }
    n
}

// ---------------------------------------------------------------------------------------
// Targets.

fn idx(input: &[u8]) -> bool {
    let name = Path::new("fuzz.idx");
    let images = parse_images_bytes(input, name);
    if let Ok(im) = &images {
        let numel = im.channels * im.rows * im.cols;
        assert_eq!(
            im.pixels.len(),
            im.count * numel,
            "IDX pixels match the header"
        );
    }
    let labels = parse_labels_bytes(input, name);
    images.is_ok() || labels.is_ok()
}

fn image(input: &[u8]) -> bool {
    let gray = decode_image_bytes(input, 28, 1);
    let rgb = decode_image_bytes(input, 16, 3);
    if let Ok(p) = &gray {
        assert_eq!(p.len(), 28 * 28, "a decoded image is 28×28 gray");
    }
    if let Ok(p) = &rgb {
        assert_eq!(p.len(), 3 * 16 * 16, "a decoded image is 16×16 RGB");
    }
    assert_eq!(
        gray.is_ok(),
        rgb.is_ok(),
        "a file decodes either way or neither"
    );
    gray.is_ok()
}

/// The CPU device, with loaded optimiser state kept on the CPU as the binary does
/// (`main.rs`): no GPU runtime starts inside a target.
fn cpu() -> &'static burn::tensor::Device {
    static CPU: OnceLock<burn::tensor::Device> = OnceLock::new();
    CPU.get_or_init(|| {
        if std::env::var_os("BURN_DEVICE").is_none() {
            std::env::set_var("BURN_DEVICE", "flex");
        }
        Backend::cpu().device
    })
}

/// A loaded model must decode an image of its own shape.
fn decodes(ckpt: &Checkpoint) -> bool {
    let Ok(inf) = Inference::from_checkpoint(ckpt, cpu()) else {
        return false;
    };
    let z = vec![0.0f32; inf.latent_dim()];
    let batch = inf
        .decode(&z)
        .unwrap_or_else(|e| panic!("a model that loaded cannot decode: {e}"));
    assert_eq!(
        batch.pixels.len(),
        ckpt.header.model.shape.numel(),
        "one decoded image of the model's shape"
    );
    true
}

fn checkpoint(input: &[u8]) -> bool {
    let mut bytes = input.to_vec();
    // Half of the inputs get a valid CRC, so that the parser behind the checksum is reached;
    // deterministic per input, so that a saved input replays exactly.
    if bytes.len() > 4 && crc32fast::hash(input) % 2 == 0 {
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(ckpt) = Checkpoint::from_bytes(&bytes, Path::new("fuzz.llck")) else {
        return false;
    };
    let mut ok = decodes(&ckpt);
    for name in ["optim", "optim_g", "optim_d"] {
        if ckpt.blob(name).is_ok() {
            let fresh = burn::optim::AdamConfig::new().init();
            ok &= ckpt.optimizer(name, fresh).is_ok();
        }
    }
    // The sample history (a section of its own, read when the run opens).
    match ckpt.timeline() {
        Ok(t) => {
            // What the training view's step cursor shows.
            for i in 0..t.len() {
                assert!(t.samples(i).is_some(), "every kept grid can be shown");
                let _ = t.reconstructions(i);
            }
            if !t.is_empty() {
                assert!(t.frame_image(t.len() - 1, 1).is_some());
            }
        }
        Err(_) => ok = false,
    }
    ok
}

fn safetensors(input: &[u8]) -> bool {
    let opts = ImportOptions::default();
    match import_bytes(input, Path::new("fuzz.safetensors"), &opts) {
        Ok(ckpt) => decodes(&ckpt),
        Err(_) => false,
    }
}

/// The settings file as eframe's file storage reads it (a RON map of key to RON text) and as
/// the app then uses it: sanitised, turned into a new run's configuration and model.
fn settings_file(input: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(input) else {
        return false;
    };
    let Ok(map) = ron::from_str::<std::collections::HashMap<String, String>>(text) else {
        return false;
    };
    let Some(s) = map.get("app").and_then(|text| Settings::from_ron(text)) else {
        return false;
    };
    assert!(settings::LEARNING_RATE.contains(&s.learning_rate));
    assert!(settings::BETA.contains(&s.beta));
    assert!(settings::AUTOSAVE_MINUTES.contains(&s.autosave_minutes));
    assert!(settings::BATCH_SIZE.contains(&s.batch_size));
    assert!(settings::EPOCHS.contains(&s.epochs));
    assert!(settings::AUTOSAVE_KEEP.contains(&s.autosave_keep));
    assert!(s.recent.len() <= settings::RECENT);
    let _ = s.autosave_interval();
    let valid = s.train_config().validate().is_ok();
    let hidden = s.hidden_widths();
    if let Ok(hidden) = hidden {
        // What "Start" builds from these settings (the built-in data's shape): an error or
        // a model description, allocating nothing for the model itself.
        let overrides = ModelOverrides {
            latent_dim: s.latent_dim,
            hidden,
            ..Default::default()
        };
        let _ = ModelSpec::new(s.model, ImageShape::new(1, 28, 28), &overrides);
    }
    valid
}
