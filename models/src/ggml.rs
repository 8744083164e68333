//! whisper.cpp's ggml model file: reader, writer and the tensor layout whisper.cpp
//! expects, so an imported file can be checked without linking whisper.cpp.
//!
//! File: u32 magic `0x67676d6c`; 11 x i32 hyper-parameters; i32 n_mel, i32 n_fft and
//! n_mel x n_fft f32 mel filters; i32 token count and each token as (i32 length,
//! bytes); then tensor records to the end of file: i32 n_dims, i32 name length, i32
//! type (0 f32, 1 f16), dims in ggml order (fastest first), name, raw data.

use std::io::Write;
use std::path::Path;

use crate::bytes::Cursor;
use crate::error::{ModelError, Result};

pub const GGML_MAGIC: u32 = 0x6767_6d6c;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperHparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl WhisperHparams {
    /// whisper tiny.en, as in the default model set.
    pub const TINY_EN: WhisperHparams = WhisperHparams {
        n_vocab: 51864,
        n_audio_ctx: 1500,
        n_audio_state: 384,
        n_audio_head: 6,
        n_audio_layer: 4,
        n_text_ctx: 448,
        n_text_state: 384,
        n_text_head: 6,
        n_text_layer: 4,
        n_mels: 80,
        ftype: 1,
    };

    fn as_array(&self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
}

impl GgmlType {
    pub fn id(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
        }
    }

    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }
}

/// A tensor's name, ggml-order dims and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<usize>,
    pub ty: GgmlType,
}

/// The parsed header and tensor directory of a whisper ggml file (no tensor data).
#[derive(Debug, Clone)]
pub struct WhisperGgmlFile {
    pub hparams: WhisperHparams,
    pub n_mel: usize,
    pub n_fft: usize,
    pub n_tokens: usize,
    pub tensors: Vec<TensorInfo>,
    /// Byte offset of each tensor's data in the file, parallel to `tensors`.
    pub offsets: Vec<usize>,
}

pub fn read_whisper_ggml(path: &Path) -> Result<WhisperGgmlFile> {
    let bytes = std::fs::read(path).map_err(ModelError::io(path))?;
    parse_whisper_ggml(&bytes).map_err(|m| ModelError::format(path, "whisper ggml", m))
}

pub fn parse_whisper_ggml(bytes: &[u8]) -> Result<WhisperGgmlFile, String> {
    let mut c = Cursor::new(bytes);
    let magic = c.u32()?;
    if magic != GGML_MAGIC {
        return Err(format!("bad magic {magic:#x}, expected {GGML_MAGIC:#x}"));
    }
    let mut h = [0i32; 11];
    for v in &mut h {
        *v = c.i32()?;
    }
    let hparams = WhisperHparams {
        n_vocab: h[0],
        n_audio_ctx: h[1],
        n_audio_state: h[2],
        n_audio_head: h[3],
        n_audio_layer: h[4],
        n_text_ctx: h[5],
        n_text_state: h[6],
        n_text_head: h[7],
        n_text_layer: h[8],
        n_mels: h[9],
        ftype: h[10],
    };
    if h[..10].iter().any(|&v| v <= 0) {
        return Err(format!("non-positive hyper-parameter in {hparams:?}"));
    }
    let n_mel = usize::try_from(c.i32()?).map_err(|_| "negative mel count")?;
    let n_fft = usize::try_from(c.i32()?).map_err(|_| "negative fft size")?;
    c.take(
        n_mel
            .checked_mul(n_fft)
            .and_then(|n| n.checked_mul(4))
            .ok_or("mel filter size overflows")?,
    )?;
    let n_tokens = usize::try_from(c.i32()?).map_err(|_| "negative token count")?;
    for i in 0..n_tokens {
        let len = usize::try_from(c.i32()?).map_err(|_| format!("token {i}: negative length"))?;
        c.take(len)?;
    }
    let mut tensors = Vec::new();
    let mut offsets = Vec::new();
    while c.remaining() > 0 {
        let n_dims = c.i32()?;
        let name_len = c.i32()?;
        let ty = match c.i32()? {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            t => return Err(format!("tensor #{}: unsupported type {t}", tensors.len())),
        };
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(format!(
                "tensor #{}: bad record header (dims {n_dims}, name length {name_len})",
                tensors.len()
            ));
        }
        let mut dims = Vec::new();
        for _ in 0..n_dims {
            dims.push(usize::try_from(c.i32()?).map_err(|_| "negative dimension")?);
        }
        let name = String::from_utf8(c.take(name_len as usize)?.to_vec())
            .map_err(|_| "tensor name is not UTF-8")?;
        let nbytes = dims
            .iter()
            .try_fold(ty.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor `{name}`: size overflows"))?;
        offsets.push(c.pos());
        c.take(nbytes)
            .map_err(|e| format!("tensor `{name}`: {e}"))?;
        tensors.push(TensorInfo { name, dims, ty });
    }
    Ok(WhisperGgmlFile {
        hparams,
        n_mel,
        n_fft,
        n_tokens,
        tensors,
        offsets,
    })
}

