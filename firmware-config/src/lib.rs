//! The device's typed configuration.
//!
//! Loading is staged in types: the TOML text is parsed with spans, checked against the
//! JSON Schema of [`ConfigFile`] (every structural problem at once, with file, line and
//! column), deserialised into [`ConfigFile`], then checked semantically (referenced files
//! exist, cross-field rules) and resolved into a [`DeviceConfig`] with absolute paths.
//!
//! Architecture invariant: this crate does no I/O beyond reading the config file and
//! checking that the files it names exist. It knows nothing about models, audio or the
//! catalog; other crates read the sections they own from [`DeviceConfig`].

mod schema;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use schema::*;

/// The committed copy of the JSON Schema; a test keeps it equal to [`json_schema`].
pub const COMMITTED_SCHEMA: &str = include_str!("../schema/aisle-config.schema.json");

/// One problem in a config file, printed as `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {} problem(s):\n{}", diagnostics.len(), render(diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("no data directory: set --data-dir, AISLE_DATA_DIR, paths.data_dir or HOME")]
    NoDataDir,
    #[error("{path}: {problem}")]
    Overrides { path: PathBuf, problem: String },
}

/// The sections a signed release may override (what staff tune for a fleet);
/// paths, the service, privacy and the models stay the device's own.
pub const RELEASE_SECTIONS: &[&str] = &["thresholds", "dialogue"];

/// `cfg` with a release's overrides (TOML text naming only [`RELEASE_SECTIONS`])
/// laid over it, checked as a whole config is.
pub fn with_overrides(
    cfg: &DeviceConfig,
    text: &str,
    name: &Path,
) -> Result<DeviceConfig, ConfigError> {
    let bad = |problem: String| ConfigError::Overrides {
        path: name.to_path_buf(),
        problem,
    };
    let over: toml::Table = text.parse().map_err(|e| bad(format!("not TOML: {e}")))?;
    let mut merged = toml::Table::try_from(&cfg.file).map_err(|e| bad(format!("{e}")))?;
    for (section, v) in over {
        if !RELEASE_SECTIONS.contains(&section.as_str()) {
            return Err(bad(format!(
                "a release may override only {}, not `{section}`",
                RELEASE_SECTIONS.join(" and ")
            )));
        }
        let toml::Value::Table(keys) = v else {
            return Err(bad(format!("`{section}` must be a table")));
        };
        let into = merged
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        if let toml::Value::Table(t) = into {
            t.extend(keys);
        }
    }
    let text = toml::to_string(&merged).map_err(|e| bad(format!("{e}")))?;
    let base = cfg
        .source
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let file = check_str(&text, name, base).map_err(|diagnostics| ConfigError::Invalid {
        path: name.to_path_buf(),
        diagnostics,
    })?;
    Ok(DeviceConfig {
        file,
        source: cfg.source.clone(),
        data_dir: cfg.data_dir.clone(),
        model_dir: cfg.model_dir.clone(),
    })
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A validated configuration with every path resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// The effective settings (defaults overlaid with the file).
    pub file: ConfigFile,
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub model_dir: PathBuf,
}

impl DeviceConfig {
    /// The effective configuration as TOML (what `aisle config show` prints).
    pub fn to_toml(&self) -> String {
        let mut file = self.file.clone();
        file.paths.data_dir = Some(self.data_dir.clone());
        file.paths.model_dir = Some(self.model_dir.clone());
        // Serialising plain data structs with string keys cannot fail.
        toml::to_string_pretty(&file).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Where the data directory is when nothing says otherwise.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("aisle"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/aisle"))
}

/// What the command line says, which wins over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
}

/// The JSON Schema of the config file.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ConfigFile);
    schema.as_value().clone()
}

/// The JSON Schema as pretty text with a trailing newline (the committed copy's format).
pub fn json_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    s.push('\n');
    s
}

