//! Temporary directories that remove themselves, on top of `tempfile`.

use std::path::{Path, PathBuf};

use crate::Error;

/// A fresh directory under the system's temporary directory, named
/// `signpost-test-…`, removed with everything in it when dropped.
///
/// ```
/// let dir = signpost_testkit::TempDir::new();
/// let config = dir.write("conf/forward.toml", "[cache]\n");
/// assert_eq!(std::fs::read_to_string(&config).unwrap(), "[cache]\n");
/// let path = dir.path().to_path_buf();
/// drop(dir);
/// assert!(!path.exists());
/// ```
#[derive(Debug)]
pub struct TempDir {
    inner: tempfile::TempDir,
}

impl TempDir {
    /// A new empty directory.
    ///
    /// # Panics
    ///
    /// When the system's temporary directory cannot be written;
    /// [`TempDir::try_new`] returns the error.
    pub fn new() -> Self {
        match Self::try_new() {
            Ok(dir) => dir,
            Err(error) => panic!("{error}"),
        }
    }

    /// [`TempDir::new`] that returns an error instead of panicking.
    pub fn try_new() -> Result<Self, Error> {
        let inner = tempfile::Builder::new()
            .prefix("signpost-test-")
            .tempdir()
            .map_err(|source| Error::File { path: std::env::temp_dir(), source })?;
        Ok(Self { inner })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// A path inside the directory (nothing is created).
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.inner.path().join(relative)
    }

    /// Write `contents` to `relative` (creating directories on the way) and
    /// return the file's path.
    ///
    /// # Panics
    ///
    /// When the file cannot be written; [`TempDir::try_write`] returns the error.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        match self.try_write(relative, contents) {
            Ok(path) => path,
            Err(error) => panic!("{error}"),
        }
    }

    /// [`TempDir::write`] that returns an error instead of panicking.
    pub fn try_write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<PathBuf, Error> {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::File { path: parent.to_path_buf(), source })?;
        }
        std::fs::write(&path, contents).map_err(|source| Error::File { path: path.clone(), source })?;
        Ok(path)
    }

    /// Write an executable script (mode 0755) and return its path: a fake
    /// program to put on a child's `PATH`.
    ///
    /// # Panics
    ///
    /// When the file cannot be written or made executable.
    pub fn write_program(&self, relative: impl AsRef<Path>, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(relative, script);
        if let Err(source) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)) {
            panic!("{}", Error::File { path, source });
        }
        path
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_go_away_with_it() {
        let dir = TempDir::new();
        let nested = dir.write("a/b/c.txt", "text");
        assert_eq!(nested, dir.join("a/b/c.txt"));
        assert!(dir.path().file_name().unwrap().to_string_lossy().starts_with("signpost-test-"));
        let root = dir.path().to_path_buf();
        drop(dir);
        assert!(!root.exists());
    }

    #[test]
    fn programs_are_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new();
        let program = dir.write_program("bin/tool", "#!/bin/sh\nexit 0\n");
        assert_eq!(std::fs::metadata(program).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn two_directories_are_two() {
        assert_ne!(TempDir::new().path(), TempDir::new().path());
    }
}
