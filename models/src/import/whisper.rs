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

    let tmp_err = ModelError::io(out);
    let file = std::fs::File::create(out).map_err(tmp_err)?;
    let mut w = GgmlWriter::new(
        BufWriter::new(file),
        &hparams,
        &mel.data,
        n_mel,
        n_fft,
        &tokens,
    )
    .map_err(ModelError::io(out))?;
    let mut put = |w: &mut GgmlWriter<BufWriter<std::fs::File>>,
                   name: &str,
                   numpy_shape: &[usize],
                   ty: GgmlType,
                   values: &[f32]|
     -> Result<()> {
        let dims: Vec<usize> = numpy_shape.iter().rev().copied().collect();
        let data = match ty {
            GgmlType::F16 => f16_bytes(values),
            GgmlType::F32 => f32_bytes(values),
        };
        w.tensor(name, &dims, ty, &data)
            .map_err(ModelError::io(out))
    };
    use GgmlType::{F16, F32};
    let a = n_audio_state as usize;
    let t = hparams.n_text_state as usize;

    // Encoder stem.
    let pe = conv.get("encoder/position_encodings/encodings")?;
    put(
        &mut w,
        "encoder.positional_embedding",
        &pe.shape,
        F32,
        &conv.f32s("encoder/position_encodings/encodings")?,
    )?;
    for c in ["conv1", "conv2"] {
        let wt = conv.get(&format!("encoder/{c}/weight"))?;
        put(
            &mut w,
            &format!("encoder.{c}.weight"),
            &wt.shape,
            F16,
            &conv.f32s(&format!("encoder/{c}/weight"))?,
        )?;
        put(
            &mut w,
            &format!("encoder.{c}.bias"),
            &[a, 1],
            F32,
            &conv.f32s(&format!("encoder/{c}/bias"))?,
        )?;
    }
    put(
        &mut w,
        "encoder.ln_post.weight",
        &[a],
        F32,
        &conv.f32s("encoder/layer_norm/gamma")?,
    )?;
    put(
        &mut w,
        "encoder.ln_post.bias",
        &[a],
        F32,
        &conv.f32s("encoder/layer_norm/beta")?,
    )?;

    let linear = |w: &mut GgmlWriter<BufWriter<std::fs::File>>,
                  put: &mut dyn FnMut(
        &mut GgmlWriter<BufWriter<std::fs::File>>,
        &str,
        &[usize],
        GgmlType,
        &[f32],
    ) -> Result<()>,
                  src: &str,
                  dst: &str|
     -> Result<()> {
        let wt = conv.get(&format!("{src}/weight"))?;
        put(
            w,
            &format!("{dst}.weight"),
            &wt.shape,
            F16,
            &conv.f32s(&format!("{src}/weight"))?,
        )?;
        let b = conv.f32s(&format!("{src}/bias"))?;
        put(w, &format!("{dst}.bias"), &[b.len()], F32, &b)
    };
    let norm = |w: &mut GgmlWriter<BufWriter<std::fs::File>>,
                put: &mut dyn FnMut(
        &mut GgmlWriter<BufWriter<std::fs::File>>,
        &str,
        &[usize],
        GgmlType,
        &[f32],
    ) -> Result<()>,
                src: &str,
                dst: &str,
                n: usize|
     -> Result<()> {
        put(
            w,
            &format!("{dst}.weight"),
            &[n],
            F32,
            &conv.f32s(&format!("{src}/gamma"))?,
        )?;
        put(
            w,
            &format!("{dst}.bias"),
            &[n],
            F32,
            &conv.f32s(&format!("{src}/beta"))?,
        )
    };
    // Splits a fused projection (rows) into `parts` equal matrices and bias slices.
    let split = |name: &str, parts: usize, n: usize| -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>)> {
        let wt = conv.f32s(&format!("{name}/weight"))?;
        let b = conv.f32s(&format!("{name}/bias"))?;
        if wt.len() != parts * n * n || b.len() != parts * n {
            return Err(conv.err(format!("`{name}` is not {parts} fused {n}x{n} projections")));
        }
        Ok((
            wt.chunks(n * n).map(<[f32]>::to_vec).collect(),
            b.chunks(n).map(<[f32]>::to_vec).collect(),
        ))
    };
    let zero_key_bias = |name: &str, bias: &[f32]| -> Result<()> {
        if bias.iter().any(|v| *v != 0.0) {
            return Err(conv.err(format!(
                "`{name}` has a non-zero key bias, which whisper.cpp cannot represent"
            )));
        }
        Ok(())
    };

    let block = |w: &mut GgmlWriter<BufWriter<std::fs::File>>,
                 put: &mut dyn FnMut(
        &mut GgmlWriter<BufWriter<std::fs::File>>,
        &str,
        &[usize],
        GgmlType,
        &[f32],
    ) -> Result<()>,
                 side: &str,
                 i: i32,
                 n: usize|
     -> Result<()> {
        let s = format!("{side}/layer_{i}");
        let d = format!("{side}.blocks.{i}");
        norm(
            w,
            put,
            &format!("{s}/ffn/layer_norm"),
            &format!("{d}.mlp_ln"),
            n,
        )?;
        linear(w, put, &format!("{s}/ffn/linear_0"), &format!("{d}.mlp.0"))?;
        linear(w, put, &format!("{s}/ffn/linear_1"), &format!("{d}.mlp.2"))?;
        norm(
            w,
            put,
            &format!("{s}/self_attention/layer_norm"),
            &format!("{d}.attn_ln"),
            n,
        )?;
        let fused = format!("{s}/self_attention/linear_0");
        let (ws, bs) = split(&fused, 3, n)?;
        zero_key_bias(&fused, &bs[1])?;
        put(w, &format!("{d}.attn.query.weight"), &[n, n], F16, &ws[0])?;
        put(w, &format!("{d}.attn.query.bias"), &[n], F32, &bs[0])?;
        put(w, &format!("{d}.attn.key.weight"), &[n, n], F16, &ws[1])?;
        put(w, &format!("{d}.attn.value.weight"), &[n, n], F16, &ws[2])?;
        put(w, &format!("{d}.attn.value.bias"), &[n], F32, &bs[2])?;
        linear(
            w,
            put,
            &format!("{s}/self_attention/linear_1"),
            &format!("{d}.attn.out"),
        )?;
        if side == "decoder" {
            norm(
                w,
                put,
                &format!("{s}/attention/layer_norm"),
                &format!("{d}.cross_attn_ln"),
                n,
            )?;
            linear(
                w,
                put,
                &format!("{s}/attention/linear_0"),
                &format!("{d}.cross_attn.query"),
            )?;
            let fused = format!("{s}/attention/linear_1");
            let (ws, bs) = split(&fused, 2, n)?;
            zero_key_bias(&fused, &bs[0])?;
            put(
                w,
                &format!("{d}.cross_attn.key.weight"),
                &[n, n],
                F16,
                &ws[0],
            )?;
            put(
                w,
                &format!("{d}.cross_attn.value.weight"),
                &[n, n],
                F16,
                &ws[1],
            )?;
            put(w, &format!("{d}.cross_attn.value.bias"), &[n], F32, &bs[1])?;
            linear(
                w,
                put,
                &format!("{s}/attention/linear_2"),
                &format!("{d}.cross_attn.out"),
            )?;
        }
        Ok(())
    };
    for i in 0..hparams.n_audio_layer {
        block(&mut w, &mut put, "encoder", i, a)?;
    }
    let pe = conv.get("decoder/position_encodings/encodings")?;
    put(
        &mut w,
        "decoder.positional_embedding",
        &pe.shape,
        F32,
        &conv.f32s("decoder/position_encodings/encodings")?,
    )?;
    let emb = conv.get("decoder/embeddings/weight")?;
    put(
        &mut w,
        "decoder.token_embedding.weight",
        &emb.shape,
        F16,
        &conv.f32s("decoder/embeddings/weight")?,
    )?;
    put(
        &mut w,
        "decoder.ln.weight",
        &[t],
        F32,
        &conv.f32s("decoder/layer_norm/gamma")?,
    )?;
    put(
        &mut w,
        "decoder.ln.bias",
        &[t],
        F32,
        &conv.f32s("decoder/layer_norm/beta")?,
    )?;
    for i in 0..hparams.n_text_layer {
        block(&mut w, &mut put, "decoder", i, t)?;
    }
    let mut inner = w.finish();
    std::io::Write::flush(&mut inner).map_err(ModelError::io(out))?;
    inner.get_ref().sync_all().map_err(ModelError::io(out))?;
    Ok(hparams)
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
