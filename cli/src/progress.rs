//! Progress bars for long work (model fetch, verification), drawn on stderr only when
//! it is a terminal.

use aisle_models::{FetchEvent, FetchObserver};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct FetchProgress {
    bar: ProgressBar,
    /// No bar (not a terminal): log milestones as plain lines instead.
    plain: bool,
}

impl FetchProgress {
    pub fn new(hidden: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if hidden {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        let style = ProgressStyle::with_template(
            "{spinner} {msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Self { bar, plain: hidden }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn restart(&self, msg: String, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.set_message(msg);
    }
}

impl FetchObserver for FetchProgress {
    fn event(&self, event: FetchEvent<'_>) {
        if self.plain {
            match event {
                FetchEvent::Downloading { package } => eprintln!("downloading {package}"),
                FetchEvent::Importing { model, importer } => {
                    eprintln!("importing {model} ({importer})")
                }
                FetchEvent::Installed { model, bytes } => {
                    eprintln!("installed {model} ({})", indicatif::HumanBytes(bytes))
                }
                _ => {}
            }
            return;
        }
        match event {
            FetchEvent::Checking { model, bytes } => {
                self.restart(format!("checking {model}"), bytes)
            }
            FetchEvent::UpToDate { model } => tracing::info!(model, "up to date"),
            FetchEvent::Downloading { package } => {
                self.restart(format!("downloading {package}"), 0);
                self.bar
                    .enable_steady_tick(std::time::Duration::from_millis(120));
            }
            FetchEvent::Storing { model, file, bytes } => {
                self.bar.disable_steady_tick();
                self.restart(format!("storing {model}/{file}"), bytes);
            }
            FetchEvent::Importing { model, importer } => {
                self.restart(format!("importing {model} ({importer})"), 0);
                self.bar
                    .enable_steady_tick(std::time::Duration::from_millis(120));
            }
            FetchEvent::Installed { model, bytes } => {
                self.bar.disable_steady_tick();
                self.bar.println(format!(
                    "installed {model} ({})",
                    indicatif::HumanBytes(bytes)
                ));
            }
        }
    }

    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }
}
