//! `superpeer ui`: a one-time login URL for the running daemon's web UI.
//!
//! The daemon makes the code (through the token-authenticated control API) and the
//! browser trades it for a session cookie, so the control token never reaches the browser
//! or its history. Where there is a desktop the URL is also opened; that failing is no
//! error, since the URL is printed either way.

use std::process::{Command, Stdio};

use crate::cli::UiArgs;
use crate::control::ControlClient;
use crate::runtime;

pub fn run(args: UiArgs) -> anyhow::Result<()> {
    let client = ControlClient::from_state_dir(&runtime::state_dir(args.state_dir, None)?)?;
    let code = client.ui_code()?;
    println!("{}", code.url);
    eprintln!(
        "open this URL in a browser on this machine within {} s (it works once)",
        code.expires_in_secs
    );
    if has_desktop() {
        // Not waited for: the browser may run for hours.
        let opened = Command::new("xdg-open")
            .arg(&code.url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = opened {
            tracing::debug!(error = %e, "cannot run xdg-open");
        }
    }
    Ok(())
}

fn has_desktop() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}
