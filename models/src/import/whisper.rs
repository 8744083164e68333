//! whisper: CTranslate2 layout -> whisper.cpp ggml (what whisper-rs loads).
//!
//! The weights are the same; the layout differs. CTranslate2 fuses the self-attention
//! q/k/v projections into one matrix (and the cross-attention k/v into another), names
//! tensors differently and stores everything in fp16. whisper.cpp wants separate
//! projections with no key bias, 2-D matrices in f16 and 1-D tensors, positional
//! embeddings and conv biases in f32, plus the mel filter bank and the byte-level
//! vocabulary in the file header. See ../shared/MODELS.md for the checked mapping.

use std::io::BufWriter;
use std::path::Path;

use crate::error::{ModelError, Result};
use crate::ggml::{GgmlType, GgmlWriter, WhisperHparams};
use crate::import::ct2::{Ct2Model, Ct2Tensor, read_ct2};
use crate::import::npy::read_npz_f32;

/// Inputs of the conversion.
#[derive(Debug, Clone, Copy)]
pub struct WhisperSources<'a> {
    /// CTranslate2 `model.bin`.
    pub model_bin: &'a Path,
    /// CTranslate2 `vocabulary.txt` (GPT-2 byte-level strings, one token a line).
    pub vocabulary: &'a Path,
    /// `mel_filters.npz` from the openai-whisper package.
    pub mel_filters: &'a Path,
}

struct Conv<'a> {
    model: &'a Ct2Model,
    path: &'a Path,
}

impl<'a> Conv<'a> {
    fn err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Import {
            importer: "whisper-ct2-to-ggml".into(),
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn get(&self, name: &str) -> Result<&'a Ct2Tensor> {
        let name = self
            .model
            .aliases
            .get(name)
            .map(String::as_str)
            .unwrap_or(name);
        self.model
            .variables
            .get(name)
            .ok_or_else(|| self.err(format!("tensor `{name}` not found")))
    }

    fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        self.get(name)?
            .to_f32()
            .ok_or_else(|| self.err(format!("tensor `{name}` is not a float tensor")))
    }

    fn scalar(&self, name: &str) -> Result<i64> {
        self.get(name)?
            .scalar_int()
            .ok_or_else(|| self.err(format!("`{name}` is not an integer scalar")))
    }

    fn count_layers(&self, prefix: &str) -> i32 {
        (0..)
            .take_while(|i| {
                let p = format!("{prefix}/layer_{i}/");
                self.model.variables.keys().any(|k| k.starts_with(&p))
            })
            .count() as i32
    }

    fn dim(&self, name: &str, axis: usize) -> Result<i32> {
        let t = self.get(name)?;
        t.shape
            .get(axis)
            .map(|&d| d as i32)
            .ok_or_else(|| self.err(format!("tensor `{name}` has no axis {axis}")))
    }
}

fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// GPT-2's byte-to-unicode table, inverted: the printable character that stands for
/// each byte in `vocabulary.txt` back to the byte.
fn unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let mut bs: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(u32::from('¡')..=u32::from('¬'))
        .chain(u32::from('®')..=u32::from('ÿ'))
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

/// The regular (non-special) tokens as raw bytes: every line before `<|endoftext|>`.
fn read_vocabulary(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path).map_err(ModelError::io(path))?;
    let table = unicode_to_byte();
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line == "<|endoftext|>" {
            return Ok(tokens);
        }
        let bytes = line
            .chars()
            .map(|c| table.get(&c).copied())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                ModelError::format(
                    path,
                    "whisper vocabulary",
                    format!("line {}: not a byte-level token", i + 1),
                )
            })?;
        tokens.push(bytes);
    }
    Err(ModelError::format(
        path,
        "whisper vocabulary",
        "no <|endoftext|> token",
    ))
}

