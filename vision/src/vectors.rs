//! The vector cache's file format (`AISLEVEC`): a persisted matrix, one key and
//! one f32 vector per row. Used for the catalog's product embeddings and the
//! ConSE label embeddings; every size in a file is checked before it is used.
//!
//! Layout: `AISLEVEC`, u32 LE header length, the keys as a JSON array, u32 LE
//! dimension, then keys x dimension f32 LE values.

/// A persisted matrix: one key and one f32 vector per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub keys: Vec<String>,
    pub vectors: Vec<Vec<f32>>,
}

pub const MAGIC: &[u8; 8] = b"AISLEVEC";

/// The file bytes for `keys` and their `vectors` (all of one dimension, one per key).
pub fn encode(keys: &[String], vectors: &[Vec<f32>]) -> Result<Vec<u8>, String> {
    if keys.len() != vectors.len() {
        return Err(format!("{} keys for {} vectors", keys.len(), vectors.len()));
    }
    let dim = vectors.first().map_or(0, Vec::len);
    if vectors.iter().any(|v| v.len() != dim) {
        return Err("vectors of different dimensions".into());
    }
    let dim32 = u32::try_from(dim).map_err(|_| "dimension too large".to_string())?;
    let header = serde_json::to_vec(keys).map_err(|e| e.to_string())?;
    let header_len = u32::try_from(header.len()).map_err(|_| "too many keys".to_string())?;
    let mut out = Vec::with_capacity(16 + header.len() + keys.len() * dim * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&dim32.to_le_bytes());
    for v in vectors {
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    Ok(out)
}

/// Parses a vector cache; every size comes from the file, so every size is checked
/// (no overflow, no zero-width rows, no length the file does not hold).
pub fn parse(bytes: &[u8]) -> Result<Vectors, String> {
    let take = |at: usize, n: usize| {
        at.checked_add(n)
            .and_then(|end| bytes.get(at..end))
            .ok_or_else(|| "truncated".to_string())
    };
    if take(0, 8)? != MAGIC {
        return Err("not a vector file".into());
    }
    let u32_at = |at: usize| -> std::result::Result<usize, String> {
        let b = take(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let header_len = u32_at(8)?;
    let keys: Vec<String> =
        serde_json::from_slice(take(12, header_len)?).map_err(|e| e.to_string())?;
    let dim = u32_at(12 + header_len)?;
    if dim == 0 && !keys.is_empty() {
        return Err(format!("{} keys with vectors of dimension 0", keys.len()));
    }
    let row_bytes = dim.checked_mul(4).ok_or("dimension too large")?;
    let data_len = keys
        .len()
        .checked_mul(row_bytes)
        .ok_or("more data than memory can hold")?;
    let data = take(16 + header_len, data_len)?;
    if bytes.len() != 16 + header_len + data_len {
        return Err("trailing bytes".into());
    }
    let vectors = if keys.is_empty() {
        Vec::new()
    } else {
        data.chunks_exact(row_bytes)
            .map(|row| {
                row.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            })
            .collect()
    };
    Ok(Vectors { keys, vectors })
}

#[cfg(test)]
mod tests {
    use super::{MAGIC, encode, parse as parse_vectors};

    fn file(keys: &[&str], dim: u32, data: &[f32]) -> Vec<u8> {
        let header = serde_json::to_vec(keys).expect("json");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&dim.to_le_bytes());
        for x in data {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    #[test]
    fn damaged_vector_caches_are_errors_not_panics() {
        let ok = parse_vectors(&file(&["a", "b"], 2, &[1.0, 2.0, 3.0, 4.0])).expect("ok");
        assert_eq!(ok.vectors, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert!(
            parse_vectors(&file(&[], 0, &[]))
                .expect("empty")
                .vectors
                .is_empty()
        );
        // dim 0 with keys used to panic in chunks_exact.
        let e = parse_vectors(&file(&["a"], 0, &[])).expect_err("dim 0");
        assert!(e.contains("dimension 0"), "{e}");
        // A dimension whose byte size overflows, a row count the file does not hold.
        assert!(parse_vectors(&file(&["a", "b"], u32::MAX, &[1.0])).is_err());
        assert!(parse_vectors(&file(&["a", "b"], 2, &[1.0])).is_err());
        // A header length past the end.
        let mut bad = file(&["a"], 1, &[1.0]);
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_vectors(&bad).is_err());
        assert!(parse_vectors(b"AISLEVE").is_err());
    }

    #[test]
    fn encode_then_parse_is_the_same_matrix() {
        let keys = vec!["a".to_string(), "b".to_string()];
        let v = vec![vec![1.5, -2.0, 0.25], vec![0.0, 3.0, -1.0]];
        let bytes = encode(&keys, &v).expect("encode");
        let back = parse_vectors(&bytes).expect("parse");
        assert_eq!((back.keys, back.vectors), (keys, v));
        assert!(encode(&["a".to_string()], &[vec![1.0], vec![2.0]]).is_err());
        assert!(
            encode(
                &["a".to_string(), "b".to_string()],
                &[vec![1.0], vec![2.0, 3.0]]
            )
            .is_err()
        );
    }
}
