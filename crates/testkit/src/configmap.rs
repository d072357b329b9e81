//! A directory laid out and updated as Kubernetes mounts a ConfigMap.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::{Error, TempDir};

/// A ConfigMap volume in a temporary directory: each key is a symlink
/// `KEY -> ..data/KEY`, `..data` is a symlink to a timestamped directory,
/// and [`ConfigMapVolume::update`] swaps in new contents the way the
/// kubelet's atomic writer does (a new directory, `..data_tmp` pointing at
/// it renamed over `..data`, the old directory removed).
///
/// ```
/// let volume = signpost_testkit::ConfigMapVolume::new(&[("forward.toml", "[cache]\n")]).unwrap();
/// let path = volume.path("forward.toml");
/// volume.update(&[("forward.toml", "[limits]\n")]).unwrap();
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "[limits]\n");
/// assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
/// ```
#[derive(Debug)]
pub struct ConfigMapVolume {
    dir: TempDir,
    generation: std::sync::atomic::AtomicU32,
}

impl ConfigMapVolume {
    /// A volume holding `files` (key, content).
    pub fn new(files: &[(&str, &str)]) -> Result<Self, Error> {
        let volume = Self { dir: TempDir::try_new()?, generation: std::sync::atomic::AtomicU32::new(0) };
        volume.update(files)?;
        Ok(volume)
    }

    /// The directory mounted.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path a container reads `key` at.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Replace the contents with `files`, atomically, as the kubelet does.
    pub fn update(&self, files: &[(&str, &str)]) -> Result<(), Error> {
        let mount = self.dir.path();
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let data = format!("..2026_12_04_16_00_{:02}.{generation}", generation % 60);
        let failed = |path: PathBuf| move |source| Error::File { path, source };
        let directory = mount.join(&data);
        std::fs::create_dir(&directory).map_err(failed(directory.clone()))?;
        for (key, content) in files {
            std::fs::write(directory.join(key), content).map_err(failed(directory.join(key)))?;
        }
        let old = std::fs::read_link(mount.join("..data")).ok();
        let temporary = mount.join("..data_tmp");
        symlink(&data, &temporary).map_err(failed(temporary.clone()))?;
        std::fs::rename(&temporary, mount.join("..data")).map_err(failed(temporary))?;
        if let Some(old) = old {
            std::fs::remove_dir_all(mount.join(&old)).map_err(failed(mount.join(old)))?;
        }
        for (key, _) in files {
            let link = mount.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(key), &link).map_err(failed(link))?;
            }
        }
        Ok(())
    }
}
