//! Reading configuration files (rules, ext_authz keys and config) so that no file can stall
//! the service: only regular files are read, the open never blocks (a FIFO without a writer
//! would block a plain `open`), the type is checked again on the opened handle (a path swapped
//! for a FIFO or device between the listing and the open is caught), and at most
//! `rules_max_file_bytes` + 1 bytes are read (a link to `/dev/zero` or a huge file cannot eat
//! memory). Change detection uses [`stamp`]: metadata only, never the contents.
//!
//! Callers run these on the blocking pool (`tokio::task::spawn_blocking`), never on a worker.

use std::fs::{File, FileType, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// `rules_max_file_bytes`' default (8 MiB), for callers without settings (`check-config`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Why a configuration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The operating system failed (EMFILE, EACCES, EIO, a file gone mid-swap): not a fault
    /// of the configuration, so callers keep the last good one and retry at the next poll.
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    /// A FIFO, socket or device: reading it could block forever or never end.
    #[error("not a regular file (a {0}); only regular files are read")]
    NotRegular(&'static str),
    /// Bigger than the cap.
    #[error("file larger than rules_max_file_bytes ({cap} bytes)")]
    TooLarge {
        /// The cap that was exceeded.
        cap: u64,
    },
    /// The bytes are not UTF-8 (YAML must be).
    #[error("file is not valid UTF-8")]
    NotUtf8,
}

impl ReadError {
    /// Whether this is an operating-system failure (retry) rather than a bad file (reject).
    pub fn is_io(&self) -> bool {
        matches!(self, ReadError::Io(_))
    }
}

/// A human name for a file type, for log lines and errors.
pub fn kind(ft: FileType) -> &'static str {
    if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Reads `path` (following symlinks) as UTF-8 if it is a regular file of at most `cap` bytes.
/// Blocking: call it on the blocking pool.
pub fn read_capped(path: &Path, cap: u64) -> Result<String, ReadError> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
    // O_NOCTTY: a terminal device must never become our controlling terminal.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // Checked on the handle, not the path: the path may have been swapped since it was listed.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge { cap });
    }
    // The file may grow after the metadata call: `take` bounds the read regardless.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge { cap });
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8)
}

/// Hashes what identifies a version of `path` without opening it: where a symlink points, and
/// the followed target's device, inode, type, size, mtime and ctime. A kubelet `..data` swap
/// changes the inode, an edit in place changes size or mtime/ctime. A missing path hashes as
/// missing (a dangling link mid-swap is just another state).
pub fn stamp(path: &Path, h: &mut impl Hasher) {
    std::fs::read_link(path).ok().hash(h);
    match std::fs::metadata(path) {
        Ok(m) => (
            m.dev(),
            m.ino(),
            m.mode(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
            .hash(h),
        Err(e) => e.kind().hash(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_and_a_device_are_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("p.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        // A plain open of a FIFO with no writer blocks forever; this must return at once.
        let err = read_capped(&fifo, 1000).expect_err("a FIFO is not read");
        assert!(matches!(err, ReadError::NotRegular("FIFO")), "{err:?}");
        let err = read_capped(Path::new("/dev/zero"), 1000).expect_err("a device is not read");
        assert!(
            matches!(err, ReadError::NotRegular("character device")),
            "{err:?}"
        );
    }

    #[test]
    fn the_cap_is_inclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, "x".repeat(10)).expect("write");
        assert_eq!(read_capped(&f, 10).expect("at the cap").len(), 10);
        let err = read_capped(&f, 9).expect_err("above the cap");
        assert!(matches!(err, ReadError::TooLarge { cap: 9 }), "{err:?}");
        let err = read_capped(&dir.path().join("gone"), 9).expect_err("missing");
        assert!(err.is_io(), "{err:?}");
    }
}
