//! The web UI end to end, in a real browser: Debian's `chromium`, headless, driven by
//! Playwright (`integration/ui-tests/ui.test.js`, `playwright-core` from npm).
//!
//! This test starts a small real network on 127.0.59.x: a list server, a supernode, a leaf
//! sharing an honest file, a hostile leaf sharing a file whose name is an HTML payload
//! (`<img src=x onerror=alert(1)>.mp3`), and the leaf the browser drives. It gets login URLs
//! with `superpeer ui`, runs the script with `node`, and asserts its exit status: the
//! script logs in, searches, sees the hostile name as text with no dialog or script error,
//! downloads with one click until the file is complete and verified (its path shown), sees
//! the supernode on the network page, and is refused without the session and from another
//! origin. Then the file the page named must hold the honest bytes.
//!
//! Screenshots of each page go to `target/ui-screenshots/`; with `SP_UI_UPDATE_DOCS=1`
//! they are also copied to `docs/ui/` (the README shows those).
//!
//! Needs `node` and `chromium` (`apt-get install -y nodejs npm chromium`) and
//! `npm ci` in `integration/ui-tests/`; the test fails saying so when they are missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use superpeer_common::ContentId;
use superpeer_integration::harness::{Cluster, Proc, attached, wait_for};

const EXE: &str = env!("CARGO_BIN_EXE_superpeer-node");
const SUBNET: u8 = 59;
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>.mp3";
const HONEST_NAME: &str = "sunrise anthem.mp3";
/// A word in both names.
const WORDS: &str = "mp3";
/// Big enough for several pieces from the holder.
const HONEST_SIZE: usize = 6 * 1024 * 1024 + 12_345;
/// How long the browser script may take in all.
const SCRIPT_LIMIT: Duration = Duration::from_secs(240);

fn ui_tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui-tests")
}

fn chromium() -> PathBuf {
    std::env::var_os("SP_UI_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Fails with what to install when the browser test cannot run here.
fn require_tools() {
    let install = "the web UI test needs node and Debian's chromium: \
                   `apt-get install -y nodejs npm chromium`, then `npm ci` in integration/ui-tests";
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        node.is_ok_and(|s| s.success()),
        "`node` is not installed: {install}"
    );
    assert!(
        chromium().exists(),
        "{} is missing: {install}",
        chromium().display()
    );
    assert!(
        ui_tests_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is not installed in integration/ui-tests: run `npm ci` there ({install})"
    );
}

/// Bytes that are not all the same, so a wrong piece cannot pass for a right one.
fn honest_bytes() -> Vec<u8> {
    (0..HONEST_SIZE)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `superpeer ui --state-dir DIR` (with no desktop to open); the login URL it prints.
fn login_url(proc: &Proc) -> String {
    let out = Command::new(EXE)
        .args(["ui", "--state-dir"])
        .arg(&proc.state_dir)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "superpeer ui failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = stdout.lines().next().unwrap_or_default().trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/login?code="),
        "{stdout}"
    );
    url
}

/// Where screenshots go: `target/ui-screenshots` (next to `target/tmp`).
fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots")
}

#[test]
fn the_web_ui_in_a_real_browser() {
    require_tools();
    let mut cluster = Cluster::new(EXE, SUBNET).unwrap();
    let list = cluster
        .list_server("list", &["--heartbeat-ms", "500"])
        .unwrap();
    let supernode = cluster.supernode("sn", &list, &[]).unwrap();
    let sn_addr = supernode.pinned.to_string();
    let peer = ["--peer", sn_addr.as_str(), "--no-election"];

    let honest = honest_bytes();
    let honest_id = ContentId::of_bytes(&honest).to_string();
    let sharer_dir = cluster.folder("sharer/share").unwrap();
    std::fs::write(sharer_dir.join(HONEST_NAME), &honest).unwrap();
    std::fs::write(sharer_dir.join("liner notes.txt"), b"recorded at dawn\n").unwrap();
    let hostile_dir = cluster.folder("hostile/share").unwrap();
    let payload = b"not music at all";
    std::fs::write(hostile_dir.join(HOSTILE_NAME), payload).unwrap();
    let hostile_id = ContentId::of_bytes(payload).to_string();
    let browser_dir = cluster.folder("browser/share").unwrap();
    std::fs::write(
        browser_dir.join("holiday photos.txt"),
        b"a list of photos\n",
    )
    .unwrap();
    std::fs::write(browser_dir.join("recipes.txt"), b"bread, soup\n").unwrap();
    let downloads = cluster.folder("browser/downloads").unwrap();

    let share = |dir: &Path| dir.to_str().unwrap().to_string();
    let sharer = cluster
        .leaf(
            "sharer",
            &[&peer[..], &["--share", &share(&sharer_dir)]].concat(),
        )
        .unwrap();
    let hostile = cluster
        .leaf(
            "hostile",
            &[&peer[..], &["--share", &share(&hostile_dir)]].concat(),
        )
        .unwrap();
    let browser = cluster
        .leaf(
            "browser",
            &[
                &peer[..],
                &["--share", &share(&browser_dir)],
                &["--downloads", &share(&downloads)],
            ]
            .concat(),
        )
        .unwrap();
    for leaf in [&sharer, &hostile, &browser] {
        attached(leaf, Duration::from_secs(30)).unwrap();
    }
    // 2 + 1 + 2 files, every one indexed before the browser searches.
    wait_for("every share indexed", Duration::from_secs(30), || {
        Ok((supernode.status()?.indexed == Some(5)).then_some(()))
    })
    .unwrap();

    let shots = screenshots_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg("ui.test.js")
        .current_dir(ui_tests_dir())
        .env("SP_UI_URL", login_url(&browser))
        .env("SP_UI_SUPERNODE_URL", login_url(&supernode))
        .env("SP_UI_SEARCH", WORDS)
        .env("SP_UI_HOSTILE_ID", &hostile_id)
        .env("SP_UI_HOSTILE_NAME", HOSTILE_NAME)
        .env("SP_UI_DOWNLOAD_ID", &honest_id)
        .env("SP_UI_DOWNLOAD_NAME", HONEST_NAME)
        .env(
            "SP_UI_SUPERNODE_ID",
            supernode.pinned.node_id.unwrap().to_string(),
        )
        .env("SP_UI_SCREENSHOTS", &shots)
        .env("SP_UI_CHROMIUM", chromium())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a browser that hangs is killed and the test fails.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser script failed ({status:?}, after {:?}):\n{stdout}\n{stderr}",
        started.elapsed()
    );

    // The file the page showed holds the honest bytes, under the name from the result.
    let shown = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DOWNLOADED_PATH="))
        .expect("the script printed the downloaded path");
    let shown = PathBuf::from(shown.trim());
    let folder = shown.parent().unwrap().canonicalize().unwrap();
    assert_eq!(folder, downloads.canonicalize().unwrap());
    assert_eq!(
        std::fs::read(&shown).unwrap(),
        honest,
        "{}",
        shown.display()
    );
    // Nothing another origin sent promoted the node.
    assert_eq!(browser.status().unwrap().role, "leaf");

    for page in [
        "search",
        "downloads",
        "sharing",
        "network",
        "network-supernode",
    ] {
        let file = shots.join(format!("{page}.png"));
        assert!(file.exists(), "no screenshot {}", file.display());
    }
    if std::env::var_os("SP_UI_UPDATE_DOCS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ui");
        std::fs::create_dir_all(&docs).unwrap();
        for entry in std::fs::read_dir(&shots).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, docs.join(path.file_name().unwrap())).unwrap();
        }
    }
}
