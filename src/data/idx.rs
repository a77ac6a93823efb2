//! IDX files (the MNIST format): gzip-compressed (detected by magic bytes) or raw, big-endian.
//!
//! Images: magic `0x00000803` (u8, dims count, rows, cols) or `0x00000804`
//! (u8, dims count, rows, cols, channels with channels 1 or 3, stored HWC and converted to CHW).
//! Labels: magic `0x00000801` (u8, dim count).
//!
//! Nothing is allocated from header values before they are checked against the real data:
//! raw files are checked against the file length, gzip streams are decompressed through
//! `Read::take(expected + 1)` and the total is capped at [`MAX_DATA_BYTES`].

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{DataError, DataSource, Dataset};

/// IDX magic for u8 images with 3 dims (count, rows, cols).
pub const MAGIC_IMAGES: u32 = 0x0000_0803;
/// IDX magic for u8 images with 4 dims (count, rows, cols, channels).
pub const MAGIC_IMAGES_4D: u32 = 0x0000_0804;
/// IDX magic for u8 labels (count).
pub const MAGIC_LABELS: u32 = 0x0000_0801;
/// Largest payload a header may claim (4 GiB).
pub const MAX_DATA_BYTES: u64 = 4 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Initial buffer for gzip payloads; it grows (doubling) only as real data arrives, so a
/// tiny stream whose header claims gigabytes never allocates more than twice what it holds.
const GZ_INITIAL_CAPACITY: u64 = 64 << 10;

/// Images decoded from an IDX file, pixels CHW per image.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Images,
    Labels,
}

fn format_err(path: &Path, msg: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Load an IDX images file and, optionally, its labels file.
pub fn load_idx(images: &Path, labels: Option<&Path>) -> Result<Dataset, DataError> {
    let imgs = read_images_file(images)?;
    let labs = match labels {
        Some(l) => Some(read_labels_file(l)?),
        None => None,
    };
    assemble(imgs, labs, images, labels)
}

/// Read an IDX images file (gzip or raw).
pub fn read_images_file(path: &Path) -> Result<IdxImages, DataError> {
    let (dims, data) = read_file(path, Kind::Images)?;
    Ok(to_images(dims, data))
}

/// Read an IDX labels file (gzip or raw).
pub fn read_labels_file(path: &Path) -> Result<Vec<u8>, DataError> {
    Ok(read_file(path, Kind::Labels)?.1)
}

/// Parse IDX images from bytes in memory (gzip or raw); `name` is used in error messages.
pub fn parse_images_bytes(bytes: &[u8], name: &Path) -> Result<IdxImages, DataError> {
    let (dims, data) = read_bytes(bytes, name, Kind::Images)?;
    Ok(to_images(dims, data))
}

/// Parse IDX labels from bytes in memory (gzip or raw); `name` is used in error messages.
pub fn parse_labels_bytes(bytes: &[u8], name: &Path) -> Result<Vec<u8>, DataError> {
    Ok(read_bytes(bytes, name, Kind::Labels)?.1)
}

/// Combine images and optional labels into a [`Dataset`] with an `Idx` source.
pub fn assemble(
    images: IdxImages,
    labels: Option<Vec<u8>>,
    images_path: &Path,
    labels_path: Option<&Path>,
) -> Result<Dataset, DataError> {
    let (labels, label_names) = match labels {
        None => (None, Vec::new()),
        Some(l) => {
            if l.len() != images.count {
                return Err(DataError::LabelMismatch {
                    images: images_path.to_path_buf(),
                    labels: labels_path.map_or_else(PathBuf::new, Path::to_path_buf),
                    images_count: images.count,
                    labels_count: l.len(),
                });
            }
            // Names cover 0..=max so that a label value always indexes `label_names`.
            let max = l.iter().copied().max().unwrap_or(0);
            let names = (0..=u32::from(max)).map(|v| v.to_string()).collect();
            (Some(l.into_iter().map(u32::from).collect()), names)
        }
    };
    Ok(Dataset {
        source: DataSource::Idx {
            images: images_path.to_path_buf(),
            labels: labels_path.map(Path::to_path_buf),
        },
        width: images.cols,
        height: images.rows,
        channels: images.channels,
        pixels: images.pixels,
        labels,
        label_names,
        factors: None,
        skipped: Vec::new(),
    })
}

fn to_images(dims: Vec<usize>, data: Vec<u8>) -> IdxImages {
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let channels = dims.get(3).copied().unwrap_or(1);
    let pixels = if channels == 1 {
        data
    } else {
        hwc_to_chw(&data, rows * cols, channels)
    };
    IdxImages {
        count,
        rows,
        cols,
        channels,
        pixels,
    }
}

/// Convert a sequence of HWC images to CHW.
fn hwc_to_chw(data: &[u8], plane: usize, channels: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    let img = plane * channels;
    for (src, dst) in data.chunks_exact(img).zip(out.chunks_exact_mut(img)) {
        for c in 0..channels {
            let dplane = &mut dst[c * plane..(c + 1) * plane];
            for (p, d) in dplane.iter_mut().enumerate() {
                *d = src[p * channels + c];
            }
        }
    }
    out
}

fn read_file(path: &Path, kind: Kind) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let io_err = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(format_err(path, "is a folder, not an IDX file"));
    }
    let mut head = [0u8; 2];
    let n = read_upto(&mut file, &mut head).map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    if n == 2 && head == GZIP_MAGIC {
        read_idx(GzDecoder::new(BufReader::new(file)), true, None, path, kind)
    } else {
        read_idx(BufReader::new(file), false, Some(meta.len()), path, kind)
    }
}