/// Loads the config from `path` (or the embedded defaults when `None`).
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<DeviceConfig, ConfigError> {
    match path {
        Some(p) => {
            let text =
                read_bounded_text(p, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
            let base = p.parent().unwrap_or(Path::new("."));
            load_str(&text, p, base, overrides)
        }
        None => resolve(ConfigFile::default(), None, overrides),
    }
}

/// Loads config text; `name` is how diagnostics name it, relative paths in it are
/// resolved against `base_dir`.
pub fn load_str(
    text: &str,
    name: &Path,
    base_dir: &Path,
    overrides: &Overrides,
) -> Result<DeviceConfig, ConfigError> {
    let file = check_str(text, name, base_dir).map_err(|diagnostics| ConfigError::Invalid {
        path: name.to_path_buf(),
        diagnostics,
    })?;
    resolve(file, Some(name.to_path_buf()), overrides)
}

fn resolve(
    file: ConfigFile,
    source: Option<PathBuf>,
    overrides: &Overrides,
) -> Result<DeviceConfig, ConfigError> {
    let data_dir = overrides
        .data_dir
        .clone()
        .or_else(|| file.paths.data_dir.clone())
        .or_else(default_data_dir)
        .ok_or(ConfigError::NoDataDir)?;
    let data_dir = absolute(&data_dir);
    let model_dir = file
        .paths
        .model_dir
        .clone()
        .map(|m| absolute(&m))
        .unwrap_or_else(|| data_dir.join("models"));
    Ok(DeviceConfig {
        file,
        source,
        data_dir,
        model_dir,
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Checks config text, reporting every problem at once. Relative paths in the file are
/// resolved against `base_dir` (the file's folder) and returned absolute.
pub fn check_str(text: &str, file: &Path, base_dir: &Path) -> Result<ConfigFile, Vec<Diagnostic>> {
    // Line starts, once: locating each of many problems must not rescan the text.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let locate = |span: Option<std::ops::Range<usize>>, message: String| {
        let (line, column) = span
            .map(|s| line_col_indexed(text, &starts, s.start))
            .unwrap_or((1, 1));
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let parsed = toml_edit::Document::parse(text);
    let doc = match parsed {
        Ok(doc) => doc,
        Err(e) => {
            let message = e.message().trim().to_string();
            return Err(vec![locate(
                e.span(),
                format!("TOML syntax error: {message}"),
            )]);
        }
    };
    let schema = json_schema();
    let mut walker = validate::Walker::new(&schema);
    walker.check_root(doc.as_table());
    if !walker.problems.is_empty() {
        return Err(walker
            .problems
            .into_iter()
            .map(|p| locate(p.span, p.message))
            .collect());
    }
    let mut config: ConfigFile = match toml::from_str(text) {
        Ok(c) => c,
        Err(e) => return Err(vec![locate(e.span(), e.message().to_string())]),
    };
    make_paths_absolute(&mut config, base_dir);
    let problems = semantic_problems(&config);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|(path, message)| locate(validate::span_of(doc.as_table(), path), message))
            .collect());
    }
    Ok(config)
}

fn make_paths_absolute(c: &mut ConfigFile, base: &Path) {
    let fix = |p: &mut Option<PathBuf>| {
        if let Some(path) = p
            && path.is_relative()
        {
            *path = absolute(&base.join(&*path));
        }
    };
    fix(&mut c.paths.data_dir);
    fix(&mut c.paths.model_dir);
    fix(&mut c.paths.catalog);
    fix(&mut c.camera.path);
    fix(&mut c.audio.input.path);
    fix(&mut c.service.staff_token_file);
    fix(&mut c.sync.trust_root);
}

/// Rules that span fields or touch the file system: `(dotted path to blame, message)`.
fn semantic_problems(c: &ConfigFile) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let must_exist = |out: &mut Vec<(&'static str, String)>,
                      key: &'static str,
                      p: &Option<PathBuf>,
                      what: &str| {
        if let Some(p) = p {
            let ok = match what {
                "folder" => p.is_dir(),
                _ => p.is_file(),
            };
            if !ok {
                out.push((
                    key,
                    format!(
                        "`{key}` names a {what} that does not exist: {}",
                        p.display()
                    ),
                ));
            }
        }
    };
    must_exist(&mut out, "paths.catalog", &c.paths.catalog, "file");
    match c.camera.source {
        CameraSource::Image | CameraSource::Folder => {
            let what = if c.camera.source == CameraSource::Image {
                "file"
            } else {
                "folder"
            };
            if c.camera.path.is_none() {
                out.push((
                    "camera.source",
                    format!(
                        "`camera.source` is \"{}\" but `camera.path` is not set",
                        source_name(c.camera.source)
                    ),
                ));
            }
            must_exist(&mut out, "camera.path", &c.camera.path, what);
        }
        CameraSource::Device | CameraSource::None => {
            must_exist(&mut out, "camera.path", &c.camera.path, "file");
        }
    }
    if c.audio.input.source == AudioSource::Wav && c.audio.input.path.is_none() {
        out.push((
            "audio.input.source",
            "`audio.input.source` is \"wav\" but `audio.input.path` is not set".into(),
        ));
    }
    must_exist(&mut out, "audio.input.path", &c.audio.input.path, "file");
    match c.service.bind.parse::<SocketAddr>() {
        Err(_) => out.push(("service.bind", format!("`service.bind` must be IP:PORT, e.g. 127.0.0.1:8480, found \"{}\"", c.service.bind))),
        Ok(addr) if !addr.ip().is_loopback() && !c.service.allow_non_loopback => out.push((
            "service.bind",
            format!("`service.bind` {addr} is not a loopback address; set `service.allow_non_loopback = true` to expose the API to the network"),
        )),
        Ok(_) => {}
    }
    must_exist(
        &mut out,
        "service.staff_token_file",
        &c.service.staff_token_file,
        "file",
    );
    must_exist(&mut out, "sync.trust_root", &c.sync.trust_root, "file");
    let e = &c.sync.endpoint;
    if !e.is_empty() {
        if !(e.starts_with("s3://") || e.starts_with("file:///")) {
            out.push((
                "sync.endpoint",
                format!(
                    "`sync.endpoint` must be s3://bucket/prefix or file:///path, found \"{e}\""
                ),
            ));
        }
        if c.sync.trust_root.is_none() {
            out.push((
                "sync.trust_root",
                "`sync.endpoint` is set but `sync.trust_root` is not: a kiosk syncs only what a root it trusts has signed".into(),
            ));
        }
    }
    if let Some(url) = &c.sync.s3_endpoint
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        out.push((
            "sync.s3_endpoint",
            format!("`sync.s3_endpoint` must be an http:// or https:// URL, found \"{url}\""),
        ));
    }
    if let Some(url) = &c.service.staff_webhook
        && !url.starts_with("http://")
    {
        out.push((
            "service.staff_webhook",
            format!("`service.staff_webhook` must be an http:// URL, found \"{url}\""),
        ));
    }
    for (key, value) in [
        ("device.name", &c.device.name),
        ("models.asr", &c.models.asr),
        ("models.vad", &c.models.vad),
        ("models.llm", &c.models.llm),
        ("models.text_embedding", &c.models.text_embedding),
        ("models.image_embedding", &c.models.image_embedding),
        ("models.ocr_detection", &c.models.ocr_detection),
        ("models.ocr_recognition", &c.models.ocr_recognition),
        ("models.ocr_orientation", &c.models.ocr_orientation),
        ("models.object_detection", &c.models.object_detection),
        ("models.clip_tokenizer", &c.models.clip_tokenizer),
        ("models.tts", &c.models.tts),
        ("audio.output.device", &c.audio.output.device),
        (
            "inference.onnxruntime_library",
            &c.inference.onnxruntime_library,
        ),
    ] {
        if value.trim().is_empty() {
            out.push((key, format!("`{key}` must not be empty")));
        }
    }
    if c.device.currency.len() != 3 || !c.device.currency.chars().all(|ch| ch.is_ascii_uppercase())
    {
        out.push(("device.currency", format!("`device.currency` must be a three-letter ISO 4217 code such as \"USD\", found \"{}\"", c.device.currency)));
    }
    out
}

