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
    let numel = shape
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(*d))
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| format!("shape {shape:?} is larger than memory can hold"))?;
    let payload = bytes
        .get(header_start + header_len..)
        .ok_or("the header runs past the end of the file")?;
    if payload.len() != numel {
        return Err(format!(
            "shape {shape:?} needs {numel} bytes, found {}",
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

#[cfg(test)]
mod tests {
    use super::parse_npy_f32;

    fn npy(shape: &str, payload: &[u8]) -> Vec<u8> {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn sizes_from_the_header_are_checked_not_trusted() {
        let one = 1.5f32.to_le_bytes();
        assert_eq!(parse_npy_f32(&npy("1,", &one)).expect("ok").data, vec![1.5]);
        for shape in [
            "4294967296, 4294967296, 4294967296",
            "18446744073709551615, 2",
            "4611686018427387904,",
        ] {
            let e = parse_npy_f32(&npy(shape, &one)).expect_err(shape);
            assert!(e.contains("larger than memory"), "{shape}: {e}");
        }
        assert!(parse_npy_f32(&npy("2,", &one)).is_err());
        // A header length past the end of the file.
        let mut bad = npy("1,", &one);
        bad[8] = 0xff;
        bad[9] = 0xff;
        assert!(parse_npy_f32(&bad).is_err());
    }
}
