//! llama.cpp for the `aisle` runtime, behind the small C ABI of the functions below.
//!
//! The runtime loads this library with `dlopen` (`aisle_runtime::llm`). One engine holds
//! a model and one context; [`aisle_llm_generate`] keeps the tokens whose keys and
//! values are in the context's cache and re-uses the longest common prefix with the
//! next prompt, so a fixed system prompt is computed once, not per question.
//!
//! Every function catches panics; errors are written as text into the caller's buffer.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::sync::Once;
use std::time::Instant;

use llama_cpp_sys_2 as sys;

/// Bumped on any change to the functions or structs below.
pub const ABI_VERSION: u32 = 1;

/// Timings of one [`aisle_llm_generate`] call.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct AisleLlmStats {
    /// Tokens in the whole prompt.
    pub prompt_tokens: u32,
    /// Of those, already in the cache (not computed again).
    pub cached_tokens: u32,
    /// Time to compute the rest of the prompt.
    pub prompt_ms: f64,
    /// From the call to the first generated token's text.
    pub first_token_ms: f64,
    pub generated_tokens: u32,
    /// Time spent generating (after the prompt).
    pub generate_ms: f64,
}

/// Receives each piece of generated text (valid UTF-8, not NUL-terminated); returns
/// non-zero to stop generation.
pub type PieceFn = unsafe extern "C" fn(user: *mut c_void, text: *const u8, len: usize) -> i32;

pub struct LlamaEngine {
    model: *mut sys::llama_model,
    ctx: *mut sys::llama_context,
    vocab: *const sys::llama_vocab,
    n_ctx: u32,
    n_batch: u32,
    /// Tokens whose keys/values are in the cache (sequence 0), in order.
    cached: Vec<sys::llama_token>,
}

impl Drop for LlamaEngine {
    fn drop(&mut self) {
        // SAFETY: both were created by llama.cpp in `open` and are freed once here.
        unsafe {
            if !self.ctx.is_null() {
                sys::llama_free(self.ctx);
            }
            if !self.model.is_null() {
                sys::llama_model_free(self.model);
            }
        }
    }
}

static INIT: Once = Once::new();

unsafe extern "C" fn quiet_log(
    _level: sys::ggml_log_level,
    _text: *const c_char,
    _user: *mut c_void,
) {
}

fn init_backend() {
    INIT.call_once(|| {
        // SAFETY: process-wide initialisation, done once.
        unsafe {
            sys::llama_log_set(Some(quiet_log), ptr::null_mut());
            sys::llama_backend_init();
        }
    });
}

