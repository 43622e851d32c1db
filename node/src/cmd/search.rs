//! `superpeer search`: asks the running daemon to search and prints results as they arrive.

use crate::cli::SearchArgs;
use crate::control::{ControlClient, SearchRequest};
use crate::runtime;

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let client = ControlClient::from_state_dir(&runtime::state_dir(args.state_dir, None)?)?;
    let request = SearchRequest {
        keywords: args.keywords,
        want: args.want,
    };
    let mut count = 0usize;
    client.search(&request, |result| {
        count += 1;
        if args.json {
            if let Ok(line) = serde_json::to_string(&result) {
                println!("{line}");
            }
        } else {
            let firewalled = result.holders.iter().filter(|h| h.firewalled).count();
            println!(
                "{:<48}  {:>12}  {}  {} source{}{}",
                result.name,
                human_size(result.size),
                result.content_id,
                result.sources,
                if result.sources == 1 { "" } else { "s" },
                if firewalled > 0 {
                    format!(" ({firewalled} firewalled)")
                } else {
                    String::new()
                }
            );
        }
    })?;
    if !args.json && count == 0 {
        println!("no results");
    }
    Ok(())
}

/// `1536` → `1.5 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("B")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
