//! ONNX execution behind one small interface, two engines chosen per model:
//! tract (pure Rust, always available) and ONNX Runtime through `ort` with
//! `load-dynamic` (the library comes from the model store's `onnxruntime` entry).
//! Measured here on 2 cores ONNX Runtime runs these vision models 1.2-5x faster
//! than tract; tract needs no native library and is the fallback.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

/// Which engine runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// tract-onnx, pure Rust.
    Tract,
    /// ONNX Runtime, loaded at run time from `libonnxruntime.so`.
    #[default]
    #[serde(alias = "ort")]
    OnnxRuntime,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Tract => "tract",
            Engine::OnnxRuntime => "onnxruntime",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tract" => Some(Engine::Tract),
            "onnxruntime" | "ort" => Some(Engine::OnnxRuntime),
            _ => None,
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One input value.
pub enum Input<'a> {
    F32(ArrayViewD<'a, f32>),
    I64(ArrayViewD<'a, i64>),
}

/// Element type of a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    F32,
    /// Token ids (text encoders).
    I64,
}

/// How to run a model.
#[derive(Debug, Clone)]
pub struct OnnxOptions {
    pub engine: Engine,
    /// Intra-op threads (0 = 1).
    pub threads: usize,
    /// `libonnxruntime.so`, required for [`Engine::OnnxRuntime`].
    pub ort_library: Option<PathBuf>,
}

impl OnnxOptions {
    pub fn tract(threads: usize) -> Self {
        OnnxOptions {
            engine: Engine::Tract,
            threads,
            ort_library: None,
        }
    }

    pub fn onnxruntime(threads: usize, library: PathBuf) -> Self {
        OnnxOptions {
            engine: Engine::OnnxRuntime,
            threads,
            ort_library: Some(library),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{path}: cannot load ONNX model with {engine}: {message}")]
    Load {
        path: PathBuf,
        engine: Engine,
        message: String,
    },
    #[error("ONNX Runtime library {path}: {message}")]
    Library { path: PathBuf, message: String },
    #[error(
        "ONNX Runtime is selected but no library path was given (install the `onnxruntime` model entry)"
    )]
    NoLibrary,
    #[error("{path}: inference failed ({engine}): {message}")]
    Run {
        path: PathBuf,
        engine: Engine,
        message: String,
    },
}

enum Inner {
    Tract(std::sync::Arc<TypedRunnableModel>),
    Ort(Mutex<ort::session::Session>),
}

/// A loaded ONNX model with fixed input shapes, ready to run.
pub struct OnnxModel {
    inner: Inner,
    path: PathBuf,
    engine: Engine,
    inputs: Vec<String>,
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("engine", &self.engine)
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// ONNX Runtime allows one environment per process; the first library loaded wins.
static ORT_ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn ort_init(library: &Path) -> Result<&'static ort::environment::Environment, OnnxError> {
    let lib_err = |message: String| OnnxError::Library {
        path: library.to_path_buf(),
        message,
    };
    if !library.is_file() {
        return Err(lib_err("no such file".into()));
    }
    let r = ORT_ENV.get_or_init(|| {
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("aisle")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    });
    match r {
        Ok(env) => Ok(env),
        Err(m) => Err(lib_err(m.clone())),
    }
}

impl OnnxModel {
    /// Loads `path` with each input fixed to the given shape (`(name, shape)` in
    /// the graph's input order), optimised once here.
    pub fn load(
        path: &Path,
        inputs: &[(&str, &[usize])],
        options: &OnnxOptions,
    ) -> Result<Self, OnnxError> {
        let typed: Vec<(&str, &[usize], InputType)> = inputs
            .iter()
            .map(|(n, s)| (*n, *s, InputType::F32))
            .collect();
        Self::load_typed(path, &typed, options)
    }

