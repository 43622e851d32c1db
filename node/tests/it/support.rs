//! Helpers: `superpeer` daemons as child processes (killed when dropped), CLI runs, and
//! in-process supernodes that register with a list server over real QUIC.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use superpeer_bootstrap_list::{RegistrationStatus, keep_registered};
use superpeer_common::wire::{Intent, Load, Role};
use superpeer_common::{
    Endpoint, Identity, NodeId, PeerAddr, TransportLimits, accept, answer_probe,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_superpeer");

/// A running `superpeer` daemon. SIGKILLed and reaped when dropped, so no test leaves a
/// process behind, even when it fails.
pub struct Daemon {
    child: Child,
    /// Lines the daemon printed on stdout, in order.
    lines: mpsc::Receiver<String>,
    /// Its `NODEID@HOST:PORT`.
    pub pinned: PeerAddr,
}

impl Daemon {
    /// Starts `superpeer ARGS` and waits (bounded) for its `pinned address:` line.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_racing(args, || {})
    }

    /// Like `start`, but runs `meanwhile` the moment the process is spawned, racing its
    /// start-up, before waiting for its address. The process is killed if `meanwhile`
    /// panics.
    pub fn start_racing(args: &[&str], meanwhile: impl FnOnce()) -> Daemon {
        let mut child = Command::new(BIN)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start superpeer");
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(meanwhile)) {
            let _ = child.kill();
            let _ = child.wait();
            std::panic::resume_unwind(panic);
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(pinned) = line.strip_prefix("pinned address: ") {
                        let pinned = pinned.parse().expect("pinned address line");
                        return Daemon {
                            child,
                            lines,
                            pinned,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("superpeer {args:?} did not print its address within 20 s");
                }
            }
        }
    }

    /// A list server on `ip` (a free port) with its state in `state_dir`.
    pub fn list_server(ip: &str, state_dir: &Path, extra: &[&str]) -> Daemon {
        let listen = format!("{ip}:0");
        let mut args = vec![
            "list-server",
            "--listen",
            &listen,
            "--state-dir",
            state_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Daemon::start(&args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[allow(dead_code)]
    pub fn printed(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of a CLI run.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `superpeer ARGS` to completion (bounded by a timeout).
pub async fn cli(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(BIN)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("cli timed out")
        .unwrap();
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One line of `superpeer supernodes --json`.
#[derive(Debug, serde::Deserialize)]
pub struct Listed {
    pub node_id: NodeId,
    pub addr: SocketAddr,
    pub leaves: u32,
    pub capacity: u32,
    pub stale: bool,
}

/// `superpeer supernodes --list-server SERVER --json`, parsed.
pub async fn supernodes(server: &PeerAddr) -> Vec<Listed> {
    let out = cli(&["supernodes", "--list-server", &server.to_string(), "--json"]).await;
    assert!(out.ok, "supernodes failed: {}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Polls `check` every 500 ms (each poll may be a CLI run and a query: stay under the
/// per-leaf query rate) until it returns `Some`, or panics after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A supernode as far as the list server can tell: it answers dial-back probes at its
/// address and keeps itself registered. Runs in this process, on real QUIC.
pub struct TestSupernode {
    pub endpoint: Endpoint,
    pub status: watch::Receiver<RegistrationStatus>,
    pub load: watch::Sender<Load>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestSupernode {
    /// Binds `ip:0`, answers probes there, and registers that address with `list_server`.
    pub fn start(ip: &str, list_server: &PeerAddr, load: Load) -> TestSupernode {
        let endpoint = bind(ip);
        let advertise = endpoint.local_addr().unwrap();
        Self::start_advertising(endpoint, advertise, list_server, load)
    }

    /// Like `start`, but registers `advertise`, which may be somebody else's address.
    pub fn start_advertising(
        endpoint: Endpoint,
        advertise: SocketAddr,
        list_server: &PeerAddr,
        load: Load,
    ) -> TestSupernode {
        let (load_tx, load_rx) = watch::channel(load);
        let (status_tx, status) = watch::channel(RegistrationStatus::Connecting);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let answering = tokio::spawn(answer_probes(endpoint.clone(), load_rx.clone()));
        let registering = tokio::spawn(keep_registered(
            endpoint.clone(),
            *list_server,
            advertise,
            load_rx,
            status_tx,
            shutdown_rx,
        ));
        TestSupernode {
            endpoint,
            status,
            load: load_tx,
            shutdown,
            tasks: vec![answering, registering],
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.endpoint.node_id()
    }

    /// Waits until the list server reports `listed`.
    pub async fn wait_listed(&mut self) {
        let waited = tokio::time::timeout(
            Duration::from_secs(15),
            self.status
                .wait_for(|s| *s == RegistrationStatus::Registered { listed: true }),
        )
        .await
        .map(|r| r.map(|_| ()));
        assert!(
            matches!(waited, Ok(Ok(()))),
            "supernode {} never got listed: {:?}",
            self.node_id().short(),
            *self.status.borrow()
        );
    }

    /// Stops dead: no unregister, no more answers (like a crash).
    pub fn crash(self) {
        for task in &self.tasks {
            task.abort();
        }
        drop(self);
    }

    /// Stops registering without unregistering, but keeps the endpoint.
    pub fn stop_heartbeats(&self) {
        self.tasks[1].abort();
    }

    /// Unregisters cleanly.
    #[allow(dead_code)]
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

pub fn bind(ip: &str) -> Endpoint {
    let identity = Arc::new(Identity::generate().unwrap());
    Endpoint::bind(
        identity,
        format!("{ip}:0").parse().unwrap(),
        TransportLimits::default(),
    )
    .unwrap()
}

async fn answer_probes(endpoint: Endpoint, load: watch::Receiver<Load>) {
    while let Some(incoming) = endpoint.incoming().await {
        let load = load.clone();
        tokio::spawn(async move {
            let Ok(conn) = accept(incoming, Duration::from_secs(5)).await else {
                return;
            };
            let Ok((mut session, hello)) = conn.accept_session().await else {
                return;
            };
            if hello.intent == Intent::Probe {
                let _ = answer_probe(&mut session, Role::Supernode, || Some(*load.borrow())).await;
            }
        });
    }
}