fn source_name(s: CameraSource) -> &'static str {
    match s {
        CameraSource::Device => "device",
        CameraSource::Image => "image",
        CameraSource::Folder => "folder",
        CameraSource::None => "none",
    }
}

/// 1-based line and character column of a byte offset.
/// [`line_col`] with the line starts computed once (`starts[0] == 0`).
fn line_col_indexed(text: &str, starts: &[usize], offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let line = starts.partition_point(|&s| s <= offset).max(1);
    let line_start = starts[line - 1];
    let column = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

#[cfg(test)]
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Reads a whole file, refusing what is not a regular file (a FIFO with no writer
/// would block for ever, `/dev/zero` never ends) and stopping at `limit` bytes
/// (`FileTooLarge` past it), whatever the file's metadata claims. Every reader of a
/// file named from outside the program goes through this.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let (f, len) = open_regular(path)?;
    let mut out = Vec::with_capacity(len.min(limit) as usize);
    f.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// Opens a regular file for reading (a directory, device, FIFO or socket is
/// refused before it is opened, so a FIFO with no writer cannot block); returns it
/// with its length. For readers that stream: stop at a limit with [`too_large`].
pub fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    // `metadata` follows links but does not open: a FIFO is not opened (which blocks).
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a device, FIFO or socket)"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{kind}: only regular files are read"),
        ));
    }
    Ok((std::fs::File::open(path)?, meta.len()))
}

