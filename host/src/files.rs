//! Reading a file that a user's variable or config names: the one way the host does it.
//!
//! Such a path may name anything: a FIFO (whose open blocks until a writer comes, before any
//! timer of ours runs), `/dev/zero` (endless), a directory, or a huge file. So the file is
//! opened without blocking, checked to be a regular file on the open descriptor (no race with
//! a rename), and read with a cap that the error names.

use std::fmt;
use std::io::Read;
use std::path::Path;

/// Why a named file was not read.
#[derive(Debug)]
pub enum FileError {
    /// Opening or reading failed.
    Io(std::io::Error),
    /// Not a regular file: what it is instead.
    NotRegular(&'static str),
    /// Larger than the cap, in bytes.
    TooLarge(u64),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io(e) => e.fmt(f),
            FileError::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            FileError::TooLarge(cap) => write!(f, "it is larger than {}", size(*cap)),
        }
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Whether `path` (symbolic links followed) is a regular file; never opens it.
pub fn is_regular(path: &Path) -> Result<(), FileError> {
    let meta = std::fs::metadata(path).map_err(FileError::Io)?;
    check_type(&meta)
}

fn check_type(meta: &std::fs::Metadata) -> Result<(), FileError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(FileError::NotRegular(kind))
}

/// The contents of the regular file at `path`, at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO's open would wait for a writer; a terminal would become ours.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(FileError::Io)?;
    let meta = file.metadata().map_err(FileError::Io)?;
    check_type(&meta)?;
    if meta.len() > cap {
        return Err(FileError::TooLarge(cap));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(FileError::TooLarge(cap));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_a_regular_file_within_its_cap() {
        let dir = temp("regular");
        let f = dir.join("f");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(read_capped(&f, 3).unwrap(), b"abc");
        assert!(is_regular(&f).is_ok());
        let e = read_capped(&f, 2).unwrap_err();
        assert_eq!(e.to_string(), "it is larger than 2 bytes");
    }

    #[test]
    fn a_fifo_a_device_and_a_directory_are_refused_without_blocking() {
        let dir = temp("special");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer ever comes: a blocking open would hang this test.
        let e = read_capped(&fifo, 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a FIFO (named pipe), not a regular file"
        );
        assert!(is_regular(&fifo).is_err());
        let e = read_capped(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a character device, not a regular file"
        );
        let e = read_capped(&dir, 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "it is a directory, not a regular file");
    }
}
