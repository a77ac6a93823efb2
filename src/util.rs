//! Small helpers shared by the engine's file writers.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder a file at `path` goes into (`.` for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write `bytes` to `path` through a temporary file in the same directory, fsync and rename.
/// A failed write (a full disk, a vanished folder) removes its temporary file and leaves
/// `path` as it was; temporary files of earlier writes to `path` that were killed
/// mid-write are removed first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = folder_of(path);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    remove_stale_temporaries(&dir, &name.to_string_lossy());
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        match injected_full_disk(&dir) {
            Some(after) if after < bytes.len() => {
                f.write_all(&bytes[..after])?;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "No space left on device (injected)",
                ));
            }
            _ => f.write_all(bytes)?,
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Temporary files (`.NAME.tmp-PID`) in `dir` of writes to `name` by processes that are gone
/// (killed mid-write: never complete), or older than an hour where liveness is unknown.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        // Where liveness cannot be checked, only an old file is surely abandoned.
        let gone = if cfg!(target_os = "linux") {
            !process_alive(pid)
        } else {
            old
        };
        if pid != std::process::id() && gone {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Fault injection for tests: writes into the folder set here fail as on a full disk after
/// this many bytes of the file (`None` turns it off). Only the tests call it.
#[doc(hidden)]
pub fn inject_full_disk(dir: &Path, after: Option<usize>) {
    if let Ok(mut f) = FULL_DISK.lock() {
        match after {
            Some(n) => {
                f.retain(|(d, _)| d != dir);
                f.push((dir.to_path_buf(), n));
            }
            None => f.retain(|(d, _)| d != dir),
        }
    }
}

static FULL_DISK: std::sync::Mutex<Vec<(PathBuf, usize)>> = std::sync::Mutex::new(Vec::new());

fn injected_full_disk(dir: &Path) -> Option<usize> {
    let f = FULL_DISK.lock().ok()?;
    f.iter().find(|(d, _)| d == dir).map(|(_, n)| *n)
}

/// Whether process `pid` is running (Linux: `/proc`; elsewhere assumed gone).
#[cfg(target_os = "linux")]
pub fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(not(target_os = "linux"))]
pub fn process_alive(_pid: u32) -> bool {
    // Without a portable check, assume the other process is gone: offering a restore that
    // the user can dismiss is better than never offering one.
    false
}

thread_local! {
    static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while this thread runs third-party decoding whose panics are caught and turned into
/// errors (a panic hook can stay quiet about them).
pub fn panic_is_contained() -> bool {
    CONTAINING.with(|c| c.get())
}

/// Run `f`, turning a panic into an error: burn's record decoders panic on some malformed
/// records (found by fuzzing) instead of returning an error, and image decoders may too.
pub fn contained<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let before = CONTAINING.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(before));
    r.unwrap_or_else(|_| Err("malformed record (the decoder failed)".to_string()))
}

/// Keeps large blocks out of the heap (glibc only; call once at start, before threads).
///
/// glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB);
/// from then on blocks of that size come from the heap, where a freed one stays resident.
/// Every autosave builds a checkpoint a little larger than the last (the sample history
/// grows), so each left the process a few MiB bigger: RSS rose in steps at the 5-minute
/// autosaves of a long run. A fixed threshold (which also stops the adjustment) gives
/// blocks of 4 MiB and more their own mappings, returned to the system when freed; the
/// training step's buffers are smaller and keep coming from the heap.
pub fn keep_large_blocks_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}
