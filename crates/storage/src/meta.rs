//! Small files that must change atomically (the raft vote, the log's purge
//! point): written to a temporary file, fsynced, renamed over the old one,
//! then the directory is fsynced. A checksum footer rejects a damaged file.

use std::path::Path;

use crate::error::StorageError;
use crate::fs::FileSystem;

const FOOTER_BYTES: usize = 4;

/// Replaces `dir/name` with `contents`, durably and atomically.
pub fn write_atomic(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut bytes = contents.to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(contents).to_le_bytes());
    let _ = fs.remove(&tmp);
    let file = fs
        .open(&tmp)
        .map_err(|e| StorageError::io("creating", &tmp, e))?;
    file.write_at(0, &bytes)
        .map_err(|e| StorageError::io("writing", &tmp, e))?;
    file.sync_data().map_err(|e| StorageError::SyncFailed {
        path: tmp.clone(),
        source: e,
    })?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(|e| StorageError::io("renaming", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("syncing directory", dir, e))
}

/// Reads a file written by [`write_atomic`]; `None` if it does not exist.
pub fn read_checked(fs: &dyn FileSystem, path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    let exists = path
        .parent()
        .map(|dir| fs.list(dir).map(|files| files.iter().any(|f| f == path)))
        .transpose()
        .map_err(|e| StorageError::io("listing", path, e))?
        .unwrap_or(false);
    if !exists {
        return Ok(None);
    }
    let file = fs
        .open(path)
        .map_err(|e| StorageError::io("opening", path, e))?;
    let len = file
        .size()
        .map_err(|e| StorageError::io("reading the size of", path, e))? as usize;
    let mut bytes = vec![0u8; len];
    file.read_at(0, &mut bytes)
        .map_err(|e| StorageError::io("reading", path, e))?;
    if len < FOOTER_BYTES {
        return Err(StorageError::corrupt(path, 0, "file too short"));
    }
    let (contents, footer) = bytes.split_at(len - FOOTER_BYTES);
    let expected = u32::from_le_bytes(footer.try_into().expect("4 bytes"));
    if crc32c::crc32c(contents) != expected {
        return Err(StorageError::corrupt(path, 0, "checksum mismatch"));
    }
    Ok(Some(contents.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;

    #[test]
    fn atomic_files_round_trip_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_checked(&StdFs, &dir.path().join("vote")).unwrap(),
            None
        );
        write_atomic(&StdFs, dir.path(), "vote", b"term 3").unwrap();
        write_atomic(&StdFs, dir.path(), "vote", b"term 4").unwrap();
        let path = dir.path().join("vote");
        assert_eq!(read_checked(&StdFs, &path).unwrap().unwrap(), b"term 4");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(read_checked(&StdFs, &path).is_err());
    }
}