    /// As [`Self::load`], with each input's element type.
    pub fn load_typed(
        path: &Path,
        inputs: &[(&str, &[usize], InputType)],
        options: &OnnxOptions,
    ) -> Result<Self, OnnxError> {
        let engine = options.engine;
        let load_err = |message: String| OnnxError::Load {
            path: path.to_path_buf(),
            engine,
            message,
        };
        let threads = options.threads.max(1);
        let inner = match engine {
            Engine::Tract => {
                let mut model = tract_onnx::onnx()
                    .model_for_path(path)
                    .map_err(|e| load_err(format!("{e:#}")))?;
                for (i, (_, shape, ty)) in inputs.iter().enumerate() {
                    let fact = match ty {
                        InputType::F32 => f32::fact(shape.iter().copied()),
                        InputType::I64 => i64::fact(shape.iter().copied()),
                    };
                    model = model
                        .with_input_fact(i, fact.into())
                        .map_err(|e| load_err(format!("input {i}: {e:#}")))?;
                }
                let typed = model
                    .into_optimized()
                    .map_err(|e| load_err(format!("{e:#}")))?;
                let run_options = RunOptions {
                    executor: (threads > 1)
                        .then(|| tract_linalg::multithread::Executor::multithread(threads)),
                    ..Default::default()
                };
                let runnable = typed
                    .into_runnable_with_options(&run_options)
                    .map_err(|e| load_err(format!("{e:#}")))?;
                Inner::Tract(runnable)
            }
            Engine::OnnxRuntime => {
                let lib = options.ort_library.as_deref().ok_or(OnnxError::NoLibrary)?;
                let env = ort_init(lib)?;
                if !path.is_file() {
                    return Err(load_err("no such file".into()));
                }
                // Every graph optimisation on, stated rather than left to the
                // library's default (the Python peers in the benches set the same).
                let session = ort::session::Session::builder(env)
                    .map_err(|e| load_err(e.to_string()))?
                    .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
                    .map_err(|e| load_err(e.to_string()))?
                    .with_intra_threads(threads)
                    .map_err(|e| load_err(e.to_string()))?
                    .with_inter_threads(1)
                    .map_err(|e| load_err(e.to_string()))?
                    .commit_from_file(path)
                    .map_err(|e| load_err(e.to_string()))?;
                if session.inputs().len() != inputs.len() {
                    return Err(load_err(format!(
                        "the graph has {} inputs, expected {}",
                        session.inputs().len(),
                        inputs.len()
                    )));
                }
                Inner::Ort(Mutex::new(session))
            }
        };
        Ok(OnnxModel {
            inner,
            path: path.to_path_buf(),
            engine,
            inputs: inputs.iter().map(|(n, _, _)| n.to_string()).collect(),
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a model with one int64 input (token ids) and returns every output.
    pub fn run_i64(&self, input: ArrayViewD<'_, i64>) -> Result<Vec<ArrayD<f32>>, OnnxError> {
        self.run_inputs(&[Input::I64(input)])
    }

    /// Runs the model on `inputs` (same order and shapes as at load) and returns
    /// every output, in graph order.
    pub fn run(&self, inputs: &[ArrayViewD<'_, f32>]) -> Result<Vec<ArrayD<f32>>, OnnxError> {
        let inputs: Vec<Input<'_>> = inputs.iter().map(|a| Input::F32(a.view())).collect();
        self.run_inputs(&inputs)
    }

    /// Runs the model on inputs of mixed element types (graph order). With ONNX
    /// Runtime the shapes may differ from run to run (dynamic axes).
    pub fn run_inputs(&self, inputs: &[Input<'_>]) -> Result<Vec<ArrayD<f32>>, OnnxError> {
        let run_err = |message: String| OnnxError::Run {
            path: self.path.clone(),
            engine: self.engine,
            message,
        };
        if inputs.len() != self.inputs.len() {
            return Err(run_err(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        match &self.inner {
            Inner::Tract(model) => {
                let tensors: TVec<TValue> = inputs
                    .iter()
                    .map(|a| match a {
                        Input::F32(v) => Tensor::from(v.to_owned()).into(),
                        Input::I64(v) => Tensor::from(v.to_owned()).into(),
                    })
                    .collect();
                let out = model.run(tensors).map_err(|e| run_err(format!("{e:#}")))?;
                out.iter()
                    .map(|t| {
                        t.to_plain_array_view::<f32>()
                            .map(|v| v.to_owned())
                            .map_err(|e| run_err(format!("{e:#}")))
                    })
                    .collect()
            }
            Inner::Ort(session) => {
                let mut session = session
                    .lock()
                    .map_err(|_| run_err("session poisoned by an earlier panic".into()))?;
                let mut values: Vec<(String, ort::session::SessionInputValue<'_>)> =
                    Vec::with_capacity(inputs.len());
                for (name, a) in self.inputs.iter().zip(inputs) {
                    let value: ort::session::SessionInputValue<'_> = match a {
                        Input::F32(v) => ort::value::TensorRef::from_array_view(v.view())
                            .map_err(|e| run_err(e.to_string()))?
                            .into(),
                        Input::I64(v) => ort::value::TensorRef::from_array_view(v.view())
                            .map_err(|e| run_err(e.to_string()))?
                            .into(),
                    };
                    values.push((name.clone(), value));
                }
                let outputs = session.run(values).map_err(|e| run_err(e.to_string()))?;
                let mut result = Vec::with_capacity(outputs.len());
                for (_, v) in outputs.iter() {
                    let a = v
                        .try_extract_array::<f32>()
                        .map_err(|e| run_err(e.to_string()))?;
                    result.push(
                        ArrayD::from_shape_vec(IxDyn(a.shape()), a.iter().copied().collect())
                            .map_err(|e| run_err(e.to_string()))?,
                    );
                }
                Ok(result)
            }
        }
    }
}