fn write_err(buf: *mut c_char, cap: usize, msg: &str) {
    if buf.is_null() || cap == 0 {
        return;
    }
    let bytes = msg.as_bytes();
    let n = bytes.len().min(cap - 1);
    // SAFETY: the caller passes a buffer of `cap` bytes.
    unsafe {
        ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

fn guard<T>(err: *mut c_char, cap: usize, fail: T, f: impl FnOnce() -> Result<T, String>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            write_err(err, cap, &e);
            fail
        }
        Err(_) => {
            write_err(err, cap, "internal error (panic) in the LLM engine");
            fail
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn aisle_llm_abi_version() -> u32 {
    ABI_VERSION
}

/// Loads a GGUF model. Returns null on failure with the reason in `err`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aisle_llm_open(
    path: *const c_char,
    n_threads: i32,
    n_ctx: u32,
    err: *mut c_char,
    err_cap: usize,
) -> *mut LlamaEngine {
    guard(err, err_cap, ptr::null_mut(), || {
        if path.is_null() {
            return Err("no model path".into());
        }
        init_backend();
        // SAFETY: the caller passes a NUL-terminated path.
        let path_c = unsafe { CStr::from_ptr(path) };
        let mut engine = LlamaEngine {
            model: ptr::null_mut(),
            ctx: ptr::null_mut(),
            vocab: ptr::null(),
            n_ctx,
            n_batch: 512,
            cached: Vec::new(),
        };
        // SAFETY: plain llama.cpp API calls on pointers it returned, checked for null.
        unsafe {
            let mut mp = sys::llama_model_default_params();
            mp.n_gpu_layers = 0;
            engine.model = sys::llama_model_load_from_file(path_c.as_ptr(), mp);
            if engine.model.is_null() {
                return Err(format!(
                    "llama.cpp cannot load {} (not a GGUF model it supports, or a damaged file)",
                    path_c.to_string_lossy()
                ));
            }
            let mut cp = sys::llama_context_default_params();
            cp.n_ctx = n_ctx;
            cp.n_batch = engine.n_batch;
            cp.n_ubatch = engine.n_batch;
            cp.n_seq_max = 1;
            cp.n_threads = n_threads.max(1);
            cp.n_threads_batch = n_threads.max(1);
            cp.no_perf = true;
            engine.ctx = sys::llama_init_from_model(engine.model, cp);
            if engine.ctx.is_null() {
                return Err("llama.cpp cannot create a context for this model".into());
            }
            engine.n_ctx = sys::llama_n_ctx(engine.ctx);
            engine.vocab = sys::llama_model_get_vocab(engine.model);
        }
        Ok(Box::into_raw(Box::new(engine)))
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn aisle_llm_close(engine: *mut LlamaEngine) {
    if !engine.is_null() {
        // SAFETY: `engine` came from `aisle_llm_open` and is closed once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(engine) })));
    }
}

impl LlamaEngine {
    fn tokenize(&self, text: &[u8]) -> Result<Vec<sys::llama_token>, String> {
        let len = i32::try_from(text.len()).map_err(|_| "prompt too long".to_string())?;
        let mut out = vec![0; text.len() + 8];
        // SAFETY: `out` has room for `out.len()` tokens; special tokens are parsed
        // because the prompt carries the chat template's markers.
        let n = unsafe {
            sys::llama_tokenize(
                self.vocab,
                text.as_ptr().cast(),
                len,
                out.as_mut_ptr(),
                out.len() as i32,
                false,
                true,
            )
        };
        if n < 0 {
            return Err(format!("cannot tokenize the prompt ({n})"));
        }
        out.truncate(n as usize);
        Ok(out)
    }

    fn piece(&self, token: sys::llama_token, out: &mut Vec<u8>) {
        let mut buf = [0u8; 128];
        // SAFETY: `buf` holds 128 bytes; special tokens are not rendered.
        let n = unsafe {
            sys::llama_token_to_piece(
                self.vocab,
                token,
                buf.as_mut_ptr().cast(),
                buf.len() as i32,
                0,
                false,
            )
        };
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    /// Computes `tokens` at positions `cached.len()..`, in batches.
    fn feed(&mut self, tokens: &[sys::llama_token]) -> Result<(), String> {
        for chunk in tokens.chunks(self.n_batch as usize) {
            let mut chunk = chunk.to_vec();
            // SAFETY: the batch views `chunk`, alive for the call.
            let rc = unsafe {
                let batch = sys::llama_batch_get_one(chunk.as_mut_ptr(), chunk.len() as i32);
                sys::llama_decode(self.ctx, batch)
            };
            if rc != 0 {
                // The cache may hold part of the batch: forget it all.
                self.reset();
                return Err(format!("llama.cpp decode failed ({rc})"));
            }
            self.cached.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn reset(&mut self) {
        // SAFETY: the context is valid; removing all of sequence 0 cannot fail.
        unsafe {
            let mem = sys::llama_get_memory(self.ctx);
            sys::llama_memory_seq_rm(mem, 0, -1, -1);
        }
        self.cached.clear();
    }

    /// Keeps the first `keep` cached tokens.
    fn truncate(&mut self, keep: usize) {
        if keep >= self.cached.len() {
            return;
        }
        // SAFETY: the context is valid.
        let ok = unsafe {
            let mem = sys::llama_get_memory(self.ctx);
            sys::llama_memory_seq_rm(mem, 0, keep as i32, -1)
        };
        if ok {
            self.cached.truncate(keep);
        } else {
            self.reset();
        }
    }

    fn generate(
        &mut self,
        prompt: &[u8],
        grammar: Option<&CStr>,
        max_tokens: u32,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<AisleLlmStats, String> {
        let t0 = Instant::now();
        let tokens = self.tokenize(prompt)?;
        if tokens.is_empty() {
            return Err("empty prompt".into());
        }
        if tokens.len() + max_tokens as usize > self.n_ctx as usize {
            return Err(format!(
                "prompt of {} tokens plus {max_tokens} to generate exceeds the context of {}",
                tokens.len(),
                self.n_ctx
            ));
        }
        // Re-use the cached prefix; at least one token is computed to get logits.
        let common = self
            .cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len() - 1);
        self.truncate(common);
        let mut stats = AisleLlmStats {
            prompt_tokens: tokens.len() as u32,
            cached_tokens: common as u32,
            ..Default::default()
        };
        self.feed(&tokens[common..])?;
        stats.prompt_ms = t0.elapsed().as_secs_f64() * 1e3;

        // SAFETY: sampler objects are created, owned by the chain, and freed below.
        let chain = unsafe {
            let chain = sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params());
            if let Some(g) = grammar {
                let gs = sys::llama_sampler_init_grammar(self.vocab, g.as_ptr(), c"root".as_ptr());
                if gs.is_null() {
                    sys::llama_sampler_free(chain);
                    return Err("the grammar does not parse".into());
                }
                sys::llama_sampler_chain_add(chain, gs);
            }
            sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_greedy());
            chain
        };
        let t1 = Instant::now();
        let mut pending: Vec<u8> = Vec::new();
        let mut result = Ok(());
        for step in 0..max_tokens {
            // SAFETY: the context has logits for its last computed token.
            let token = unsafe { sys::llama_sampler_sample(chain, self.ctx, -1) };
            // SAFETY: the vocabulary belongs to the loaded model.
            if unsafe { sys::llama_vocab_is_eog(self.vocab, token) } {
                break;
            }
            stats.generated_tokens += 1;
            self.piece(token, &mut pending);
            // Hand over whole UTF-8 characters only.
            let valid = match std::str::from_utf8(&pending) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            if valid > 0 {
                let text = std::str::from_utf8(&pending[..valid]).unwrap_or_default();
                if stats.first_token_ms == 0.0 {
                    stats.first_token_ms = t0.elapsed().as_secs_f64() * 1e3;
                }
                let stop = on_piece(text);
                pending.drain(..valid);
                if stop {
                    break;
                }
            }
            // The last token is not computed: nothing would read its logits.
            if step + 1 == max_tokens || self.cached.len() + 1 >= self.n_ctx as usize {
                break;
            }
            if let Err(e) = self.feed(&[token]) {
                result = Err(e);
                break;
            }
        }
        // SAFETY: the chain owns its samplers.
        unsafe { sys::llama_sampler_free(chain) };
        result?;
        stats.generate_ms = t1.elapsed().as_secs_f64() * 1e3;
        Ok(stats)
    }
}

/// Generates from `prompt` (UTF-8, chat-template markers allowed) with greedy
/// decoding, optionally constrained by a GBNF `grammar` (root rule `root`), at most
/// `max_tokens`. Each piece of text goes to `on_piece`. Returns 0 on success, -1 on
/// failure (reason in `err`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aisle_llm_generate(
    engine: *mut LlamaEngine,
    prompt: *const u8,
    prompt_len: usize,
    grammar: *const c_char,
    max_tokens: u32,
    on_piece: Option<PieceFn>,
    user: *mut c_void,
    stats: *mut AisleLlmStats,
    err: *mut c_char,
    err_cap: usize,
) -> i32 {
    guard(err, err_cap, -1, || {
        if engine.is_null() || prompt.is_null() {
            return Err("no engine or prompt".into());
        }
        // SAFETY: the caller passes a live engine (used by one thread at a time) and a
        // prompt of `prompt_len` bytes; `grammar` is null or NUL-terminated.
        let (engine, prompt, grammar) = unsafe {
            (
                &mut *engine,
                std::slice::from_raw_parts(prompt, prompt_len),
                (!grammar.is_null()).then(|| CStr::from_ptr(grammar)),
            )
        };
        let mut cb = |text: &str| match on_piece {
            // SAFETY: the callback and `user` are the caller's, valid for this call.
            Some(f) => unsafe { f(user, text.as_ptr(), text.len()) != 0 },
            None => false,
        };
        let s = engine.generate(prompt, grammar, max_tokens, &mut cb)?;
        if !stats.is_null() {
            // SAFETY: the caller passes a writable stats struct or null.
            unsafe { *stats = s };
        }
        Ok(0)
    })
}

/// Forgets the cached prompt (the next call computes everything).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aisle_llm_reset(engine: *mut LlamaEngine) {
    if !engine.is_null() {
        // SAFETY: a live engine from `aisle_llm_open`.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { (*engine).reset() }));
    }
}
