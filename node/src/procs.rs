//! Daemons as child processes: `superpeer` processes, each with its own state dir and log,
//! killed when dropped so that nothing outlives the testnet or the test that started them.
//! Used by `superpeer testnet` and by the multi-process test harness (`integration/`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use superpeer_common::PeerAddr;

use crate::control::{ControlClient, StatusJson};

/// How long a daemon may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One running daemon.
pub struct Proc {
    /// A name for people: `sn-2`, `leaf-5`.
    pub label: String,
    /// Its `NODEID@HOST:PORT` (the advertised address).
    pub pinned: PeerAddr,
    /// The address it listens on.
    pub listening: Option<SocketAddr>,
    pub state_dir: PathBuf,
    exe: PathBuf,
    args: Vec<String>,
    child: Child,
}

impl Proc {
    /// Starts `EXE ARGS --state-dir DIR` (stderr appended to `DIR/log.txt`) and waits for
    /// its `pinned address:` line. `EXE` is a `superpeer` binary.
    pub fn start(
        exe: &Path,
        label: &str,
        state_dir: &Path,
        args: &[String],
    ) -> anyhow::Result<Proc> {
        Self::start_wrapped(&[], exe, label, state_dir, args)
    }

    /// [`Proc::start`], run through `wrapper` (a command and its arguments that execs the
    /// rest, such as `ip netns exec NS`: the process is still the daemon itself).
    pub fn start_wrapped(
        wrapper: &[String],
        exe: &Path,
        label: &str,
        state_dir: &Path,
        args: &[String],
    ) -> anyhow::Result<Proc> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let (program, mut full) = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut full = rest.to_vec();
                full.push(exe.display().to_string());
                (PathBuf::from(program), full)
            }
            None => (exe.to_path_buf(), Vec::new()),
        };
        full.extend(args.iter().cloned());
        let (child, pinned, listening) = spawn(&program, label, state_dir, &full)?;
        Ok(Proc {
            label: label.to_string(),
            pinned,
            listening,
            state_dir: state_dir.to_path_buf(),
            exe: program,
            args: full,
            child,
        })
    }

    /// Starts it again with the same arguments and state dir, on the same address (the
    /// port it got the first time, when it asked for port 0), killing it first if it runs;
    /// waits for its address. Others that knew it reach it where they knew it.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let mut args = self.args.clone();
        if let Some(listening) = self.listening {
            let listen = args.iter().position(|a| a == "--listen");
            if let Some(value) = listen.and_then(|i| args.get_mut(i + 1)) {
                *value = listening.to_string();
            }
        }
        let (child, pinned, listening) = spawn(&self.exe, &self.label, &self.state_dir, &args)?;
        self.child = child;
        self.pinned = pinned;
        self.listening = listening.or(self.listening);
        Ok(())
    }

    /// The daemon's status through its control API.
    pub fn status(&self) -> anyhow::Result<StatusJson> {
        ControlClient::from_state_dir(&self.state_dir)?.status()
    }

    /// A control client for it.
    pub fn control(&self) -> anyhow::Result<ControlClient> {
        ControlClient::from_state_dir(&self.state_dir)
    }

    /// SIGKILL: gone without a word, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks it to stop (SIGTERM): it leaves the network cleanly. See [`stop_all`].
    pub fn terminate(&mut self) {
        if self.running() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts the process and reads its addresses from its output: the pinned (advertised)
/// one, and the one it listens on if it says.
fn spawn(
    exe: &Path,
    label: &str,
    state_dir: &Path,
    args: &[String],
) -> anyhow::Result<(Child, PeerAddr, Option<SocketAddr>)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("log.txt"))
        .with_context(|| format!("cannot open a log in {}", state_dir.display()))?;
    let mut child = Command::new(exe)
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env(
            "RUST_LOG",
            std::env::var("SUPERPEER_CHILD_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {label}"))?;
    let Some(stdout) = child.stdout.take() else {
        bail!("no output from {label}");
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut listening = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on: ") {
                listening = addr.parse().ok();
            }
            if let Some(pinned) = line.strip_prefix("pinned address: ") {
                let _ = tx.send((pinned.to_string(), listening));
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok((line, listening)) => {
            let pinned = line.parse().context("a daemon printed a bad address")?;
            Ok((child, pinned, listening))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{label} did not start (its log: {})",
                state_dir.join("log.txt").display()
            );
        }
    }
}

/// Stops every daemon of `procs` at once: SIGTERM, then SIGKILL for any still running
/// after 5 s.
pub fn stop_all<'a>(procs: impl Iterator<Item = &'a mut Proc>) {
    let mut procs: Vec<&mut Proc> = procs.collect();
    for proc in procs.iter_mut() {
        proc.terminate();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && procs.iter_mut().any(|p| p.running()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for proc in procs {
        proc.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.kill();
        }
    }
}
