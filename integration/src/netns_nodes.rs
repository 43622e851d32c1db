//! Real `superpeer` daemons inside a [`Lab`](crate::netns::Lab)'s namespaces: started
//! through `ip netns exec`, and driven with the CLI run in the same namespace (a daemon's
//! control address is on its own namespace's loopback). Used by the NAT tests and
//! `nat-bench`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use superpeer::control::{GetEventJson, SearchResultJson, StatusJson};
use superpeer_common::ContentId;

use crate::harness::Proc;
use crate::netns::Host;

/// A daemon in a namespace.
pub struct Node {
    pub proc: Proc,
    pub ns: String,
    pub share: PathBuf,
    exe: PathBuf,
}

impl Node {
    /// Starts `EXE ARGS` in `host`'s namespace, its state and share folders under `root`.
    pub fn start(
        exe: &Path,
        host: &Host,
        root: &Path,
        label: &str,
        args: &[&str],
    ) -> anyhow::Result<Node> {
        let state = root.join(label).join("state");
        let share = root.join(label).join("share");
        std::fs::create_dir_all(&share)?;
        let wrapper = ["ip", "netns", "exec", host.ns()].map(String::from);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let proc = Proc::start_wrapped(&wrapper, exe, label, &state, &args)
            .with_context(|| format!("{label} did not start"))?;
        Ok(Node {
            proc,
            exe: exe.to_path_buf(),
            ns: host.ns().to_string(),
            share,
        })
    }

    /// `superpeer ARGS --state-dir DIR` inside the node's namespace (its control address
    /// is on that namespace's loopback).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns])
            .arg(&self.exe)
            .args(args);
        command.arg("--state-dir").arg(&self.proc.state_dir);
        let out = command.output().context("cannot run the CLI")?;
        Ok(out)
    }

    pub fn status(&self) -> anyhow::Result<StatusJson> {
        let out = self.cli(&["status", "--json"])?;
        if !out.status.success() {
            bail!("status failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    pub fn search(&self, word: &str) -> anyhow::Result<Vec<SearchResultJson>> {
        let out = self.cli(&["search", "--json", word])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    /// Downloads `content_id`; the finished event, or why not.
    pub fn get(&self, content_id: &str) -> anyhow::Result<GetEventJson> {
        let out = self.cli(&["get", "--json", content_id])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let events: Vec<GetEventJson> = text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        match events.last() {
            Some(finished @ GetEventJson::Finished { .. }) => Ok(finished.clone()),
            other => bail!(
                "the download did not finish: {other:?} ({})",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// Shares a file of `len` pseudo-random bytes named `name`; its content id.
    pub fn share_file(&self, name: &str, len: usize, seed: u32) -> anyhow::Result<String> {
        let bytes: Vec<u8> = (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect();
        std::fs::write(self.share.join(name), &bytes)?;
        Ok(ContentId::of_bytes(&bytes).to_string())
    }
}
