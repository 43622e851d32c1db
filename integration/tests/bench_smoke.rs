//! The `bench` and `sim` binaries complete tiny runs and write reports with every figure (CI
//! checks that it runs; the figures themselves are measured with the release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn a_tiny_bench_run_completes_with_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--supernodes",
            "2",
            "--leaves",
            "3",
            "--files-per-leaf",
            "20",
            "--searches",
            "3",
            "--file-mb",
            "2",
            "--json",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("download, 3 sources"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let report = &report["report"];
    for figure in [
        report["join"]["p50_ms"].as_f64(),
        report["search_one_hop_hit"]["latency"]["p50_ms"].as_f64(),
        report["download_one_source"]["mb_per_s"].as_f64(),
        report["bare_quinn_mb_per_s"].as_f64(),
        report["tcp_mb_per_s"].as_f64(),
        report["failover_s"].as_f64(),
    ] {
        assert!(figure.unwrap() > 0.0, "{report}");
    }
    // A one-hop hit needs the overlay; a miss is stopped by the keyword summaries.
    assert!(
        report["search_one_hop_hit"]["messages_per_query"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        report["search_miss"]["messages_per_query"]
            .as_f64()
            .unwrap(),
        0.0
    );
}

#[test]
fn a_tiny_sim_run_completes_and_compares_with_flooding() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sim.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args([
            "--supernodes",
            "10",
            "--leaves-per-supernode",
            "5",
            "--queries",
            "20",
            "--json",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("at equal success"), "{stdout}");
    assert!(stdout.contains("0 link mismatches"), "{stdout}");
    assert!(json.exists());
}