fn read_bytes(bytes: &[u8], name: &Path, kind: Kind) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        read_idx(GzDecoder::new(bytes), true, None, name, kind)
    } else {
        read_idx(bytes, false, Some(bytes.len() as u64), name, kind)
    }
}

/// Read until `buf` is full or EOF; returns the number of bytes read.
fn read_upto<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Parse header + payload from `r`. `raw_len` is the exact total length when known (raw data).
fn read_idx<R: Read>(
    mut r: R,
    gz: bool,
    raw_len: Option<u64>,
    path: &Path,
    kind: Kind,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let read_err = |e: std::io::Error| {
        if gz {
            format_err(path, format!("corrupt gzip data: {e}"))
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    };

    // Magic.
    let mut m = [0u8; 4];
    let n = read_upto(&mut r, &mut m).map_err(read_err)?;
    if n == 0 {
        return Err(format_err(
            path,
            if gz {
                "empty gzip stream (no IDX data)"
            } else {
                "empty file"
            },
        ));
    }
    if n < 4 {
        return Err(format_err(
            path,
            format!("too short for an IDX header ({n} bytes)"),
        ));
    }
    let magic = u32::from_be_bytes(m);
    let ndims = match (kind, magic) {
        (Kind::Images, MAGIC_IMAGES) => 3,
        (Kind::Images, MAGIC_IMAGES_4D) => 4,
        (Kind::Labels, MAGIC_LABELS) => 1,
        (Kind::Images, _) => {
            let hint = if magic == MAGIC_LABELS {
                " (this looks like an IDX labels file)"
            } else {
                ""
            };
            return Err(format_err(
                path,
                format!(
                    "bad magic 0x{magic:08x}, expected 0x{MAGIC_IMAGES:08x} (IDX images){hint}"
                ),
            ));
        }
        (Kind::Labels, _) => {
            let hint = if magic == MAGIC_IMAGES || magic == MAGIC_IMAGES_4D {
                " (this looks like an IDX images file)"
            } else {
                ""
            };
            return Err(format_err(
                path,
                format!(
                    "bad magic 0x{magic:08x}, expected 0x{MAGIC_LABELS:08x} (IDX labels){hint}"
                ),
            ));
        }
    };

    // Dimensions.
    let mut dbuf = [0u8; 16];
    let dbuf = &mut dbuf[..ndims * 4];
    let n = read_upto(&mut r, dbuf).map_err(read_err)?;
    if n < dbuf.len() {
        return Err(format_err(
            path,
            format!(
                "truncated IDX header: expected {} dimension bytes, file has {n}",
                dbuf.len()
            ),
        ));
    }
    let dims: Vec<u64> = dbuf
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let header_len = 4 + 4 * ndims as u64;

    let count = dims[0];
    let what = match kind {
        Kind::Images => {
            let (rows, cols) = (dims[1], dims[2]);
            let ch = dims.get(3).copied().unwrap_or(1);
            if count == 0 {
                return Err(format_err(path, "header says 0 images"));
            }
            if rows == 0 || cols == 0 {
                return Err(format_err(
                    path,
                    format!("header says images of {rows}x{cols} pixels (must be non-zero)"),
                ));
            }
            if ch != 1 && ch != 3 {
                return Err(format_err(
                    path,
                    format!("header says {ch} channels per pixel (only 1 or 3 supported)"),
                ));
            }
            if ch == 1 {
                format!("{count} images of {rows}x{cols}")
            } else {
                format!("{count} images of {rows}x{cols}x{ch}")
            }
        }
        Kind::Labels => format!("{count} labels"),
    };
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&b| b <= MAX_DATA_BYTES)
        .ok_or_else(|| {
            format_err(
                path,
                format!("header says {what}, more than the 4 GiB limit; corrupt header?"),
            )
        })?;
    let truncated = |got: u64| {
        format_err(
            path,
            format!("truncated: header says {what} ({expected} bytes), file has {got} bytes"),
        )
    };

    // Raw data: check against the real length before allocating anything.
    if let Some(total) = raw_len {
        let got = total.saturating_sub(header_len);
        if got < expected {
            return Err(truncated(got));
        }
        if got > expected {
            return Err(format_err(
                path,
                format!(
                    "trailing data: header says {what} ({expected} bytes), file has {got} bytes"
                ),
            ));
        }
    }

    let cap = raw_len.map_or(expected.min(GZ_INITIAL_CAPACITY), |_| expected);
    let mut data = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
    (&mut r)
        .take(expected + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    let got = data.len() as u64;
    if got < expected {
        return Err(truncated(got));
    }
    if got > expected {
        return Err(format_err(
            path,
            format!(
                "trailing data: header says {what} ({expected} bytes), file has more than that"
            ),
        ));
    }
    let dims = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| format_err(path, "dimensions too large for this platform"))?;
    Ok((dims, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;
    use std::time::Instant;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    fn images_bytes(n: u32, r: u32, c: u32) -> Vec<u8> {
        let mut v = header(MAGIC_IMAGES, &[n, r, c]);
        v.extend((0..n * r * c).map(|i| (i % 251) as u8));
        v
    }

    fn labels_bytes(n: u32) -> Vec<u8> {
        let mut v = header(MAGIC_LABELS, &[n]);
        v.extend((0..n).map(|i| (i % 3) as u8));
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn err_for(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
        let p = write(dir, name, bytes);
        let e = load_idx(&p, None).unwrap_err().to_string();
        assert!(e.contains(name), "message does not name the file: {e}");
        e
    }

    #[test]
    fn raw_and_gzip_load() {
        let dir = tempfile::tempdir().unwrap();
        let raw = images_bytes(5, 3, 4);
        for (name, bytes) in [
            ("a.idx", raw.clone()),
            ("a.idx.gz", gz(&raw)),
            ("b.bin", gz(&raw)),
        ] {
            let p = write(&dir, name, &bytes);
            let lp = write(&dir, &format!("{name}.labels"), &gz(&labels_bytes(5)));
            let ds = load_idx(&p, Some(&lp)).unwrap();
            assert_eq!(ds.len(), 5);
            assert_eq!((ds.width, ds.height, ds.channels), (4, 3, 1));
            assert_eq!(ds.pixels, raw[16..]);
            assert_eq!(ds.labels.as_deref(), Some(&[0, 1, 2, 0, 1][..]));
            assert_eq!(ds.label_names, vec!["0", "1", "2"]);
        }
    }

    #[test]
    fn rgb_4d_converted_to_chw() {
        let dir = tempfile::tempdir().unwrap();
        // 2 images of 2x2 RGB, HWC: pixel p has (10p+1, 10p+2, 10p+3) + 100*image
        let mut v = header(MAGIC_IMAGES_4D, &[2, 2, 2, 3]);
        for img in 0..2u8 {
            for p in 0..4u8 {
                for c in 1..=3u8 {
                    v.push(100 * img + 10 * p + c);
                }
            }
        }
        let p = write(&dir, "rgb.idx", &gz(&v));
        let ds = load_idx(&p, None).unwrap();
        assert_eq!((ds.len(), ds.channels, ds.width, ds.height), (2, 3, 2, 2));
        assert_eq!(
            ds.image_u8(1),
            &[101, 111, 121, 131, 102, 112, 122, 132, 103, 113, 123, 133]
        );
        // 4-dim with 1 channel works too; 2 channels is rejected
        let mut v = header(MAGIC_IMAGES_4D, &[1, 2, 2, 1]);
        v.extend([1, 2, 3, 4]);
        let p = write(&dir, "one.idx", &v);
        assert_eq!(load_idx(&p, None).unwrap().pixels, vec![1, 2, 3, 4]);
        let mut v = header(MAGIC_IMAGES_4D, &[1, 2, 2, 2]);
        v.extend([0; 8]);
        let e = err_for(&dir, "two.idx", &v);
        assert!(e.contains("channels"), "{e}");
    }

    #[test]
    fn bad_magic() {
        let dir = tempfile::tempdir().unwrap();
        let e = err_for(&dir, "mnist.idx", &labels_bytes(4));
        assert!(
            e.contains("bad magic 0x00000801, expected 0x00000803 (IDX images)"),
            "{e}"
        );
        let p = write(&dir, "lab.idx", &images_bytes(2, 2, 2));
        let img = write(&dir, "img.idx", &images_bytes(2, 2, 2));
        let e = load_idx(&img, Some(&p)).unwrap_err().to_string();
        assert!(e.contains("lab.idx") && e.contains("bad magic"), "{e}");
        let e = err_for(&dir, "junk.gz", &gz(b"hello world, not idx"));
        assert!(e.contains("bad magic"), "{e}");
    }

    #[test]
    fn huge_header_fails_fast_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = header(MAGIC_IMAGES, &[4_000_000_000, 28, 28]);
        v.resize(100, 7);
        let t = Instant::now();
        let e = err_for(&dir, "huge.idx", &v);
        assert!(e.contains("4 GiB"), "{e}");
        let e = err_for(&dir, "huge.idx.gz", &gz(&v));
        assert!(e.contains("4 GiB"), "{e}");
        // under the cap but far more than the file holds
        let mut v = header(MAGIC_IMAGES, &[4_000_000, 28, 28]);
        v.resize(100, 7);
        let e = err_for(&dir, "big.idx", &v);
        assert!(e.contains("truncated"), "{e}");
        let e = err_for(&dir, "big.idx.gz", &gz(&v));
        assert!(e.contains("truncated"), "{e}");
        let mut v = header(MAGIC_LABELS, &[u32::MAX]);
        v.resize(100, 0);
        let p = write(&dir, "biglabels.gz", &gz(&v));
        let e = read_labels_file(&p).unwrap_err().to_string();
        assert!(e.contains("biglabels.gz") && e.contains("truncated"), "{e}");
        assert!(t.elapsed().as_secs_f32() < 2.0);
    }

    #[test]
    fn truncated_and_trailing() {
        let dir = tempfile::tempdir().unwrap();
        let full = images_bytes(10, 28, 28);
        let half = &full[..16 + 10 * 784 / 2];
        let e = err_for(&dir, "half.idx", half);
        assert!(
            e.contains(
                "truncated: header says 10 images of 28x28 (7840 bytes), file has 3920 bytes"
            ),
            "{e}"
        );
        let e = err_for(&dir, "half.idx.gz", &gz(half));
        assert!(
            e.contains(
                "truncated: header says 10 images of 28x28 (7840 bytes), file has 3920 bytes"
            ),
            "{e}"
        );
        let mut extra = full.clone();
        extra.extend([1, 2, 3]);
        let e = err_for(&dir, "extra.idx", &extra);
        assert!(e.contains("trailing"), "{e}");
        let e = err_for(&dir, "extra.idx.gz", &gz(&extra));
        assert!(e.contains("trailing"), "{e}");
        // header cut short
        let e = err_for(&dir, "short.idx", &full[..9]);
        assert!(e.contains("header"), "{e}");
        let e = err_for(&dir, "tiny.idx", &full[..3]);
        assert!(e.contains("too short"), "{e}");
    }

    #[test]
    fn zero_images_and_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = err_for(&dir, "zero.idx", &header(MAGIC_IMAGES, &[0, 28, 28]));
        assert!(e.contains("0 images"), "{e}");
        let e = err_for(&dir, "zerorows.idx", &header(MAGIC_IMAGES, &[3, 0, 28]));
        assert!(e.contains("non-zero"), "{e}");
        let e = err_for(&dir, "empty.idx", b"");
        assert!(e.contains("empty file"), "{e}");
        let e = err_for(&dir, "empty.gz", &gz(b""));
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn label_count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let img = write(&dir, "imgs-idx3.gz", &gz(&images_bytes(5, 2, 2)));
        let lab = write(&dir, "labs-idx1.gz", &gz(&labels_bytes(4)));
        let e = load_idx(&img, Some(&lab)).unwrap_err().to_string();
        assert!(
            e.contains("imgs-idx3.gz") && e.contains("labs-idx1.gz"),
            "{e}"
        );
        assert!(e.contains('4') && e.contains('5'), "{e}");
    }

    #[test]
    fn corrupt_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = vec![0x1f, 0x8b];
        v.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let e = err_for(&dir, "corrupt.gz", &v);
        assert!(e.contains("gzip"), "{e}");
        // valid gzip header, garbage deflate stream
        let mut good = gz(&images_bytes(20, 28, 28));
        let n = good.len();
        for b in &mut good[12..n - 8] {
            *b ^= 0x5a;
        }
        let e = err_for(&dir, "mangled.gz", &good);
        assert!(!e.is_empty());
        // just the two magic bytes
        let e = err_for(&dir, "magic-only.gz", &[0x1f, 0x8b]);
        assert!(e.contains("gzip"), "{e}");
    }

    #[test]
    fn missing_file_is_io_error() {
        let e = load_idx(Path::new("/nonexistent/dir/missing-idx3.gz"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing-idx3.gz"), "{e}");
    }

    #[test]
    fn sparse_label_values_index_names() {
        let imgs = IdxImages {
            count: 2,
            rows: 1,
            cols: 1,
            channels: 1,
            pixels: vec![0, 1],
        };
        let ds = assemble(imgs, Some(vec![3, 1]), Path::new("i"), Some(Path::new("l"))).unwrap();
        assert_eq!(ds.label_names, vec!["0", "1", "2", "3"]);
    }
}
