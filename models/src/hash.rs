//! Streaming sha256.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// sha256 (hex) and size of a file, read in 1 MiB chunks. `progress` gets byte counts.
pub fn hash_file(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path).map_err(ModelError::io(path))?;
    hash_reader(&mut file, &mut std::io::sink(), progress).map_err(ModelError::io(path))
}

/// Copies `reader` to `writer`, returning the sha256 (hex) and byte count.
pub fn hash_reader(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
        total += n as u64;
        progress(n as u64);
    }
    Ok((hex::encode(hasher.finalize()), total))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
