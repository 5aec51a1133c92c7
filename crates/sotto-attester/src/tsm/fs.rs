//! The filesystem operations the configfs-tsm backend performs, behind a trait so tests can
//! play the kernel (attribute files appearing on mkdir, `outblob` produced on `inblob`
//! write, attribute files disappearing with the directory).

use std::fmt::Debug;
use std::io;
use std::path::Path;

/// Filesystem operations on a configfs-tsm report root. Not a stable API: exists so tests
/// can substitute a fake kernel.
#[doc(hidden)]
pub trait TsmFs: Send + Sync + Debug {
    /// `mkdir` (configfs creates the entry's attribute files).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Write a whole attribute.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Read a whole attribute.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `rmdir` (configfs removes the attribute files with the directory).
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real filesystem (`std::fs`).
#[doc(hidden)]
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl TsmFs for StdFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        std::fs::write(path, bytes)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
}
