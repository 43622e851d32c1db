//! `superpeer get`: asks the running daemon to download a content id and shows its progress:
//! a bar with rate and ETA on a terminal, a plain line every few seconds otherwise, or one
//! JSON event per line with `--json`. Exits 0 only when the file is complete and verified.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::search::human_size;
use crate::cli::GetArgs;
use crate::control::{ControlClient, GetEventJson, GetRequest};
use crate::runtime;

/// How often plain (not terminal) output prints a progress line.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub fn run(args: GetArgs) -> anyhow::Result<()> {
    let client = ControlClient::from_state_dir(&runtime::state_dir(args.state_dir, None)?)?;
    // The daemon has its own working directory: send it an absolute path.
    let out = match args.out {
        Some(out) if out.is_relative() => Some(
            std::env::current_dir()
                .context("cannot resolve --out")?
                .join(out),
        ),
        other => other,
    };
    let request = GetRequest {
        content_id: args.content_id,
        out,
    };
    let mut view = if args.json {
        View::Json
    } else if std::io::stderr().is_terminal() {
        View::Bar(None)
    } else {
        View::Plain(None)
    };
    let mut outcome: Option<Result<String, String>> = None;
    client.get(&request, |event| {
        view.show(&event);
        match event {
            GetEventJson::Finished { path, .. } => outcome = Some(Ok(path)),
            GetEventJson::Failed { error } => outcome = Some(Err(error)),
            _ => {}
        }
    })?;
    view.done();
    match outcome {
        Some(Ok(path)) => {
            if !args.json {
                println!("{path}");
            }
            Ok(())
        }
        Some(Err(error)) => bail!("download failed: {error}"),
        None => bail!("the daemon ended the download without a result; see `superpeer status`"),
    }
}

/// How progress is shown.
enum View {
    Json,
    Bar(Option<ProgressBar>),
    /// When the last line was printed.
    Plain(Option<Instant>),
}

impl View {
    fn show(&mut self, event: &GetEventJson) {
        match self {
            View::Json => {
                if let Ok(line) = serde_json::to_string(event) {
                    println!("{line}");
                }
            }
            View::Bar(bar) => show_bar(bar, event),
            View::Plain(last) => show_plain(last, event),
        }
    }

    fn done(&mut self) {
        if let View::Bar(Some(bar)) = self {
            bar.finish_and_clear();
        }
    }
}

fn show_bar(bar: &mut Option<ProgressBar>, event: &GetEventJson) {
    match event {
        GetEventJson::Searching { .. } => eprintln!("searching the network for holders..."),
        GetEventJson::Started {
            name,
            size,
            done_bytes,
            holders,
            ..
        } => {
            let new = ProgressBar::new(*size);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            new.set_style(style);
            new.set_message(format!("{name} ({holders} holders)"));
            new.set_position(*done_bytes);
            *bar = Some(new);
        }
        GetEventJson::Progress {
            bytes_done,
            sources,
            ..
        } => {
            if let Some(bar) = bar {
                bar.set_position(*bytes_done);
                let name = bar.message();
                let name = name.split(" (").next().unwrap_or_default().to_string();
                bar.set_message(format!("{name} ({sources} sources)"));
            }
        }
        GetEventJson::HolderDropped { node_id, reason } => {
            let line = dropped_line(node_id.as_deref(), reason);
            match bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
        GetEventJson::Finished { .. } | GetEventJson::Failed { .. } => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
        }
    }
}

fn show_plain(last: &mut Option<Instant>, event: &GetEventJson) {
    match event {
        GetEventJson::Searching { .. } => eprintln!("searching the network for holders..."),
        GetEventJson::Started {
            name,
            size,
            done_bytes,
            holders,
            ..
        } => {
            eprintln!(
                "downloading {name} ({}) from {holders} holders{}",
                human_size(*size),
                if *done_bytes > 0 {
                    format!(", resuming at {}", human_size(*done_bytes))
                } else {
                    String::new()
                }
            );
            *last = Some(Instant::now());
        }
        GetEventJson::Progress {
            bytes_done,
            size,
            rate,
            sources,
        } => {
            if last.is_some_and(|t| t.elapsed() < PLAIN_EVERY) {
                return;
            }
            *last = Some(Instant::now());
            let eta = if *rate > 0.0 {
                format!("{:.0} s", size.saturating_sub(*bytes_done) as f64 / rate)
            } else {
                "?".into()
            };
            eprintln!(
                "{} of {} ({:.0}%), {}/s from {sources} sources, ETA {eta}",
                human_size(*bytes_done),
                human_size(*size),
                percent(*bytes_done, *size),
                human_size(*rate as u64),
            );
        }
        GetEventJson::HolderDropped { node_id, reason } => {
            eprintln!("{}", dropped_line(node_id.as_deref(), reason));
        }
        GetEventJson::Finished {
            size,
            seconds,
            sources,
            resumed_bytes,
            ..
        } => {
            eprintln!(
                "complete and verified: {} in {seconds:.1} s from {} sources{}",
                human_size(*size),
                sources.len(),
                if *resumed_bytes > 0 {
                    format!(" ({} resumed)", human_size(*resumed_bytes))
                } else {
                    String::new()
                }
            );
            for source in sources {
                let id = source.node_id.get(..12).unwrap_or(&source.node_id);
                let how = source.reached.as_deref().unwrap_or("direct");
                eprintln!("  {id}  {:>10}  {how}", human_size(source.bytes));
            }
        }
        GetEventJson::Failed { .. } => {}
    }
}

fn dropped_line(node_id: Option<&str>, reason: &str) -> String {
    let who = node_id.map_or("a holder".to_string(), |id| {
        format!("holder {}", id.get(..12).unwrap_or(id))
    });
    format!("{who} dropped: {reason}")
}

fn percent(done: u64, size: u64) -> f64 {
    if size == 0 {
        100.0
    } else {
        done as f64 * 100.0 / size as f64
    }
}
