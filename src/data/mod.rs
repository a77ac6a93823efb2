//! Datasets for Latent Lab: the built-in MNIST, procedural shapes, IDX files and image folders.
//!
//! Every loader returns a [`Dataset`] of `u8` pixels (CHW per image); [`Dataset::gather_f32`]
//! turns a batch of indices into `f32` in `[0, 1]` for training, and [`BatchPlan`] yields
//! deterministic, resumable shuffled batches.

pub mod batch;
pub mod folder;
pub mod idx;
pub mod shapes;

use std::fmt;
use std::path::{Path, PathBuf};

pub use batch::{BatchPlan, SplitMix64};

/// Shape of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }

    /// Number of values in one image (`channels * height * width`).
    pub fn numel(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// Everything that can go wrong while finding, reading or decoding a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The OS refused to open/read a file or folder.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but its contents are malformed.
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    /// A folder held no image that could be decoded.
    #[error("{}", empty_message(path, *skipped))]
    Empty { path: PathBuf, skipped: usize },
    /// An IDX labels file whose count disagrees with its images file.
    #[error(
        "{}: has {labels_count} labels but {} has {images_count} images",
        labels.display(),
        images.display()
    )]
    LabelMismatch {
        images: PathBuf,
        labels: PathBuf,
        images_count: usize,
        labels_count: usize,
    },
    /// A CLI word that is neither a built-in dataset nor an existing path.
    #[error(
        "{}: no such file or folder (expected \"mnist\", \"shapes\", an IDX file or an image folder)",
        path.display()
    )]
    NotFound { path: PathBuf },
    /// Bad parameters (sizes, counts, channels) or an unusable dataset.
    #[error("{0}")]
    Invalid(String),
}

fn empty_message(path: &Path, skipped: usize) -> String {
    if skipped == 0 {
        format!(
            "{}: no image files (png, jpg, jpeg, bmp, gif) found in the folder or its immediate sub-folders",
            path.display()
        )
    } else {
        format!(
            "{}: no loadable images: all {skipped} image file(s) failed to decode",
            path.display()
        )
    }
}

/// Where a dataset came from; serialisable (stored in checkpoints) and re-loadable.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSource {
    /// The built-in 10,000-image MNIST subset.
    Mnist,
    /// Procedural dSprites-like shapes.
    Shapes {
        count: usize,
        size: usize,
        seed: u64,
    },
    /// IDX image file (gzip or raw) with an optional IDX labels file.
    Idx {
        images: PathBuf,
        labels: Option<PathBuf>,
    },
    /// A folder of images, resized to `size`×`size` with 1 or 3 channels.
    Folder {
        path: PathBuf,
        size: usize,
        channels: usize,
    },
}

/// Default number of procedural shapes for `DataSource::parse("shapes")`.
pub const DEFAULT_SHAPES_COUNT: usize = 20_000;
/// Default image side for shapes and folders.
pub const DEFAULT_SIZE: usize = 28;

