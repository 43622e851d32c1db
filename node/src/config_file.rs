//! The optional TOML config file (`--config FILE`) of `leaf` and `supernode`: the same
//! settings as the flags, with the flags' names. A flag given on the command line wins over
//! the file.
//!
//! ```toml
//! listen = "127.0.0.5:4000"
//! list-server = ["NODEID@127.0.0.2:4000"]
//! share = "/home/me/Music"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use serde::Deserialize;
use superpeer_common::PeerAddr;

use crate::cli::DaemonArgs;

/// The settings a config file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    listen: Option<SocketAddr>,
    #[serde(default)]
    list_server: Vec<String>,
    #[serde(default)]
    peer: Vec<String>,
    advertise: Option<SocketAddr>,
    share: Option<PathBuf>,
    downloads: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    control: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    max_leaves: Option<usize>,
    supernodes: Option<u32>,
    max_files_per_leaf: Option<u32>,
    max_connections: Option<u32>,
}

/// Reads and parses a config file, with errors that name it.
pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    parse(&text).map_err(|e| anyhow!("the config file {} is not valid: {e}", path.display()))
}

/// Parses a config file's text the way [`load`] does (the fuzz target's entry).
pub fn parse(text: &str) -> Result<ConfigFile, toml::de::Error> {
    toml::from_str(text)
}

fn addrs(values: &[String], what: &str) -> anyhow::Result<Vec<PeerAddr>> {
    values
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|e| anyhow!("{what} {v:?} in the config file: {e}"))
        })
        .collect()
}

fn required_listen(listen: Option<SocketAddr>) -> anyhow::Result<SocketAddr> {
    listen.ok_or_else(|| anyhow!("--listen ADDR is required (or `listen` in the --config file)"))
}

impl DaemonArgs {
    /// Fills what the flags left open from `--config`, and checks what must be given.
    pub fn resolve(mut self) -> anyhow::Result<(Self, SocketAddr)> {
        if let Some(path) = &self.config {
            let file = load(path)?;
            self.listen = self.listen.or(file.listen);
            if self.list_servers.is_empty() {
                self.list_servers = addrs(&file.list_server, "list-server")?;
            }
            if self.peers.is_empty() {
                self.peers = addrs(&file.peer, "peer")?;
            }
            self.advertise = self.advertise.or(file.advertise);
            self.share = self.share.or(file.share);
            self.downloads = self.downloads.or(file.downloads);
            self.state_dir = self.state_dir.or(file.state_dir);
            self.control = self.control.or(file.control);
            self.metrics = self.metrics.or(file.metrics);
            self.max_leaves = self.max_leaves.or(file.max_leaves);
            self.max_files_per_leaf = self.max_files_per_leaf.or(file.max_files_per_leaf);
            if let Some(n) = file
                .max_connections
                .filter(|n| !(1..=1_000_000).contains(n))
            {
                return Err(anyhow!(
                    "max-connections = {n} in the config file {}: it must be 1 to 1000000",
                    path.display()
                ));
            }
            self.max_connections = self.max_connections.or(file.max_connections);
            if let Some(n) = file.supernodes.filter(|n| !(1..=3).contains(n)) {
                return Err(anyhow!(
                    "supernodes = {n} in the config file {}: it must be 1 to 3",
                    path.display()
                ));
            }
            self.supernodes = self.supernodes.or(file.supernodes);
        }
        let listen = required_listen(self.listen)?;
        Ok((self, listen))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn leaf_args(extra: &[&str]) -> DaemonArgs {
        let mut argv = vec!["superpeer", "leaf"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Leaf(args) => args.daemon,
            _ => panic!("not a leaf"),
        }
    }

    #[test]
    fn the_file_fills_in_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leaf.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.5:4000\"\nlist-server = [\"127.0.0.2:4000\"]\nshare = \"/srv/music\"\n\
             max-connections = 256\n",
        )
        .unwrap();
        let (args, listen) = leaf_args(&["--config", path.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(listen, "127.0.0.5:4000".parse().unwrap());
        assert_eq!(args.list_servers.len(), 1);
        assert_eq!(args.share, Some(PathBuf::from("/srv/music")));
        assert_eq!(args.max_connections, Some(256));
        let (args, listen) = leaf_args(&[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.9:1",
            "--max-connections",
            "512",
        ])
        .resolve()
        .unwrap();
        assert_eq!(listen, "127.0.0.9:1".parse().unwrap());
        assert_eq!(args.max_connections, Some(512));
    }

    #[test]
    fn the_metrics_address_comes_from_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sn.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.5:4000\"\nmetrics = \"127.0.0.1:9464\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let (args, _) = leaf_args(&["--config", config]).resolve().unwrap();
        assert_eq!(args.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        let (args, _) = leaf_args(&["--config", config, "--metrics", "127.0.0.1:9500"])
            .resolve()
            .unwrap();
        assert_eq!(args.metrics, Some("127.0.0.1:9500".parse().unwrap()));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = 5\nsurprise = true\n").unwrap();
        let err = leaf_args(&["--config", path.to_str().unwrap()])
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("is not valid"), "{err}");
        let err = leaf_args(&["--config", "/nonexistent/x.toml"])
            .resolve()
            .unwrap_err();
        assert!(
            err.to_string().contains("cannot read the config file"),
            "{err}"
        );
        std::fs::write(&path, "listen = \"127.0.0.5:4000\"\nmax-connections = 0\n").unwrap();
        let err = leaf_args(&["--config", path.to_str().unwrap()])
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("max-connections = 0"), "{err}");
        std::fs::write(&path, "listen = \"127.0.0.5:4000\"\nsupernodes = 4\n").unwrap();
        let err = leaf_args(&["--config", path.to_str().unwrap()])
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("supernodes = 4"), "{err}");
        std::fs::write(&path, "listen = \"127.0.0.5:4000\"\nsupernodes = 2\n").unwrap();
        let args = leaf_args(&["--config", path.to_str().unwrap()]);
        assert_eq!(args.resolve().unwrap().0.supernodes, Some(2));
        let args = leaf_args(&["--config", path.to_str().unwrap(), "--supernodes", "3"]);
        assert_eq!(
            args.resolve().unwrap().0.supernodes,
            Some(3),
            "the flag wins"
        );
        let err = leaf_args(&[]).resolve().unwrap_err();
        assert!(
            err.to_string().contains("--listen ADDR is required"),
            "{err}"
        );
    }
}