/// The error of a file past `limit` bytes.
pub fn too_large(limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::FileTooLarge,
        format!("larger than {} MiB, the limit for this file", limit >> 20),
    )
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The largest config file read (a config is a few KB).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn diags(text: &str) -> Vec<String> {
        match check_str(text, Path::new("t.toml"), Path::new("/nonexistent-base")) {
            Ok(_) => vec![],
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn input_that_crashes_the_toml_parser_is_a_syntax_error() {
        // Found by `cargo fuzz run config_check`: toml_edit 0.23.10 panicked on it
        // ("all items have spans"); 0.25 reports it.
        let d = diags("==\n.!=\n!");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("TOML syntax error"), "{d:?}");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncdé f", 0), (1, 1));
        assert_eq!(line_col("ab\ncdé f", 3), (2, 1));
        assert_eq!(line_col("ab\ncdé f", 8), (2, 5));
        let text = "ab\ncdé f\n\nx";
        let starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        for offset in 0..=text.len() {
            if text.is_char_boundary(offset) {
                assert_eq!(
                    line_col_indexed(text, &starts, offset),
                    line_col(text, offset),
                    "{offset}"
                );
            }
        }
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = check_str("", Path::new("t.toml"), Path::new("/")).expect("valid");
        assert_eq!(c, ConfigFile::default());
    }

    #[test]
    fn syntax_error_is_located() {
        assert_eq!(
            diags("[device\nname = 1"),
            vec!["t.toml:1:8: TOML syntax error: unclosed table, expected `]`"]
        );
    }

    #[test]
    fn bounded_reads_stop_at_the_limit_and_refuse_special_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("f");
        std::fs::write(&f, vec![b'x'; 100]).expect("write");
        assert_eq!(read_bounded(&f, 100).expect("at the limit").len(), 100);
        let e = read_bounded(&f, 99).expect_err("over");
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        for special in [Path::new("/dev/zero"), dir.path()] {
            let e = read_bounded(special, 1 << 20).expect_err("special");
            assert!(e.to_string().contains("only regular files"), "{e}");
        }
    }
}