/// The tensors whisper.cpp's loader expects for these hyper-parameters, in ggml dims.
pub fn whisper_cpp_layout(h: &WhisperHparams) -> Vec<TensorInfo> {
    let a = h.n_audio_state as usize;
    let t = h.n_text_state as usize;
    let mut out = Vec::new();
    let mut push =
        |name: String, dims: Vec<usize>, ty: GgmlType| out.push(TensorInfo { name, dims, ty });
    use GgmlType::{F16, F32};
    push(
        "encoder.positional_embedding".into(),
        vec![a, h.n_audio_ctx as usize],
        F32,
    );
    push(
        "encoder.conv1.weight".into(),
        vec![3, h.n_mels as usize, a],
        F16,
    );
    push("encoder.conv1.bias".into(), vec![1, a], F32);
    push("encoder.conv2.weight".into(), vec![3, a, a], F16);
    push("encoder.conv2.bias".into(), vec![1, a], F32);
    push("encoder.ln_post.weight".into(), vec![a], F32);
    push("encoder.ln_post.bias".into(), vec![a], F32);
    let block =
        |push: &mut dyn FnMut(String, Vec<usize>, GgmlType), p: &str, n: usize, cross: bool| {
            push(format!("{p}.mlp_ln.weight"), vec![n], F32);
            push(format!("{p}.mlp_ln.bias"), vec![n], F32);
            push(format!("{p}.mlp.0.weight"), vec![n, 4 * n], F16);
            push(format!("{p}.mlp.0.bias"), vec![4 * n], F32);
            push(format!("{p}.mlp.2.weight"), vec![4 * n, n], F16);
            push(format!("{p}.mlp.2.bias"), vec![n], F32);
            let mut attn = |prefix: &str| {
                push(format!("{p}.{prefix}_ln.weight"), vec![n], F32);
                push(format!("{p}.{prefix}_ln.bias"), vec![n], F32);
                push(format!("{p}.{prefix}.query.weight"), vec![n, n], F16);
                push(format!("{p}.{prefix}.query.bias"), vec![n], F32);
                push(format!("{p}.{prefix}.key.weight"), vec![n, n], F16);
                push(format!("{p}.{prefix}.value.weight"), vec![n, n], F16);
                push(format!("{p}.{prefix}.value.bias"), vec![n], F32);
                push(format!("{p}.{prefix}.out.weight"), vec![n, n], F16);
                push(format!("{p}.{prefix}.out.bias"), vec![n], F32);
            };
            attn("attn");
            if cross {
                attn("cross_attn");
            }
        };
    for i in 0..h.n_audio_layer {
        block(&mut push, &format!("encoder.blocks.{i}"), a, false);
    }
    push(
        "decoder.positional_embedding".into(),
        vec![t, h.n_text_ctx as usize],
        F32,
    );
    push(
        "decoder.token_embedding.weight".into(),
        vec![t, h.n_vocab as usize],
        F16,
    );
    push("decoder.ln.weight".into(), vec![t], F32);
    push("decoder.ln.bias".into(), vec![t], F32);
    for i in 0..h.n_text_layer {
        block(&mut push, &format!("decoder.blocks.{i}"), t, true);
    }
    out
}

