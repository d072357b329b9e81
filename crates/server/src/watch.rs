//! Watching a configuration file, as Kubernetes mounts a ConfigMap.
//!
//! A ConfigMap volume holds `forward.toml -> ..data/forward.toml` and
//! `..data -> ..2026_12_04_16_00_00.123`; an update writes a new timestamped
//! directory, points `..data_tmp` at it, renames `..data_tmp` over `..data`
//! (the atomic step) and removes the old directory. A watch on the file
//! itself follows the old inode and dies with it, so [`FileWatcher`] watches
//! the directory the path is in, and after any event there reads the path
//! again (through the symlinks) and reports a change only when the content
//! differs. Editors that save in place or by rename are covered the same way,
//! and a slow poll catches what a file system does not report.
//!
//! The version of a file is the start of its SHA-256, so an operator can
//! compare it with `sha256sum` of what they applied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::Error;

/// How long events must stop before the file is read (editors write a file
/// in several steps; Kubernetes's swap sends a handful of events).
const SETTLE: Duration = Duration::from_millis(100);

/// How often the file is read even without events.
const POLL: Duration = Duration::from_secs(30);

/// Hex digits of SHA-256 kept in a version.
const VERSION_DIGITS: usize = 16;

/// The version of a configuration: the first 16 hex digits of the SHA-256
/// of its bytes (what `sha256sum FILE | cut -c1-16` prints).
pub fn content_version(content: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    let mut hex = String::with_capacity(VERSION_DIGITS);
    for byte in digest.as_ref().iter().take(VERSION_DIGITS / 2) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// The version of the file at `path`, read through symlinks; for a
/// directory, of the names and contents of its files (hidden ones, such as
/// a ConfigMap's `..data`, left out), so any change to one of them is seen.
pub fn file_version(path: &Path) -> std::io::Result<String> {
    if !path.is_dir() {
        return std::fs::read(path).map(|content| content_version(&content));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .filter(|file| file.is_file())
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in files {
        all.extend_from_slice(file.file_name().map(|name| name.as_encoded_bytes()).unwrap_or_default());
        all.push(0);
        let content = std::fs::read(&file)?;
        all.extend_from_slice(&(content.len() as u64).to_be_bytes());
        all.extend_from_slice(&content);
    }
    Ok(content_version(&all))
}

/// Reports each change of a file's content; see the module documentation.
#[derive(Debug)]
pub struct FileWatcher {
    path: PathBuf,
    events: mpsc::Receiver<()>,
    version: Option<String>,
    _watcher: notify::RecommendedWatcher,
}

impl FileWatcher {
    /// Watch `path`, a file (the directory it is in must exist) or a
    /// directory (its files). Changes are reported against the content it
    /// has now. Must run inside a tokio runtime.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let directory = match path.parent() {
            _ if path.is_dir() => path.clone(),
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Capacity one: events arriving while one waits are the same news.
        let (sender, events) = mpsc::channel(1);
        let mut watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            let _ = sender.try_send(());
        })
        .map_err(|source| Error::Watch { path: directory.clone(), source })?;
        watcher
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(|source| Error::Watch { path: directory.clone(), source })?;
        let version = file_version(&path).ok();
        Ok(Self { path, events, version, _watcher: watcher })
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version last seen (none while the file cannot be read).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Wait until the content differs from the version last seen, and
    /// return the new version. A file that cannot be read (between the
    /// steps of a swap, or removed) is waited out: the old content stays
    /// the version. `None` once the watcher has stopped.
    pub async fn changed(&mut self) -> Option<String> {
        loop {
            tokio::select! {
                event = self.events.recv() => event?,
                _ = tokio::time::sleep(POLL) => {}
            }
            // Let the burst end, then take what queued meanwhile.
            tokio::time::sleep(SETTLE).await;
            while self.events.try_recv().is_ok() {}
            let Ok(version) = file_version(&self.path) else { continue };
            if self.version.as_deref() != Some(version.as_str()) {
                self.version = Some(version.clone());
                return Some(version);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_testkit::ConfigMapVolume;

    #[test]
    fn versions_are_the_start_of_sha256() {
        // sha256sum of an empty file: e3b0c44298fc1c149afbf4c8996fb924...
        assert_eq!(content_version(b""), "e3b0c44298fc1c14");
        assert_eq!(content_version(b"abc"), "ba7816bf8f01cfea");
    }

    async fn next_change(watcher: &mut FileWatcher) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), watcher.changed()).await.ok().flatten()
    }

    #[tokio::test]
    async fn a_configmap_swap_is_reported_once_per_new_content() {
        let volume = ConfigMapVolume::new(&[("forward.toml", "one")]).unwrap();
        let update = |content: &str| volume.update(&[("forward.toml", content)]).unwrap();
        let mut watcher = FileWatcher::new(volume.path("forward.toml")).unwrap();
        assert_eq!(watcher.version(), Some(content_version(b"one").as_str()));

        update("two");
        assert_eq!(next_change(&mut watcher).await, Some(content_version(b"two")));
        update("three");
        assert_eq!(next_change(&mut watcher).await, Some(content_version(b"three")));

        // A swap to the same content (a ConfigMap's other key changed) is no change.
        update("three");
        let quiet = tokio::time::timeout(Duration::from_millis(600), watcher.changed()).await;
        assert!(quiet.is_err(), "the same content was reported as a change: {quiet:?}");
        update("five");
        assert_eq!(next_change(&mut watcher).await, Some(content_version(b"five")));
    }

    #[tokio::test]
    async fn a_directory_reports_files_added_changed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "a").unwrap();
        let mut watcher = FileWatcher::new(dir.path()).unwrap();
        let first = watcher.version().map(str::to_owned);
        std::fs::write(dir.path().join("b.yaml"), "b").unwrap();
        let added = next_change(&mut watcher).await;
        assert!(added.is_some() && added != first, "{added:?}");
        std::fs::write(dir.path().join("a.yaml"), "changed").unwrap();
        assert!(next_change(&mut watcher).await.is_some());
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        assert!(next_change(&mut watcher).await.is_some());
        // A hidden file (an editor's swap file, a ConfigMap's ..data link) is no change.
        std::fs::write(dir.path().join(".a.yaml.swp"), "x").unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(600), watcher.changed()).await;
        assert!(quiet.is_err(), "a hidden file was reported: {quiet:?}");
    }

    #[tokio::test]
    async fn a_file_saved_in_place_or_by_rename_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forward.toml");
        std::fs::write(&path, "a").unwrap();
        let mut watcher = FileWatcher::new(&path).unwrap();
        std::fs::write(&path, "b").unwrap();
        assert_eq!(next_change(&mut watcher).await, Some(content_version(b"b")));
        std::fs::write(dir.path().join(".forward.toml.swp"), "c").unwrap();
        std::fs::rename(dir.path().join(".forward.toml.swp"), &path).unwrap();
        assert_eq!(next_change(&mut watcher).await, Some(content_version(b"c")));
    }
}
