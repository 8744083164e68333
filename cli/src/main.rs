//! The `aisle` binary: the edge where raw arguments become a validated configuration,
//! library errors become messages and exit codes, and progress is drawn.

/// `println!` that returns an error instead of panicking when stdout is closed
/// (`aisle models list | head`).
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        writeln!(std::io::stdout())?
    }};
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), "{}", crate::printable(&format!($($t)*)))?
    }};
}

/// `print!` counterpart of [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), "{}", crate::printable(&format!($($t)*)))?
    }};
}

/// Text for the terminal: control characters (from product names, file names,
/// transcripts) are shown as U+FFFD instead of moving the cursor or changing colours.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect::<String>()
        .into()
}

mod ar_cmd;
mod cli;
mod demo;
mod models_cmd;
mod progress;
mod release_cmd;
mod say_cmd;
mod serve_cmd;
mod speech_cmd;
mod store_cmd;
mod vision_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: library errors often carry their
/// cause's text in their own message as well as in `source()`.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    // Names and text from outside the program may hold control characters.
    printable(&text).into_owned()
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AISLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: logs captured to a file or journal stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

/// The reader of our output went away (`| head`): not our failure, stop quietly.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(
            super::printable("Oat Milk\n\tAisle 3"),
            "Oat Milk\n\tAisle 3"
        );
        assert_eq!(
            super::printable("\u{1b}[2JRed\u{7}\r"),
            "\u{fffd}[2JRed\u{fffd}\u{fffd}"
        );
    }
}