/// Converts; returns the hyper-parameters written.
pub fn convert_ct2_to_ggml(src: WhisperSources<'_>, out: &Path) -> Result<WhisperHparams> {
    let model = read_ct2(src.model_bin)?;
    let conv = Conv {
        model: &model,
        path: src.model_bin,
    };
    if model.spec != "WhisperSpec" {
        return Err(conv.err(format!("spec is `{}`, expected WhisperSpec", model.spec)));
    }
    let n_audio_state = conv.dim("encoder/conv1/weight", 0)?;
    let hparams = WhisperHparams {
        n_vocab: conv.dim("decoder/embeddings/weight", 0)?,
        n_audio_ctx: conv.dim("encoder/position_encodings/encodings", 0)?,
        n_audio_state,
        n_audio_head: conv.scalar("encoder/num_heads")? as i32,
        n_audio_layer: conv.count_layers("encoder"),
        n_text_ctx: conv.dim("decoder/position_encodings/encodings", 0)?,
        n_text_state: conv.dim("decoder/embeddings/weight", 1)?,
        n_text_head: conv.scalar("decoder/num_heads")? as i32,
        n_text_layer: conv.count_layers("decoder"),
        n_mels: conv.dim("encoder/conv1/weight", 1)?,
        ftype: 1,
    };
    let mel = read_npz_f32(src.mel_filters, &format!("mel_{}", hparams.n_mels))?;
    let (n_mel, n_fft) = match mel.shape.as_slice() {
        [a, b] => (*a, *b),
        other => {
            return Err(ModelError::format(
                src.mel_filters,
                "npz",
                format!("mel filters have shape {other:?}, expected 2-D"),
            ));
        }
    };
    let tokens = read_vocabulary(src.vocabulary)?;

    let file = std::fs::File::create(out).map_err(ModelError::io(out))?;
    let w = GgmlWriter::new(
        BufWriter::new(file),
        &hparams,
        &mel.data,
        n_mel,
        n_fft,
        &tokens,
    )
    .map_err(ModelError::io(out))?;
    let mut e = Emitter { conv, w, out };
    let a = n_audio_state as usize;
    let t = hparams.n_text_state as usize;

    e.copy(
        "encoder/position_encodings/encodings",
        "encoder.positional_embedding",
        F32,
    )?;
    for c in ["conv1", "conv2"] {
        e.copy(
            &format!("encoder/{c}/weight"),
            &format!("encoder.{c}.weight"),
            F16,
        )?;
        let bias = e.conv.f32s(&format!("encoder/{c}/bias"))?;
        e.put(&format!("encoder.{c}.bias"), &[a, 1], F32, &bias)?;
    }
    e.norm("encoder/layer_norm", "encoder.ln_post")?;
    for i in 0..hparams.n_audio_layer {
        e.block("encoder", i, a)?;
    }
    e.copy(
        "decoder/position_encodings/encodings",
        "decoder.positional_embedding",
        F32,
    )?;
    e.copy(
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight",
        F16,
    )?;
    e.norm("decoder/layer_norm", "decoder.ln")?;
    for i in 0..hparams.n_text_layer {
        e.block("decoder", i, t)?;
    }
    let mut inner = e.w.finish();
    std::io::Write::flush(&mut inner).map_err(ModelError::io(out))?;
    inner.get_ref().sync_all().map_err(ModelError::io(out))?;
    Ok(hparams)
}

use GgmlType::{F16, F32};

/// A fused projection split into equal parts (rows), with its bias slices.
struct Fused {
    weights: Vec<Vec<f32>>,
    biases: Vec<Vec<f32>>,
}

/// Writes converted tensors, reading them from the CTranslate2 model.
struct Emitter<'a> {
    conv: Conv<'a>,
    w: GgmlWriter<BufWriter<std::fs::File>>,
    out: &'a Path,
}

