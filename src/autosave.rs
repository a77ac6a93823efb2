//! Autosave folder: rotating checkpoints written during training, and a session marker that
//! tells the next start whether the previous one ended cleanly.
//!
//! Files in the folder:
//!
//! * `autosave-<unix ms>-step<N>.llck`: complete checkpoints (written atomically through
//!   [`crate::checkpoint::write_atomic`], whose temporary files start with a dot and are
//!   never listed);
//! * `session.lock`: the process id of the running app; removed on a clean exit. Finding
//!   it at start-up with a process id that is no longer running means the last session
//!   crashed or was killed.
//!
//! Nothing here depends on a GUI; the app decides when to save and what to offer.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::checkpoint::EXTENSION;

const PREFIX: &str = "autosave-";
const LOCK: &str = "session.lock";

/// One autosaved checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutosaveEntry {
    pub path: PathBuf,
    /// When it was written (from its name), milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub step: u64,
}

impl AutosaveEntry {
    /// Parse `autosave-<ms>-step<N>.llck`; anything else (temporary files included) is `None`.
    fn parse(path: &Path) -> Option<Self> {
        if path.extension()? != EXTENSION {
            return None;
        }
        let stem = path.file_stem()?.to_str()?;
        let rest = stem.strip_prefix(PREFIX)?;
        let (ms, step) = rest.split_once("-step")?;
        Some(Self {
            path: path.to_path_buf(),
            unix_ms: ms.parse().ok()?,
            step: step.parse().ok()?,
        })
    }

    /// Seconds since it was written (0 if the clock went backwards).
    pub fn age_secs(&self) -> u64 {
        now_ms().saturating_sub(self.unix_ms) / 1000
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The autosave folder.
#[derive(Clone, Debug)]
pub struct Autosave {
    dir: PathBuf,
}

/// What [`Autosave::open`] found about the previous session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreviousSession {
    /// No marker: the last session exited cleanly (or there was none).
    Clean,
    /// A marker of a process that is not running any more: it crashed or was killed.
    Crashed,
    /// Another Latent Lab is running with this folder right now.
    Running(u32),
}

impl Autosave {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create the folder, look at the previous session's marker and write ours.
    pub fn open(&self) -> std::io::Result<PreviousSession> {
        std::fs::create_dir_all(&self.dir)?;
        let lock = self.dir.join(LOCK);
        let previous = match std::fs::read_to_string(&lock) {
            Err(_) => PreviousSession::Clean,
            Ok(s) => match s.trim().parse::<u32>() {
                Ok(pid) if pid != std::process::id() && crate::util::process_alive(pid) => {
                    PreviousSession::Running(pid)
                }
                _ => PreviousSession::Crashed,
            },
        };
        if !matches!(previous, PreviousSession::Running(_)) {
            // Temporary files of saves a crash interrupted are never complete: remove them.
            if let Ok(rd) = std::fs::read_dir(&self.dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') && name.contains(&format!(".{EXTENSION}.tmp-")) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            crate::checkpoint::write_atomic(&lock, std::process::id().to_string().as_bytes())?;
        }
        Ok(previous)
    }

    /// Remove our marker: this session ends cleanly.
    pub fn close(&self) {
        let lock = self.dir.join(LOCK);
        if std::fs::read_to_string(&lock).is_ok_and(|s| s.trim() == std::process::id().to_string())
        {
            let _ = std::fs::remove_file(lock);
        }
    }

    /// Where the autosave of `step` goes.
    pub fn path_for(&self, step: u64) -> PathBuf {
        self.dir
            .join(format!("{PREFIX}{}-step{step}.{EXTENSION}", now_ms()))
    }

    /// Whether `path` is one of this folder's autosaves.
    pub fn owns(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path()) && AutosaveEntry::parse(path).is_some()
    }

    /// Complete autosaves, newest first.
    pub fn list(&self) -> Vec<AutosaveEntry> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<AutosaveEntry> = rd
            .filter_map(|e| AutosaveEntry::parse(&e.ok()?.path()))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse((e.unix_ms, e.step)));
        v
    }

    /// Delete all but the newest `keep` autosaves; returns how many were removed.
    pub fn prune(&self, keep: usize) -> usize {
        self.list()
            .into_iter()
            .skip(keep.max(1))
            .filter(|e| std::fs::remove_file(&e.path).is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_temporary_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = Autosave::new(dir.path());
        std::fs::write(dir.path().join("autosave-100-step5.llck"), b"x").unwrap();
        std::fs::write(dir.path().join("autosave-200-step9.llck"), b"x").unwrap();
        std::fs::write(dir.path().join(".autosave-300-step12.llck.tmp-77"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let l = a.list();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].unix_ms, l[0].step), (200, 9));
        assert!(a.owns(&l[1].path));
        assert!(!a.owns(&dir.path().join("notes.txt")));
        assert_eq!(a.prune(1), 1);
        assert_eq!(a.list().len(), 1);
    }

    #[test]
    fn a_stale_marker_means_the_last_session_crashed() {
        let dir = tempfile::tempdir().unwrap();
        let a = Autosave::new(dir.path().join("auto"));
        assert_eq!(a.open().unwrap(), PreviousSession::Clean);
        a.close();
        assert_eq!(a.open().unwrap(), PreviousSession::Clean);
        // Not closed: a "next start" by a process whose id is not running finds a marker.
        std::fs::write(a.dir().join(LOCK), "4000000000").unwrap();
        assert_eq!(a.open().unwrap(), PreviousSession::Crashed);
        // Our own marker is replaced and removed on close.
        a.close();
        assert!(!a.dir().join(LOCK).exists());
    }
}
