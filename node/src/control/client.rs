//! The CLI side of the control API: a blocking client (`superpeer search`, `status`) that
//! finds the daemon through `STATE_DIR/control.json`.
//!
//! Every failure becomes one sentence the user can act on: no daemon, a daemon that does
//! not answer, a stale token, or the daemon's own error message.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use ureq::http::{Response, StatusCode};

use serde::de::DeserializeOwned;

use super::{
    CONTROL_FILE, ControlFile, DownloadJson, ErrorJson, GetEventJson, GetRequest, PromoteJson,
    SearchLineJson, SearchRequest, SearchResultJson, StatusJson, UiCodeJson,
};

/// Longest line of a search answer the client accepts.
const MAX_RESULT_LINE: usize = 1024 * 1024;

/// Longest error answer the client reads.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// How long the client waits to reach the daemon.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a status request may take in all.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a promotion may take (it waits for the list server's dial-back).
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a search may take in all; the daemon's own deadline is far shorter.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A connection to a running daemon's control API.
pub struct ControlClient {
    addr: SocketAddr,
    token: String,
    /// Where the daemon was found, for error messages.
    state_dir: PathBuf,
    agent: ureq::Agent,
}

impl ControlClient {
    /// Finds the daemon whose `control.json` is in `dir`.
    pub fn from_state_dir(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(CONTROL_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no running superpeer daemon found in {} (no {CONTROL_FILE}): start one with \
                 `superpeer leaf ...` or pass --state-dir",
                dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let file: ControlFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a superpeer control file", path.display()))?;
        if !file.addr.ip().is_loopback() {
            bail!(
                "{} names {}, not a loopback address; refusing to send the token there",
                path.display(),
                file.addr
            );
        }
        Ok(Self::new(file.addr, file.token, dir))
    }

    /// A client for the daemon at `addr` with `token`; `state_dir` is only named in errors.
    pub fn new(addr: SocketAddr, token: String, state_dir: &Path) -> Self {
        let config = ureq::Agent::config_builder()
            // Our own messages for 401 and friends, not an opaque status error.
            .http_status_as_error(false)
            // The daemon is on loopback; an HTTP(S)_PROXY from the environment must not apply.
            .proxy(None)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build();
        Self {
            addr,
            token,
            state_dir: state_dir.to_owned(),
            agent: config.into(),
        }
    }

    /// `GET /status`.
    pub fn status(&self) -> anyhow::Result<StatusJson> {
        self.get_json("status")
    }

    /// `POST /search`; calls `on_result` for each result as its line arrives.
    pub fn search(
        &self,
        request: &SearchRequest,
        mut on_result: impl FnMut(SearchResultJson),
    ) -> anyhow::Result<()> {
        self.stream("search", request, Some(SEARCH_TIMEOUT), |line| match line {
            SearchLineJson::Result(result) => {
                on_result(result);
                Ok(())
            }
            SearchLineJson::Error(ErrorJson { error }) => bail!("{error}"),
        })
    }

    /// `POST /get`; calls `on_event` for each event as its line arrives. Returns when the
    /// daemon ends the answer (after `finished` or `failed`).
    pub fn get(
        &self,
        request: &GetRequest,
        mut on_event: impl FnMut(GetEventJson),
    ) -> anyhow::Result<()> {
        // No overall limit: a download takes what it takes, and sends progress meanwhile.
        self.stream("get", request, None, |event| {
            on_event(event);
            Ok(())
        })
    }

    /// `GET /downloads`.
    pub fn downloads(&self) -> anyhow::Result<Vec<DownloadJson>> {
        self.get_json("downloads")
    }

    /// `GET /ROUTE`, answered with one JSON value.
    fn get_json<T: DeserializeOwned>(&self, route: &str) -> anyhow::Result<T> {
        let mut response = self
            .agent
            .get(self.url(route))
            .config()
            .timeout_global(Some(STATUS_TIMEOUT))
            .build()
            .header("Authorization", self.bearer())
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.check(&mut response)?;
        response
            .body_mut()
            .read_json()
            .with_context(|| format!("the daemon's {route} answer is not valid"))
    }

    /// `POST /promote`.
    pub fn promote(&self) -> anyhow::Result<PromoteJson> {
        self.post_empty("promote", PROMOTE_TIMEOUT)
    }

    /// `POST /ui/code`: a one-time login URL for the web UI.
    pub fn ui_code(&self) -> anyhow::Result<UiCodeJson> {
        self.post_empty("ui/code", STATUS_TIMEOUT)
    }

    /// `POST /ROUTE` without a body, answered with one JSON value.
    fn post_empty<T: DeserializeOwned>(&self, route: &str, timeout: Duration) -> anyhow::Result<T> {
        let mut response = self
            .agent
            .post(self.url(route))
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Authorization", self.bearer())
            .send_empty()
            .map_err(|e| self.unreachable(e))?;
        self.check(&mut response)?;
        response
            .body_mut()
            .read_json()
            .with_context(|| format!("the daemon's {route} answer is not valid"))
    }

    /// POSTs `request` to `route` and calls `on_item` for each line of the NDJSON answer.
    fn stream<T: DeserializeOwned>(
        &self,
        route: &str,
        request: &impl serde::Serialize,
        timeout: Option<Duration>,
        mut on_item: impl FnMut(T) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut response = self
            .agent
            .post(self.url(route))
            .config()
            .timeout_global(timeout)
            .build()
            .header("Authorization", self.bearer())
            .send_json(request)
            .map_err(|e| self.unreachable(e))?;
        self.check(&mut response)?;
        let mut reader = BufReader::new(response.body_mut().as_reader());
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .by_ref()
                .take(MAX_RESULT_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .with_context(|| format!("the daemon's {route} answer was cut off"))?;
            if n == 0 {
                return Ok(());
            }
            if n > MAX_RESULT_LINE {
                bail!("the daemon sent a {route} line over {MAX_RESULT_LINE} bytes");
            }
            if line.trim_ascii().is_empty() {
                continue;
            }
            let item = serde_json::from_slice(&line)
                .with_context(|| format!("the daemon sent a {route} line that is not valid"))?;
            on_item(item)?;
        }
    }

    fn url(&self, route: &str) -> String {
        format!("http://{}/{route}", self.addr)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The request never got an answer.
    fn unreachable(&self, error: ureq::Error) -> anyhow::Error {
        match error {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound => anyhow!(
                "the daemon in {} does not answer at {}; is it running?",
                self.state_dir.display(),
                self.addr
            ),
            other => anyhow!(
                "the control request to the daemon at {} failed: {other}",
                self.addr
            ),
        }
    }

    /// Turns an error status into the daemon's message, or a clear one of ours.
    fn check(&self, response: &mut Response<ureq::Body>) -> anyhow::Result<()> {
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::UNAUTHORIZED {
            bail!(
                "the control token was refused ({CONTROL_FILE} is stale?): the daemon at {} \
                 is not the one that wrote {}",
                self.addr,
                self.state_dir.join(CONTROL_FILE).display()
            );
        }
        let message = response
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_json::<ErrorJson>()
            .map(|e| printable(&e.error))
            .unwrap_or_else(|_| status.canonical_reason().unwrap_or("error").to_owned());
        match status {
            StatusCode::BAD_REQUEST | StatusCode::SERVICE_UNAVAILABLE => Err(anyhow!(message)),
            _ => Err(anyhow!("the daemon answered HTTP {status}: {message}")),
        }
    }
}

/// The daemon's message without control characters, fit for a terminal.
fn printable(message: &str) -> String {
    message.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
