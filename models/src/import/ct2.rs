//! Reader for CTranslate2's `model.bin` (binary version 6).
//!
//! Layout: u32 version, spec name (u16 length + NUL-terminated bytes), u32 spec
//! revision, u32 variable count, then per variable: name, u8 rank, rank x u32 dims,
//! u8 dtype, u32 byte count, data; then u32 alias count and (alias, target) names.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bytes::Cursor;
use crate::error::{ModelError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ct2Tensor {
    pub shape: Vec<usize>,
    pub dtype: Ct2Dtype,
    pub data: Vec<u8>,
}

impl Ct2Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Values as f32, from F32, F16 or BF16 storage.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let d = &self.data;
        Some(match self.dtype {
            Ct2Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Ct2Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Ct2Dtype::Bf16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => return None,
        })
    }

    /// An integer scalar (config values such as `num_heads`).
    pub fn scalar_int(&self) -> Option<i64> {
        let d = &self.data;
        match (self.dtype, d.len()) {
            (Ct2Dtype::I8, 1) => Some(d[0] as i8 as i64),
            (Ct2Dtype::I16, 2) => Some(i16::from_le_bytes([d[0], d[1]]) as i64),
            (Ct2Dtype::I32, 4) => Some(i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ct2Model {
    pub spec: String,
    pub revision: u32,
    pub variables: BTreeMap<String, Ct2Tensor>,
    pub aliases: BTreeMap<String, String>,
}

fn string(c: &mut Cursor<'_>) -> Result<String, String> {
    let n = c.u16()? as usize;
    let raw = c.take(n)?;
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    String::from_utf8(raw.to_vec()).map_err(|_| format!("name at offset {} is not UTF-8", c.pos()))
}

pub fn read_ct2(path: &Path) -> Result<Ct2Model> {
    let bytes = std::fs::read(path).map_err(ModelError::io(path))?;
    parse_ct2(&bytes).map_err(|m| ModelError::format(path, "CTranslate2 model.bin", m))
}

pub fn parse_ct2(bytes: &[u8]) -> Result<Ct2Model, String> {
    let mut c = Cursor::new(bytes);
    let version = c.u32()?;
    if !(3..=6).contains(&version) {
        return Err(format!(
            "unsupported binary version {version} (expected 3 to 6)"
        ));
    }
    let spec = string(&mut c)?;
    let revision = c.u32()?;
    let count = c.u32()? as usize;
    let mut variables = BTreeMap::new();
    for _ in 0..count {
        let name = string(&mut c)?;
        let rank = c.u8()? as usize;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(c.u32()? as usize);
        }
        let dtype = if version >= 4 {
            let id = c.u8()?;
            Ct2Dtype::from_id(id).ok_or_else(|| format!("variable `{name}`: unknown dtype {id}"))?
        } else {
            return Err("binary versions before 4 are not supported".into());
        };
        let nbytes = c.u32()? as usize;
        let numel: usize = shape.iter().product();
        if numel.checked_mul(dtype.size()) != Some(nbytes) {
            return Err(format!(
                "variable `{name}`: shape {shape:?} of {dtype:?} needs {} bytes, header says {nbytes}",
                numel.saturating_mul(dtype.size())
            ));
        }
        let data = c.take(nbytes)?.to_vec();
        variables.insert(name, Ct2Tensor { shape, dtype, data });
    }
    let mut aliases = BTreeMap::new();
    if c.remaining() > 0 {
        let n = c.u32()? as usize;
        for _ in 0..n {
            let alias = string(&mut c)?;
            let target = string(&mut c)?;
            aliases.insert(alias, target);
        }
    }
    if c.remaining() != 0 {
        return Err(format!("{} unexpected trailing bytes", c.remaining()));
    }
    Ok(Ct2Model {
        spec,
        revision,
        variables,
        aliases,
    })
}
