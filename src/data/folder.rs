//! Image folders: files directly in the folder (no labels), or in its immediate sub-folders
//! (sub-folder name = label). Images are decoded in parallel, converted to gray or RGB,
//! centre-cropped to a square and resized.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageReader, Limits, RgbImage};

use super::{DataError, DataSource, Dataset, SkippedFile};

/// Extensions (lower-case) treated as images.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "gif"];
/// Valid resize targets.
pub const MIN_SIZE: usize = 4;
pub const MAX_SIZE: usize = 1024;
/// Decoder limits, so a lying header cannot allocate gigabytes.
const MAX_DIMENSION: u32 = 16_384;
const MAX_DECODE_ALLOC: u64 = 512 << 20;
const MIN_DECODE_ALLOC: u64 = 16 << 20;
/// Decoded bytes per byte of file that any real image stays under (deflate tops out near
/// 1,032:1, GIF's LZW near 2,730:1 at 4 bytes per decoded pixel).
const MAX_EXPANSION: u64 = 16_384;

/// The most the decoder may allocate for a file of `file_len` bytes: an image can only be as
/// large as its compressed data can describe, so a header claiming more is not believed.
pub fn decode_alloc_limit(file_len: u64) -> u64 {
    file_len
        .saturating_mul(MAX_EXPANSION)
        .clamp(MIN_DECODE_ALLOC, MAX_DECODE_ALLOC)
}
/// Largest total pixel buffer we agree to build.
const MAX_TOTAL_BYTES: usize = 4 << 30;

fn is_image_file(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// What a folder holds, each list sorted.
struct Listing {
    images: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    /// Regular files that are not images (reported, not loaded).
    others: Vec<PathBuf>,
}

/// List the entries directly inside `dir`.
fn list_dir(dir: &Path) -> Result<Listing, DataError> {
    let io_err = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        // Follows symlinks; entries that vanish or cannot be stat'ed are ignored.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            dirs.push(path);
        } else if meta.is_file() && is_image_file(&path) {
            files.push(path);
        } else if meta.is_file() {
            others.push(path);
        }
    }
    files.sort();
    dirs.sort();
    others.sort();
    Ok(Listing {
        images: files,
        dirs,
        others,
    })
}

fn not_an_image(path: PathBuf) -> SkippedFile {
    SkippedFile {
        path,
        reason: format!(
            "not an image file (expected one of: {})",
            IMAGE_EXTENSIONS.join(", ")
        ),
    }
}