impl Emitter<'_> {
    /// Writes `values` (numpy-order `shape`) as `ty`.
    fn put(&mut self, name: &str, shape: &[usize], ty: GgmlType, values: &[f32]) -> Result<()> {
        let dims: Vec<usize> = shape.iter().rev().copied().collect();
        let data = match ty {
            F16 => f16_bytes(values),
            F32 => f32_bytes(values),
        };
        self.w
            .tensor(name, &dims, ty, &data)
            .map_err(ModelError::io(self.out))
    }

    /// Copies a tensor with its own shape.
    fn copy(&mut self, src: &str, dst: &str, ty: GgmlType) -> Result<()> {
        let shape = self.conv.get(src)?.shape.clone();
        let values = self.conv.f32s(src)?;
        self.put(dst, &shape, ty, &values)
    }

    fn linear(&mut self, src: &str, dst: &str) -> Result<()> {
        self.copy(&format!("{src}/weight"), &format!("{dst}.weight"), F16)?;
        self.copy(&format!("{src}/bias"), &format!("{dst}.bias"), F32)
    }

    fn norm(&mut self, src: &str, dst: &str) -> Result<()> {
        self.copy(&format!("{src}/gamma"), &format!("{dst}.weight"), F32)?;
        self.copy(&format!("{src}/beta"), &format!("{dst}.bias"), F32)
    }

    fn split(&self, name: &str, parts: usize, n: usize) -> Result<Fused> {
        let w = self.conv.f32s(&format!("{name}/weight"))?;
        let b = self.conv.f32s(&format!("{name}/bias"))?;
        if w.len() != parts * n * n || b.len() != parts * n {
            return Err(self
                .conv
                .err(format!("`{name}` is not {parts} fused {n}x{n} projections")));
        }
        Ok(Fused {
            weights: w.chunks(n * n).map(<[f32]>::to_vec).collect(),
            biases: b.chunks(n).map(<[f32]>::to_vec).collect(),
        })
    }

    /// whisper.cpp has no key bias: the fused key slice must be all zeros.
    fn check_zero_key_bias(&self, name: &str, bias: &[f32]) -> Result<()> {
        if bias.iter().any(|v| *v != 0.0) {
            return Err(self.conv.err(format!(
                "`{name}` has a non-zero key bias, which whisper.cpp cannot represent"
            )));
        }
        Ok(())
    }

    fn block(&mut self, side: &str, i: i32, n: usize) -> Result<()> {
        let s = format!("{side}/layer_{i}");
        let d = format!("{side}.blocks.{i}");
        self.norm(&format!("{s}/ffn/layer_norm"), &format!("{d}.mlp_ln"))?;
        self.linear(&format!("{s}/ffn/linear_0"), &format!("{d}.mlp.0"))?;
        self.linear(&format!("{s}/ffn/linear_1"), &format!("{d}.mlp.2"))?;
        self.norm(
            &format!("{s}/self_attention/layer_norm"),
            &format!("{d}.attn_ln"),
        )?;
        let fused = format!("{s}/self_attention/linear_0");
        let qkv = self.split(&fused, 3, n)?;
        self.check_zero_key_bias(&fused, &qkv.biases[1])?;
        self.put(
            &format!("{d}.attn.query.weight"),
            &[n, n],
            F16,
            &qkv.weights[0],
        )?;
        self.put(&format!("{d}.attn.query.bias"), &[n], F32, &qkv.biases[0])?;
        self.put(
            &format!("{d}.attn.key.weight"),
            &[n, n],
            F16,
            &qkv.weights[1],
        )?;
        self.put(
            &format!("{d}.attn.value.weight"),
            &[n, n],
            F16,
            &qkv.weights[2],
        )?;
        self.put(&format!("{d}.attn.value.bias"), &[n], F32, &qkv.biases[2])?;
        self.linear(
            &format!("{s}/self_attention/linear_1"),
            &format!("{d}.attn.out"),
        )?;
        if side == "decoder" {
            self.norm(
                &format!("{s}/attention/layer_norm"),
                &format!("{d}.cross_attn_ln"),
            )?;
            self.linear(
                &format!("{s}/attention/linear_0"),
                &format!("{d}.cross_attn.query"),
            )?;
            let fused = format!("{s}/attention/linear_1");
            let kv = self.split(&fused, 2, n)?;
            self.check_zero_key_bias(&fused, &kv.biases[0])?;
            self.put(
                &format!("{d}.cross_attn.key.weight"),
                &[n, n],
                F16,
                &kv.weights[0],
            )?;
            self.put(
                &format!("{d}.cross_attn.value.weight"),
                &[n, n],
                F16,
                &kv.weights[1],
            )?;
            self.put(
                &format!("{d}.cross_attn.value.bias"),
                &[n],
                F32,
                &kv.biases[1],
            )?;
            self.linear(
                &format!("{s}/attention/linear_2"),
                &format!("{d}.cross_attn.out"),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let t = unicode_to_byte();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'Ġ'], b' ');
        assert_eq!(t[&'!'], b'!');
    }
}
