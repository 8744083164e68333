//! Minimal reader for little-endian float32 arrays in `.npy` / `.npz` files.

use std::io::Read;
use std::path::Path;

use crate::error::{ModelError, Result};

/// A float32 array and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyF32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Parses a C-order `<f4` `.npy` payload.
pub fn parse_npy_f32(bytes: &[u8]) -> Result<NpyF32, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("missing NUMPY magic".into());
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported npy version {v}")),
    };
    let header = bytes
        .get(header_start..header_start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    if !header.contains("'descr': '<f4'") {
        return Err(format!(
            "expected little-endian float32 ('<f4'), header: {}",
            header.trim()
        ));
    }
    if header.contains("'fortran_order': True") {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in header")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension `{s}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let numel: usize = shape.iter().product();
    let payload = &bytes[header_start + header_len..];
    if payload.len() != numel * 4 {
        return Err(format!(
            "shape {shape:?} needs {} bytes, found {}",
            numel * 4,
            payload.len()
        ));
    }
    let data = payload
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(NpyF32 { shape, data })
}

/// Reads array `key` (without `.npy`) from an `.npz` archive.
pub fn read_npz_f32(path: &Path, key: &str) -> Result<NpyF32> {
    let file = std::fs::File::open(path).map_err(ModelError::io(path))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| ModelError::format(path, "npz", e.to_string()))?;
    let member = format!("{key}.npy");
    let mut entry = zip
        .by_name(&member)
        .map_err(|e| ModelError::format(path, "npz", format!("no array `{key}`: {e}")))?;
    if entry.size() > 64 << 20 {
        return Err(ModelError::format(
            path,
            "npz",
            format!("array `{key}` is implausibly large"),
        ));
    }
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(ModelError::io(path))?;
    parse_npy_f32(&bytes)
        .map_err(|m| ModelError::format(path, "npz", format!("array `{key}`: {m}")))
}