/// Largest image file read into memory (far above any real photo the app trains on).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// Decode one image file and turn it into `channels`×`size`×`size` CHW bytes.
pub fn decode_image(path: &Path, size: usize, channels: usize) -> Result<Vec<u8>, String> {
    let file_len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if file_len > MAX_FILE_BYTES {
        return Err(format!(
            "file too large for an image ({} MB; at most {} MB)",
            file_len >> 20,
            MAX_FILE_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    decode_image_bytes(&bytes, size, channels)
}

/// Decode an image file's bytes into `channels`×`size`×`size` CHW bytes. The decoder may
/// allocate at most [`decode_alloc_limit`] for the file's size; a decoder that panics on a
/// malformed file is an error, not a crash.
pub fn decode_image_bytes(bytes: &[u8], size: usize, channels: usize) -> Result<Vec<u8>, String> {
    crate::util::contained(|| decode_contained(bytes, size, channels))
        .map_err(|e| e.replace("malformed record", "malformed image"))
}

fn decode_contained(bytes: &[u8], size: usize, channels: usize) -> Result<Vec<u8>, String> {
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(decode_alloc_limit(bytes.len() as u64));
    reader.limits(limits);
    if reader.format().is_none() {
        return Err("not a PNG, JPEG, BMP or GIF image".to_string());
    }
    let img = reader.decode().map_err(|e| e.to_string())?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(format!("image has zero size ({w}x{h})"));
    }
    let side = u32::try_from(size).map_err(|_| format!("bad target size {size}"))?;
    let s = w.min(h);
    let (x0, y0) = ((w - s) / 2, (h - s) / 2);
    match channels {
        1 => {
            let gray = flatten_alpha(img).into_luma8();
            let crop = imageops::crop_imm(&gray, x0, y0, s, s).to_image();
            let out = if s == side {
                crop
            } else {
                imageops::resize(&crop, side, side, FilterType::Triangle)
            };
            Ok(out.into_raw())
        }
        _ => {
            let rgb = flatten_alpha(img).into_rgb8();
            let crop = imageops::crop_imm(&rgb, x0, y0, s, s).to_image();
            let out = if s == side {
                crop
            } else {
                imageops::resize(&crop, side, side, FilterType::Triangle)
            };
            Ok(hwc_to_chw3(out.as_raw(), size * size))
        }
    }
}

/// Composite transparent images onto black (so transparent areas do not show hidden colours).
fn flatten_alpha(img: DynamicImage) -> DynamicImage {
    if !img.color().has_alpha() {
        return img;
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut rgb = RgbImage::new(w, h);
    for (dst, src) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(src[3]);
        for c in 0..3 {
            dst[c] = ((u16::from(src[c]) * a + 127) / 255) as u8;
        }
    }
    DynamicImage::ImageRgb8(rgb)
}

fn hwc_to_chw3(hwc: &[u8], plane: usize) -> Vec<u8> {
    let mut out = vec![0u8; plane * 3];
    for (p, px) in hwc.chunks_exact(3).enumerate() {
        out[p] = px[0];
        out[plane + p] = px[1];
        out[2 * plane + p] = px[2];
    }
    out
}

/// Decode all `paths` in parallel, keeping their order.
fn decode_all(paths: &[&Path], size: usize, channels: usize) -> Vec<Result<Vec<u8>, String>> {
    if paths.is_empty() {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len());
    let per = paths.len().div_ceil(threads);
    let decode = |p: &Path| decode_image(p, size, channels);
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(per)
            .map(|chunk| {
                let decode = &decode;
                let handle =
                    scope.spawn(move || chunk.iter().map(|p| decode(p)).collect::<Vec<_>>());
                (chunk.len(), handle)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| {
                h.join().unwrap_or_else(|_| {
                    (0..n)
                        .map(|_| Err("decoder thread panicked".to_string()))
                        .collect()
                })
            })
            .collect()
    })
}

/// The files that make up a folder's dataset, without reading them.
struct DatasetFiles {
    /// Each image file with its class index into `classes` (`None`: unlabelled).
    items: Vec<(PathBuf, Option<usize>)>,
    /// The sub-folders that hold images, in order (empty when unlabelled).
    classes: Vec<String>,
    /// Files of the folders that make up the dataset that are not images at all.
    not_images: Vec<PathBuf>,
}

/// The images in the sub-folders of `path` (sub-folder name = class) when any sub-folder
/// has some, else the folder's own, unlabelled.
fn dataset_files(path: &Path) -> Result<DatasetFiles, DataError> {
    let root = list_dir(path)?;
    let mut items = Vec::new();
    let mut classes: Vec<String> = Vec::new();
    let mut not_images = Vec::new();
    for dir in &root.dirs {
        let Listing {
            images: files,
            others,
            ..
        } = list_dir(dir)?;
        if files.is_empty() {
            continue;
        }
        not_images.extend(others);
        let class = classes.len();
        classes.push(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        items.extend(files.into_iter().map(|f| (f, Some(class))));
    }
    if items.is_empty() {
        // No sub-folder has images: use the root files, unlabelled.
        items.extend(root.images.into_iter().map(|f| (f, None)));
        not_images.extend(root.others);
    }
    Ok(DatasetFiles {
        items,
        classes,
        not_images,
    })
}

/// Files [`probe`] looks at (evenly spaced through the folder).
const PROBE_FILES: usize = 64;
/// Of those, files decoded to tell colour from grey stored as RGB.
const PROBE_DECODES: usize = 8;
/// The largest side a folder defaults to (bigger images are resized down to it).
pub const PROBE_MAX_SIDE: usize = 64;

/// The size and channels a folder's images suggest, for when the user named neither: the
/// median shorter side of up to [`PROBE_FILES`] files (from their headers), rounded down to
/// a multiple of 4 in 8..=[`PROBE_MAX_SIDE`]; RGB when the decoded images have colour (not
/// merely RGB files of grey pixels). `None` when no file could be read (loading the folder
/// then says why).
pub fn probe(path: &Path) -> Option<(usize, usize)> {
    let files = dataset_files(path).ok()?.items;
    if files.is_empty() {
        return None;
    }
    let step = files.len().div_ceil(PROBE_FILES);
    let mut sides = Vec::new();
    let mut coloured = Vec::new();
    for (f, _) in files.iter().step_by(step) {
        let header = ImageReader::open(f)
            .ok()
            .and_then(|r| r.with_guessed_format().ok())
            .and_then(|r| r.into_decoder().ok());
        if let Some(d) = header {
            let (w, h) = image::ImageDecoder::dimensions(&d);
            if w > 0 && h > 0 {
                sides.push(w.min(h) as usize);
                if image::ImageDecoder::color_type(&d).has_color() {
                    coloured.push(f);
                }
            }
        }
    }
    if sides.is_empty() {
        return None;
    }
    sides.sort_unstable();
    let side = (sides[sides.len() / 2].min(PROBE_MAX_SIDE) / 4 * 4).max(8);
    let colour = coloured
        .iter()
        .take(PROBE_DECODES)
        .any(|f| decode_image(f, 16, 3).is_ok_and(|px| has_colour(&px)));
    Some((side, if colour { 3 } else { 1 }))
}

/// Whether CHW RGB bytes hold any pixel whose channels differ by more than rounding.
fn has_colour(px: &[u8]) -> bool {
    let plane = px.len() / 3;
    (0..plane).any(|i| {
        let (r, g, b) = (px[i], px[plane + i], px[2 * plane + i]);
        r.abs_diff(g) > 2 || g.abs_diff(b) > 2
    })
}

/// Load an image folder as described in the module docs.
pub fn load_folder(path: &Path, size: usize, channels: usize) -> Result<Dataset, DataError> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(DataError::Invalid(format!(
            "{}: image size must be in {MIN_SIZE}..={MAX_SIZE}, got {size}",
            path.display()
        )));
    }
    if channels != 1 && channels != 3 {
        return Err(DataError::Invalid(format!(
            "{}: channels must be 1 or 3, got {channels}",
            path.display()
        )));
    }
    let meta = std::fs::metadata(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            msg: "not a folder".into(),
        });
    }

    let DatasetFiles {
        items,
        classes,
        not_images,
    } = dataset_files(path)?;
    let labelled = !classes.is_empty();

    let img_len = channels * size * size;
    let max_images = MAX_TOTAL_BYTES / img_len;
    if items.len() > max_images {
        return Err(DataError::Invalid(format!(
            "{}: {} images of {channels}x{size}x{size} exceed the 4 GiB limit",
            path.display(),
            items.len()
        )));
    }

    let refs: Vec<&Path> = items.iter().map(|(p, _)| p.as_path()).collect();
    let decoded = decode_all(&refs, size, channels);

    let mut pixels = Vec::with_capacity(items.len() * img_len);
    let mut raw_labels = Vec::new();
    let mut skipped = Vec::new();
    for ((file, class), result) in items.into_iter().zip(decoded) {
        match result {
            Ok(bytes) if bytes.len() == img_len => {
                pixels.extend_from_slice(&bytes);
                raw_labels.push(class);
            }
            Ok(bytes) => skipped.push(SkippedFile {
                path: file,
                reason: format!("decoded to {} bytes, expected {img_len}", bytes.len()),
            }),
            Err(reason) => skipped.push(SkippedFile { path: file, reason }),
        }
    }
    skipped.extend(not_images.into_iter().map(not_an_image));
    if raw_labels.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            skipped: skipped.len(),
        });
    }

    // Keep only classes that ended up with at least one image, re-indexed in sorted order.
    let (labels, label_names) = if labelled {
        let mut used = vec![false; classes.len()];
        for c in raw_labels.iter().flatten() {
            used[*c] = true;
        }
        let mut remap = vec![0u32; classes.len()];
        let mut names = Vec::new();
        for (c, name) in classes.into_iter().enumerate() {
            if used[c] {
                remap[c] = names.len() as u32;
                names.push(name);
            }
        }
        let labels = raw_labels
            .iter()
            .map(|c| c.map_or(0, |c| remap[c]))
            .collect();
        (Some(labels), names)
    } else {
        (None, Vec::new())
    };

    Ok(Dataset {
        source: DataSource::Folder {
            path: path.to_path_buf(),
            size,
            channels,
        },
        width: size,
        height: size,
        channels,
        pixels,
        labels,
        label_names,
        factors: None,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, Rgba, RgbaImage};

    fn gradient_rgb(w: u32, h: u32) -> RgbImage {
        ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 5) as u8, (y * 3) as u8, 200]))
    }

    /// cats/: rgb png 40x30, rgba png 20x50, gray jpeg 33x33, corrupt png
    /// dogs/: 16-bit gray png 64x64, rgb bmp 17x9, rgb gif 12x12
    /// root: notes.txt, README (no ext), a png that is ignored because sub-folders have images
    fn build_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let cats = dir.path().join("cats");
        let dogs = dir.path().join("dogs");
        let empty = dir.path().join("empty_sub");
        for d in [&cats, &dogs, &empty] {
            std::fs::create_dir(d).unwrap();
        }
        gradient_rgb(40, 30).save(cats.join("a.png")).unwrap();
        let rgba: RgbaImage =
            ImageBuffer::from_fn(20, 50, |x, y| Rgba([255, 255, 255, ((x + y) * 3) as u8]));
        rgba.save(cats.join("b.PNG")).unwrap();
        let gray: GrayImage = ImageBuffer::from_fn(33, 33, |x, _| Luma([(x * 7) as u8]));
        gray.save(cats.join("c.jpg")).unwrap();
        let junk: Vec<u8> = (0..500u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        std::fs::write(cats.join("corrupt.png"), junk).unwrap();
        let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
            ImageBuffer::from_fn(64, 64, |x, y| Luma([(x * 1000 + y) as u16]));
        g16.save(dogs.join("d16.png")).unwrap();
        gradient_rgb(17, 9).save(dogs.join("e.bmp")).unwrap();
        gradient_rgb(12, 12).save(dogs.join("f.gif")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
        std::fs::write(dogs.join("notes.txt"), "hello").unwrap();
        std::fs::write(dir.path().join("README"), "hello").unwrap();
        gradient_rgb(10, 10)
            .save(dir.path().join("root.png"))
            .unwrap();
        dir
    }

    #[test]
    fn loads_labelled_tree() {
        let dir = build_tree();
        let ds = load_folder(dir.path(), 16, 1).unwrap();
        assert_eq!(ds.len(), 6, "{:?}", ds.skipped);
        assert_eq!((ds.width, ds.height, ds.channels), (16, 16, 1));
        assert_eq!(ds.pixels.len(), 6 * 256);
        assert_eq!(ds.label_names, vec!["cats", "dogs"]);
        assert_eq!(ds.labels.as_deref(), Some(&[0, 0, 0, 1, 1, 1][..]));
        // The corrupt image, and the one non-image file inside a class folder.
        assert_eq!(ds.skipped.len(), 2, "{:?}", ds.skipped);
        assert!(ds.skipped[0].path.ends_with("cats/corrupt.png"));
        assert!(!ds.skipped[0].reason.is_empty());
        assert!(ds.skipped[1].path.ends_with("dogs/notes.txt"));
        assert!(ds.skipped[1].reason.contains("not an image"));
        // 16-bit gray image is a horizontal ramp: left dark, right bright
        let d16 = ds.image_u8(3);
        assert!(d16[8 * 16 + 15] > d16[8 * 16] + 100);
        // white with alpha rising to the bottom-right, composited on black:
        // crop rows 15..35, so alpha goes from 45 (top-left) to 159 (bottom-right)
        let b = ds.image_u8(1);
        assert!(b[0] < 60 && b[255] > 130, "{} {}", b[0], b[255]);

        let rgb = load_folder(dir.path(), 12, 3).unwrap();
        assert_eq!(rgb.len(), 6);
        assert_eq!(rgb.channels, 3);
        assert_eq!(rgb.image_len(), 3 * 12 * 12);
        assert_eq!(rgb.pixels.len(), 6 * 3 * 144);
        // blue plane of the first (RGB gradient) image is constant 200
        let a = rgb.image_u8(0);
        assert!(a[288..432].iter().all(|&v| v.abs_diff(200) <= 1));
        // deterministic
        let again = load_folder(dir.path(), 12, 3).unwrap();
        assert_eq!(again.pixels, rgb.pixels);
        // through DataSource
        let src = DataSource::Folder {
            path: dir.path().to_path_buf(),
            size: 16,
            channels: 1,
        };
        assert_eq!(src.load().unwrap().pixels, ds.pixels);
    }

    #[test]
    fn unlabelled_root_files() {
        let dir = tempfile::tempdir().unwrap();
        gradient_rgb(30, 20).save(dir.path().join("x.png")).unwrap();
        gradient_rgb(20, 30)
            .save(dir.path().join("y.jpeg"))
            .unwrap();
        std::fs::create_dir(dir.path().join("nothing")).unwrap();
        let ds = load_folder(dir.path(), 8, 1).unwrap();
        assert_eq!(ds.len(), 2);
        assert!(ds.labels.is_none());
        assert!(ds.label_names.is_empty());
    }

    #[test]
    fn empty_and_all_corrupt_fail() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_folder(dir.path(), 28, 1).unwrap_err().to_string();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(e.contains(&name), "{e}");
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert!(load_folder(dir.path(), 28, 1).is_err());
        let sub = dir.path().join("class");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("bad1.png"), b"not a png").unwrap();
        std::fs::write(sub.join("bad2.jpg"), b"").unwrap();
        std::fs::write(dir.path().join("bad3.gif"), b"GIF89a").unwrap();
        let e = load_folder(dir.path(), 28, 1).unwrap_err();
        assert!(matches!(e, DataError::Empty { skipped: 2, .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(&name) && msg.contains('2'), "{msg}");
    }

    #[test]
    fn bad_parameters_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_folder(dir.path(), 28, 2).is_err());
        assert!(load_folder(dir.path(), 0, 1).is_err());
        let e = load_folder(&dir.path().join("missing"), 28, 1).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn lying_header_is_rejected_quickly() {
        // A PNG header claiming 100000x100000 with no data.
        let dir = tempfile::tempdir().unwrap();
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(100_000u32.to_be_bytes());
        ihdr.extend(100_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        png.extend(13u32.to_be_bytes());
        png.extend(&ihdr);
        png.extend([0, 0, 0, 0]); // bad CRC too
        let p = dir.path().join("huge.png");
        std::fs::write(&p, png).unwrap();
        assert!(decode_image(&p, 28, 1).is_err());
    }

    #[test]
    fn probe_suggests_the_typical_side_capped_and_colour_only_when_there_is_some() {
        let dir = tempfile::tempdir().unwrap();
        // Mostly 48×40 colour images (shorter side 40), one 200 px and one 12 px outlier.
        for i in 0..5 {
            gradient_rgb(48, 40)
                .save(dir.path().join(format!("c{i}.png")))
                .unwrap();
        }
        gradient_rgb(200, 200)
            .save(dir.path().join("big.png"))
            .unwrap();
        gradient_rgb(12, 12)
            .save(dir.path().join("small.png"))
            .unwrap();
        assert_eq!(probe(dir.path()), Some((40, 3)));

        // Gray pixels stored as RGB files are gray; big images default to 64 px.
        let gray = tempfile::tempdir().unwrap();
        for i in 0..3 {
            let img: RgbImage = ImageBuffer::from_fn(100, 90, |x, _| {
                let v = (x * 2) as u8;
                Rgb([v, v, v])
            });
            img.save(gray.path().join(format!("g{i}.png"))).unwrap();
        }
        assert_eq!(probe(gray.path()), Some((64, 1)));
        // A side that is not a multiple of 4 rounds down; the labelled sub-folders count.
        let tree = build_tree();
        let (side, channels) = probe(tree.path()).unwrap();
        assert_eq!(side % 4, 0);
        assert!((8..=64).contains(&side), "{side}");
        assert_eq!(channels, 3);
        // Nothing readable: no suggestion.
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("x.png"), b"not a png").unwrap();
        assert_eq!(probe(empty.path()), None);
    }
}