/// Differences between a file's tensors and whisper.cpp's expectations (empty if none).
pub fn layout_mismatches(file: &WhisperGgmlFile) -> Vec<String> {
    let expected = whisper_cpp_layout(&file.hparams);
    let mut problems = Vec::new();
    for e in &expected {
        match file.tensors.iter().find(|t| t.name == e.name) {
            None => problems.push(format!("missing tensor `{}`", e.name)),
            Some(t) if t.dims != e.dims || t.ty != e.ty => problems.push(format!(
                "tensor `{}`: expected {:?} {:?}, found {:?} {:?}",
                e.name, e.ty, e.dims, t.ty, t.dims
            )),
            Some(_) => {}
        }
    }
    for t in &file.tensors {
        if !expected.iter().any(|e| e.name == t.name) {
            problems.push(format!("unexpected tensor `{}`", t.name));
        }
    }
    if file.tensors.len() != expected.len() {
        problems.push(format!(
            "{} tensors, whisper.cpp expects {}",
            file.tensors.len(),
            expected.len()
        ));
    }
    if file.n_mel != file.hparams.n_mels as usize {
        problems.push(format!(
            "{} mel filters for {} mel bins",
            file.n_mel, file.hparams.n_mels
        ));
    }
    problems
}

/// Streams a whisper ggml file.
pub struct GgmlWriter<W: Write> {
    out: W,
}

impl<W: Write> GgmlWriter<W> {
    pub fn new(
        mut out: W,
        h: &WhisperHparams,
        mel: &[f32],
        n_mel: usize,
        n_fft: usize,
        tokens: &[Vec<u8>],
    ) -> std::io::Result<Self> {
        out.write_all(&GGML_MAGIC.to_le_bytes())?;
        for v in h.as_array() {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&(n_mel as i32).to_le_bytes())?;
        out.write_all(&(n_fft as i32).to_le_bytes())?;
        for v in mel {
            out.write_all(&v.to_le_bytes())?;
        }
        out.write_all(&(tokens.len() as i32).to_le_bytes())?;
        for t in tokens {
            out.write_all(&(t.len() as i32).to_le_bytes())?;
            out.write_all(t)?;
        }
        Ok(Self { out })
    }

    /// Writes one tensor; `data` is already in `ty`'s little-endian encoding.
    pub fn tensor(
        &mut self,
        name: &str,
        dims: &[usize],
        ty: GgmlType,
        data: &[u8],
    ) -> std::io::Result<()> {
        let expected: usize = dims.iter().product::<usize>() * ty.size();
        if expected != data.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("tensor `{name}`: {} bytes for dims {dims:?}", data.len()),
            ));
        }
        self.out.write_all(&(dims.len() as i32).to_le_bytes())?;
        self.out.write_all(&(name.len() as i32).to_le_bytes())?;
        self.out.write_all(&ty.id().to_le_bytes())?;
        for &d in dims {
            self.out.write_all(&(d as i32).to_le_bytes())?;
        }
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(data)
    }

    pub fn finish(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_layout_has_167_tensors() {
        assert_eq!(whisper_cpp_layout(&WhisperHparams::TINY_EN).len(), 167);
    }

    #[test]
    fn writer_output_parses_and_truncation_is_an_error() {
        let h = WhisperHparams {
            n_vocab: 3,
            n_audio_ctx: 2,
            n_audio_state: 2,
            n_audio_head: 1,
            n_audio_layer: 1,
            n_text_ctx: 2,
            n_text_state: 2,
            n_text_head: 1,
            n_text_layer: 1,
            n_mels: 1,
            ftype: 1,
        };
        let mut w = GgmlWriter::new(
            Vec::new(),
            &h,
            &[0.5, 0.25],
            1,
            2,
            &[b"a".to_vec(), b"bc".to_vec()],
        )
        .expect("header");
        w.tensor("x", &[2, 2], GgmlType::F32, &[0u8; 16])
            .expect("tensor");
        let bytes = w.finish();
        let f = parse_whisper_ggml(&bytes).expect("parses");
        assert_eq!(f.n_tokens, 2);
        assert_eq!(
            f.tensors,
            vec![TensorInfo {
                name: "x".into(),
                dims: vec![2, 2],
                ty: GgmlType::F32
            }]
        );
        for cut in [3, 20, bytes.len() - 1] {
            assert!(parse_whisper_ggml(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
