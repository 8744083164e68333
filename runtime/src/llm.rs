//! The on-device LLM: llama.cpp in the `aisle-llm` cdylib, loaded at run time.
//!
//! whisper-rs links its own ggml into the `aisle` binary; llama.cpp carries another.
//! Linked together they clash (591 duplicate symbols), so llama.cpp lives in
//! `libaisle_llm.so`, which exports only a small C ABI and keeps its ggml to itself.
//! This module finds that library, checks its ABI version, and wraps it safely.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Must match `aisle_llm::ABI_VERSION`.
const ABI_VERSION: u32 = 1;
/// File name of the engine library on this platform.
pub const LIB_NAME: &str = "libaisle_llm.so";

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error(
        "the LLM engine library {LIB_NAME} was not found (looked in {0}); build it with `cargo build --release -p aisle-llm` or set AISLE_LLM_LIB"
    )]
    LibraryMissing(String),
    #[error("cannot load the LLM engine library {0}: {1}")]
    Library(PathBuf, String),
    #[error(
        "the LLM engine library {0} speaks ABI {1}, this build needs {ABI_VERSION}; rebuild it"
    )]
    Abi(PathBuf, u32),
    #[error("{0}: {1}")]
    Model(PathBuf, String),
    #[error("LLM generation failed: {0}")]
    Generate(String),
}

/// Timings of one generation (see `aisle_llm::AisleLlmStats`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Stats {
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub prompt_ms: f64,
    pub first_token_ms: f64,
    pub generated_tokens: u32,
    pub generate_ms: f64,
}

type PieceFn = unsafe extern "C" fn(*mut c_void, *const u8, usize) -> i32;
type OpenFn = unsafe extern "C" fn(*const c_char, i32, u32, *mut c_char, usize) -> *mut c_void;
type CloseFn = unsafe extern "C" fn(*mut c_void);
type GenerateFn = unsafe extern "C" fn(
    *mut c_void,
    *const u8,
    usize,
    *const c_char,
    u32,
    Option<PieceFn>,
    *mut c_void,
    *mut Stats,
    *mut c_char,
    usize,
) -> i32;
type VersionFn = unsafe extern "C" fn() -> u32;
type ResetFn = unsafe extern "C" fn(*mut c_void);

struct Handle(*mut c_void);
// SAFETY: the engine is used by one thread at a time (behind the mutex).
unsafe impl Send for Handle {}

/// A loaded model. Calls are serialised; the prompt cache lives across calls.
pub struct Llm {
    engine: Mutex<Handle>,
    generate: GenerateFn,
    reset: ResetFn,
    close: CloseFn,
    pub model: PathBuf,
    pub library: PathBuf,
    // Dropped last: the function pointers above point into it.
    _lib: libloading::Library,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm").field("model", &self.model).finish()
    }
}

/// Where the engine library is looked for: `AISLE_LLM_LIB` (set by whoever starts
/// the process; the packaged unit does not), else next to the running executable;
/// development builds also look one level up (test binaries live in
/// `target/*/deps`) and in the workspace's own `target/release` and `target/debug`.
/// An installed binary loads no library from anywhere else (SECURITY.md).
pub fn library_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("AISLE_LLM_LIB") {
        v.push(PathBuf::from(p));
        return v;
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        v.push(dir.join(LIB_NAME));
        if cfg!(debug_assertions)
            && let Some(up) = dir.parent()
        {
            v.push(up.join(LIB_NAME));
        }
    }
    // A development build also finds the workspace's own; an installed (release)
    // binary only what is beside it.
    if cfg!(debug_assertions) {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        for profile in ["release", "debug"] {
            v.push(target.join(profile).join(LIB_NAME));
        }
    }
    v
}

fn err_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

unsafe extern "C" fn trampoline(user: *mut c_void, text: *const u8, len: usize) -> i32 {
    // SAFETY: `user` is the `&mut &mut dyn FnMut` passed by `generate`, alive for the
    // call; the engine passes `len` bytes of valid UTF-8.
    let (f, bytes) = unsafe {
        (
            &mut *user.cast::<&mut dyn FnMut(&str) -> bool>(),
            std::slice::from_raw_parts(text, len),
        )
    };
    let text = std::str::from_utf8(bytes).unwrap_or_default();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(text))).unwrap_or(true) as i32
}

