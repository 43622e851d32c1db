//! `superpeer testnet`: the whole demo runs to its summary and cleans up after itself.

use std::time::Duration;

use crate::support::BIN;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testnet_runs_to_its_summary_and_leaves_nothing_behind() {
    let run = tokio::process::Command::new(BIN)
        .args(["testnet", "--supernodes", "2", "--leaves", "4"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(150), run)
        .await
        .expect("testnet timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "testnet failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "mesh formed",
        "chose sn-",
        "promoted itself to supernode",
        "every leaf is placed",
        "hit: ",
        "verified: BLAKE3",
        "with SIGKILL",
        "failed over to",
        "summary",
        "download verified",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    // Its state folder is gone, and with it every daemon (they were stopped first).
    let root = stdout
        .lines()
        .find_map(|l| l.split("state and logs in ").nth(1))
        .expect("the state folder line");
    assert!(
        !std::path::Path::new(root.trim()).exists(),
        "{root} left behind"
    );
}