impl DataSource {
    /// Parse a CLI word: `"mnist"` | `"shapes"` | a path.
    ///
    /// A directory becomes a `Folder` at the size and channels its images suggest
    /// ([`folder::probe`]: their typical side up to 64 px, RGB if they have colour; 28 px
    /// gray when none can be read), which the caller may override;
    /// a file becomes `Idx`, with the labels file auto-detected when the file name contains
    /// `images-idx3` (or `images.idx3`): the same name with `labels-idx1` next to it, if it exists.
    pub fn parse(s: &str) -> Result<Self, DataError> {
        let word = s.trim();
        if word.eq_ignore_ascii_case("mnist") {
            return Ok(DataSource::Mnist);
        }
        if word.eq_ignore_ascii_case("shapes") {
            return Ok(DataSource::Shapes {
                count: DEFAULT_SHAPES_COUNT,
                size: DEFAULT_SIZE,
                seed: 0,
            });
        }
        if word.is_empty() {
            return Err(DataError::Invalid(
                "empty dataset name (expected \"mnist\", \"shapes\", an IDX file or an image folder)"
                    .into(),
            ));
        }
        let path = PathBuf::from(word);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataError::NotFound { path })
            }
            Err(source) => return Err(DataError::Io { path, source }),
        };
        if meta.is_dir() {
            let (size, channels) = folder::probe(&path).unwrap_or((DEFAULT_SIZE, 1));
            Ok(DataSource::Folder {
                path,
                size,
                channels,
            })
        } else {
            let labels = detect_labels_file(&path);
            Ok(DataSource::Idx {
                images: path,
                labels,
            })
        }
    }

    /// Load (or generate) the dataset.
    pub fn load(&self) -> Result<Dataset, DataError> {
        match self {
            DataSource::Mnist => builtin_mnist(),
            DataSource::Shapes { count, size, seed } => shapes::generate(*count, *size, *seed),
            DataSource::Idx { images, labels } => idx::load_idx(images, labels.as_deref()),
            DataSource::Folder {
                path,
                size,
                channels,
            } => folder::load_folder(path, *size, *channels),
        }
    }

    /// Short human text, e.g. "MNIST (built-in, 10,000)", "shapes (20000, 28px)" or a file name.
    pub fn describe(&self) -> String {
        match self {
            DataSource::Mnist => "MNIST (built-in, 10,000)".to_string(),
            DataSource::Shapes { count, size, .. } => format!("shapes ({count}, {size}px)"),
            DataSource::Idx { images, .. } => file_name(images),
            DataSource::Folder {
                path,
                size,
                channels,
            } => {
                let mode = if *channels == 3 { "RGB" } else { "gray" };
                format!("{}/ ({size}px, {mode})", file_name(path))
            }
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// `train-images-idx3-ubyte.gz` -> `train-labels-idx1-ubyte.gz` next to it, if that file exists.
fn detect_labels_file(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    for (from, to) in [
        ("images-idx3", "labels-idx1"),
        ("images.idx3", "labels.idx1"),
    ] {
        if name.contains(from) {
            let candidate = images.with_file_name(name.replace(from, to));
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A file in an image folder that could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// Generative factors of one procedural shape image.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShapeFactors {
    /// 0 square, 1 ellipse, 2 heart.
    pub shape: u8,
    /// In [0.5, 1.0].
    pub scale: f32,
    /// Radians in [0, 2π).
    pub rotation: f32,
    /// Relative centre position in [0.2, 0.8].
    pub x: f32,
    /// Relative centre position in [0.2, 0.8].
    pub y: f32,
}

/// Train/test index lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// An in-memory image dataset (u8 pixels, CHW per image).
pub struct Dataset {
    pub source: DataSource,
    pub width: usize,
    pub height: usize,
    /// 1 or 3.
    pub channels: usize,
    /// N * channels * height * width, CHW order per image, row-major.
    pub pixels: Vec<u8>,
    pub labels: Option<Vec<u32>>,
    /// May be empty; for folders: sorted sub-folder names; for MNIST "0".."9".
    pub label_names: Vec<String>,
    /// Only for Shapes.
    pub factors: Option<Vec<ShapeFactors>>,
    /// Unreadable files in a folder (path + reason).
    pub skipped: Vec<SkippedFile>,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("source", &self.source)
            .field("len", &self.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("channels", &self.channels)
            .field("labels", &self.labels.as_ref().map(|l| l.len()))
            .field("label_names", &self.label_names)
            .field("factors", &self.factors.as_ref().map(|f| f.len()))
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

/// Number of MNIST images reserved for the test split (the last ones).
const MNIST_TEST: usize = 1_000;

impl Dataset {
    /// The number of classes (labels run below it: the named classes, or the largest label
    /// + 1), if the dataset has labels.
    pub fn classes(&self) -> Option<usize> {
        let max = self.labels.as_ref()?.iter().copied().max()? as usize;
        Some(self.label_names.len().max(max + 1))
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len().checked_div(self.image_len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The source's description, with the number of files an image folder skipped
    /// (e.g. `digits/ (28px, gray), 2 unreadable files skipped`).
    pub fn describe(&self) -> String {
        match self.skipped.len() {
            0 => self.source.describe(),
            1 => format!("{}, 1 unreadable file skipped", self.source.describe()),
            n => format!("{}, {n} unreadable files skipped", self.source.describe()),
        }
    }

    /// The skipped files as `path: reason` lines.
    pub fn skipped_report(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|s| format!("{}: {}", s.path.display(), s.reason))
            .collect()
    }

    /// channels * height * width.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The bytes of image `i` (CHW). Panics if `i >= len()`.
    pub fn image_u8(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Deterministic split.
    ///
    /// MNIST: first 9,000 train, last 1,000 test, in file order (the file is pre-shuffled).
    /// Others: a permutation seeded by `seed`; the last `max(1, n/10)` are test, the rest train.
    /// Both lists are returned sorted ascending. Needs at least 2 images.
    pub fn split(&self, seed: u64) -> Result<Split, DataError> {
        let n = self.len();
        if n < 2 {
            return Err(DataError::Invalid(format!(
                "{}: need at least 2 images to make a train/test split, have {n}",
                self.source.describe()
            )));
        }
        if self.source == DataSource::Mnist {
            let n_test = if n > MNIST_TEST {
                MNIST_TEST
            } else {
                (n / 10).max(1)
            };
            let cut = n - n_test;
            return Ok(Split {
                train: (0..cut).collect(),
                test: (cut..n).collect(),
            });
        }
        let mut perm: Vec<usize> = (0..n).collect();
        SplitMix64::new(seed).shuffle(&mut perm);
        let n_test = (n / 10).max(1);
        let mut test = perm.split_off(n - n_test);
        let mut train = perm;
        train.sort_unstable();
        test.sort_unstable();
        Ok(Split { train, test })
    }

    /// Fill `out` (cleared first) with images `idx` as f32 in [0, 1], CHW, one after another.
    /// Panics if an index is out of range.
    pub fn gather_f32(&self, idx: &[usize], out: &mut Vec<f32>) {
        out.clear();
        let n = self.image_len();
        out.reserve(idx.len() * n);
        for &i in idx {
            let img = &self.pixels[i * n..(i + 1) * n];
            // u8 → f32 in [0, 1]; a division (exact, and vectorised) rather than a table.
            out.extend(img.iter().map(|&b| b as f32 / 255.0));
        }
    }
}

static MNIST_IMAGES_GZ: &[u8] = include_bytes!("../../assets/mnist-10k-images-idx3-ubyte.gz");
static MNIST_LABELS_GZ: &[u8] = include_bytes!("../../assets/mnist-10k-labels-idx1-ubyte.gz");

/// The built-in MNIST (10,000 28×28 digits, labels 0..9), decoded from embedded IDX bytes.
pub fn builtin_mnist() -> Result<Dataset, DataError> {
    let images_name = Path::new("mnist-10k-images-idx3-ubyte.gz (built-in)");
    let labels_name = Path::new("mnist-10k-labels-idx1-ubyte.gz (built-in)");
    let images = idx::parse_images_bytes(MNIST_IMAGES_GZ, images_name)?;
    let labels = idx::parse_labels_bytes(MNIST_LABELS_GZ, labels_name)?;
    let mut ds = idx::assemble(images, Some(labels), images_name, Some(labels_name))?;
    ds.source = DataSource::Mnist;
    ds.label_names = (0..10).map(|d: u32| d.to_string()).collect();
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_mnist_loads_and_splits() {
        let ds = builtin_mnist().unwrap();
        assert_eq!(ds.len(), 10_000);
        assert_eq!((ds.width, ds.height, ds.channels), (28, 28, 1));
        assert_eq!(ds.pixels.len(), 10_000 * 784);
        let labels = ds.labels.as_ref().unwrap();
        assert_eq!(labels.len(), 10_000);
        for d in 0..10u32 {
            assert!(labels.contains(&d), "digit {d} missing");
        }
        assert!(labels.iter().all(|&l| l <= 9));
        assert_eq!(
            ds.label_names,
            (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
        );
        let split = ds.split(123).unwrap();
        assert_eq!(split.train, (0..9000).collect::<Vec<_>>());
        assert_eq!(split.test, (9000..10_000).collect::<Vec<_>>());
        // the seed does not matter for MNIST
        assert_eq!(ds.split(7).unwrap(), split);
        assert_eq!(DataSource::parse("mnist").unwrap(), DataSource::Mnist);
        assert_eq!(
            DataSource::Mnist.describe(),
            "MNIST (built-in, 10,000)".to_string()
        );
    }

    #[test]
    fn gather_f32_converts() {
        let ds = builtin_mnist().unwrap();
        let mut out = vec![7.0; 3];
        ds.gather_f32(&[5, 0, 5], &mut out);
        assert_eq!(out.len(), 3 * 784);
        for (k, &i) in [5usize, 0, 5].iter().enumerate() {
            let src = ds.image_u8(i);
            let dst = &out[k * 784..(k + 1) * 784];
            for (a, b) in src.iter().zip(dst) {
                assert_eq!(*a as f32 / 255.0, *b);
            }
        }
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(out.contains(&1.0));
        ds.gather_f32(&[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn fashion_mnist_via_parse() {
        // CI and developers have `shared/` beside the clone.
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/datasets/fashion-mnist-train-images-idx3-ubyte.gz"
        );
        if !Path::new(p).exists() {
            eprintln!("skipping: {p} not present");
            return;
        }
        let src = DataSource::parse(p).unwrap();
        match &src {
            DataSource::Idx { labels, .. } => {
                let l = labels.as_ref().unwrap();
                assert!(l
                    .to_string_lossy()
                    .ends_with("fashion-mnist-train-labels-idx1-ubyte.gz"));
            }
            other => panic!("expected Idx, got {other:?}"),
        }
        assert_eq!(src.describe(), "fashion-mnist-train-images-idx3-ubyte.gz");
        let ds = src.load().unwrap();
        assert_eq!(ds.len(), 60_000);
        assert_eq!((ds.width, ds.height, ds.channels), (28, 28, 1));
        assert_eq!(ds.labels.as_ref().unwrap().len(), 60_000);
        assert_eq!(ds.label_names.len(), 10);
        let split = ds.split(1).unwrap();
        assert_eq!(split.test.len(), 6_000);
        assert_eq!(split.train.len(), 54_000);
        let mut all: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..60_000).collect::<Vec<_>>());
        assert_eq!(ds.split(1).unwrap(), split);
        assert_ne!(ds.split(2).unwrap().test, split.test);
    }

    #[test]
    fn parse_words_and_paths() {
        assert_eq!(
            DataSource::parse("shapes").unwrap(),
            DataSource::Shapes {
                count: 20_000,
                size: 28,
                seed: 0
            }
        );
        let err = DataSource::parse("/no/such/dir/data-xyz.idx").unwrap_err();
        assert!(err.to_string().contains("data-xyz.idx"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let src = DataSource::parse(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(
            src,
            DataSource::Folder {
                path: dir.path().to_path_buf(),
                size: 28,
                channels: 1
            }
        );
        // labels auto-detection: raw (non-.gz) file with the matching labels file present
        let img = dir.path().join("t10k-images-idx3-ubyte");
        let lab = dir.path().join("t10k-labels-idx1-ubyte");
        std::fs::write(&img, b"x").unwrap();
        let src = DataSource::parse(img.to_str().unwrap()).unwrap();
        assert_eq!(
            src,
            DataSource::Idx {
                images: img.clone(),
                labels: None
            }
        );
        std::fs::write(&lab, b"x").unwrap();
        let src = DataSource::parse(img.to_str().unwrap()).unwrap();
        assert_eq!(
            src,
            DataSource::Idx {
                images: img.clone(),
                labels: Some(lab)
            }
        );
    }

    #[test]
    fn datasource_serde_round_trip() {
        let all = vec![
            DataSource::Mnist,
            DataSource::Shapes {
                count: 500,
                size: 32,
                seed: 9,
            },
            DataSource::Idx {
                images: PathBuf::from("/a/b-images-idx3-ubyte.gz"),
                labels: Some(PathBuf::from("/a/b-labels-idx1-ubyte.gz")),
            },
            DataSource::Idx {
                images: PathBuf::from("x.idx"),
                labels: None,
            },
            DataSource::Folder {
                path: PathBuf::from("/photos"),
                size: 64,
                channels: 3,
            },
        ];
        for s in &all {
            let json = serde_json::to_string(s).unwrap();
            let back: DataSource = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, s, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&DataSource::Mnist).unwrap(),
            r#"{"kind":"mnist"}"#
        );
        let f: ShapeFactors = serde_json::from_str(
            &serde_json::to_string(&ShapeFactors {
                shape: 2,
                scale: 0.75,
                rotation: 1.5,
                x: 0.3,
                y: 0.7,
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(f.shape, 2);
    }

    #[test]
    fn split_small_sets() {
        let mk = |n: usize| Dataset {
            source: DataSource::Shapes {
                count: n,
                size: 8,
                seed: 0,
            },
            width: 2,
            height: 2,
            channels: 1,
            pixels: vec![0; n * 4],
            labels: None,
            label_names: vec![],
            factors: None,
            skipped: vec![],
        };
        assert!(mk(0).split(0).is_err());
        assert!(mk(1).split(0).is_err());
        let s = mk(2).split(0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (1, 1));
        let s = mk(25).split(0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (23, 2));
    }
}