impl Llm {
    /// Loads the engine library and the GGUF model at `model`.
    pub fn load(model: &Path, threads: usize, n_ctx: u32) -> Result<Self, LlmError> {
        let candidates = library_candidates();
        let library = candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| {
                LlmError::LibraryMissing(
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })?;
        let lib_err = |e: libloading::Error| LlmError::Library(library.clone(), e.to_string());
        // SAFETY: loading our own engine library; its initialisers only set up
        // llama.cpp's static state. Symbols are checked by name and ABI version.
        unsafe {
            let lib = libloading::Library::new(&library).map_err(lib_err)?;
            let version: VersionFn = *lib
                .get::<VersionFn>(b"aisle_llm_abi_version\0")
                .map_err(lib_err)?;
            let v = version();
            if v != ABI_VERSION {
                return Err(LlmError::Abi(library, v));
            }
            let open: OpenFn = *lib.get::<OpenFn>(b"aisle_llm_open\0").map_err(lib_err)?;
            let close: CloseFn = *lib.get::<CloseFn>(b"aisle_llm_close\0").map_err(lib_err)?;
            let generate: GenerateFn = *lib
                .get::<GenerateFn>(b"aisle_llm_generate\0")
                .map_err(lib_err)?;
            let reset: ResetFn = *lib.get::<ResetFn>(b"aisle_llm_reset\0").map_err(lib_err)?;
            let path = CString::new(model.as_os_str().as_encoded_bytes())
                .map_err(|_| LlmError::Model(model.into(), "path contains a NUL byte".into()))?;
            let mut err = [0u8; 512];
            let engine = open(
                path.as_ptr(),
                threads.max(1) as i32,
                n_ctx,
                err.as_mut_ptr().cast(),
                err.len(),
            );
            if engine.is_null() {
                return Err(LlmError::Model(model.into(), err_text(&err)));
            }
            Ok(Self {
                engine: Mutex::new(Handle(engine)),
                generate,
                reset,
                close,
                model: model.into(),
                library,
                _lib: lib,
            })
        }
    }

    /// Greedy generation from `prompt` (ChatML markers allowed), constrained by a
    /// GBNF `grammar` when given; `on_piece` gets each piece of text and returns true
    /// to stop. The longest prefix shared with the previous prompt is not recomputed.
    pub fn generate(
        &self,
        prompt: &str,
        grammar: Option<&str>,
        max_tokens: u32,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Stats, LlmError> {
        let grammar = grammar
            .map(CString::new)
            .transpose()
            .map_err(|_| LlmError::Generate("grammar contains a NUL byte".into()))?;
        let engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats = Stats::default();
        let mut err = [0u8; 512];
        let mut cb: &mut dyn FnMut(&str) -> bool = on_piece;
        // SAFETY: a live engine, used under the lock; every pointer is valid for the
        // call; the trampoline's `user` is `cb`, which outlives the call.
        let rc = unsafe {
            (self.generate)(
                engine.0,
                prompt.as_ptr(),
                prompt.len(),
                grammar.as_ref().map_or(std::ptr::null(), |g| g.as_ptr()),
                max_tokens,
                Some(trampoline),
                (&mut cb as *mut &mut dyn FnMut(&str) -> bool).cast(),
                &mut stats,
                err.as_mut_ptr().cast(),
                err.len(),
            )
        };
        if rc != 0 {
            return Err(LlmError::Generate(err_text(&err)));
        }
        Ok(stats)
    }

    /// Forgets the cached prompt: the next generation computes all of its prompt.
    pub fn reset(&self) {
        let engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: a live engine, used under the lock.
        unsafe { (self.reset)(engine.0) };
    }

    /// The whole text of a generation.
    pub fn complete(
        &self,
        prompt: &str,
        grammar: Option<&str>,
        max_tokens: u32,
    ) -> Result<(String, Stats), LlmError> {
        let mut out = String::new();
        let stats = self.generate(prompt, grammar, max_tokens, &mut |p| {
            out.push_str(p);
            false
        })?;
        Ok((out, stats))
    }
}

impl Drop for Llm {
    fn drop(&mut self) {
        let engine = self.engine.get_mut().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the engine came from `aisle_llm_open` and is closed once, before
        // the library is unloaded (`_lib` drops after this).
        unsafe { (self.close)(engine.0) };
    }
}

/// The dialogue engine's fallback reads products through this.
impl aisle_dialogue::models::Complete for Llm {
    fn complete(
        &self,
        prompt: &str,
        grammar: Option<&str>,
        max_tokens: u32,
    ) -> Result<(String, aisle_dialogue::models::GenStats), aisle_dialogue::models::ModelError>
    {
        let (text, s) = Llm::complete(self, prompt, grammar, max_tokens)
            .map_err(|e| aisle_dialogue::models::ModelError(e.to_string()))?;
        Ok((
            text,
            aisle_dialogue::models::GenStats {
                prompt_tokens: s.prompt_tokens,
                cached_tokens: s.cached_tokens,
                prompt_ms: s.prompt_ms,
                first_token_ms: s.first_token_ms,
                generated_tokens: s.generated_tokens,
                generate_ms: s.generate_ms,
            },
        ))
    }
}
