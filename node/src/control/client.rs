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
    SearchLineJson, SearchRequest, SearchResultJson, StatusJson,
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
        let mut response = self
            .agent
            .post(self.url("promote"))
            .config()
            .timeout_global(Some(PROMOTE_TIMEOUT))
            .build()
            .header("Authorization", self.bearer())
            .send_empty()
            .map_err(|e| self.unreachable(e))?;
        self.check(&mut response)?;
        response
            .body_mut()
            .read_json()
            .context("the daemon's promote answer is not valid")
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
mod tests {
    use std::time::Instant;

    use super::super::testing::{
        self, LATE_REFUSAL, LATE_REFUSED_KEYWORD, REFUSAL, REFUSED_KEYWORD,
    };
    use super::*;

    fn search_request(keyword: &str) -> SearchRequest {
        SearchRequest {
            keywords: vec![keyword.into()],
            want: 10,
        }
    }

    fn error_of<T>(result: anyhow::Result<T>) -> String {
        format!("{:#}", result.err().unwrap())
    }

    fn write_control_file(dir: &Path, addr: SocketAddr, token: &str) {
        let file = ControlFile {
            addr,
            token: token.into(),
            pid: 1,
        };
        std::fs::write(dir.join(CONTROL_FILE), serde_json::to_vec(&file).unwrap()).unwrap();
    }

    #[test]
    fn no_control_file_says_how_to_start_a_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let error = error_of(ControlClient::from_state_dir(dir.path()));
        assert!(
            error.contains("no running superpeer daemon found in"),
            "{error}"
        );
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        assert!(error.contains("--state-dir"), "{error}");
    }

    #[test]
    fn a_garbled_or_non_loopback_control_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONTROL_FILE), b"{not json").unwrap();
        let error = error_of(ControlClient::from_state_dir(dir.path()));
        assert!(error.contains("is not a superpeer control file"), "{error}");

        write_control_file(dir.path(), "192.0.2.1:80".parse().unwrap(), "ab");
        let error = error_of(ControlClient::from_state_dir(dir.path()));
        assert!(error.contains("not a loopback address"), "{error}");
    }

    #[test]
    fn a_daemon_that_is_gone_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: nothing listens at `addr` any more.
        write_control_file(dir.path(), addr, &"ab".repeat(32));
        let client = ControlClient::from_state_dir(dir.path()).unwrap();
        assert_eq!(client.addr, addr);
        let error = error_of(client.status());
        assert!(error.contains("does not answer at"), "{error}");
        assert!(error.contains("is it running?"), "{error}");
        let error = error_of(client.search(&search_request("a"), |_| {}));
        assert!(error.contains("does not answer at"), "{error}");
    }

    #[tokio::test]
    async fn status_through_the_control_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, _stop) = testing::start(dir.path()).await;
        let path = dir.path().to_owned();
        let status = tokio::task::spawn_blocking(move || {
            ControlClient::from_state_dir(&path).unwrap().status()
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(status, testing::fixed_status());
    }

    #[tokio::test]
    async fn search_calls_back_for_every_result_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, _stop) = testing::start(dir.path()).await;
        let client = ControlClient::from_state_dir(dir.path()).unwrap();
        let (seen, elapsed, first) = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let mut seen = Vec::new();
            let mut first_at = None;
            client
                .search(&search_request("song"), |result| {
                    first_at.get_or_insert(start.elapsed());
                    seen.push(result);
                })
                .unwrap();
            (seen, start.elapsed(), first_at.unwrap())
        })
        .await
        .unwrap();
        let expected: Vec<_> = (0..3).map(|i| testing::fake_result("song", i)).collect();
        assert_eq!(seen, expected);
        // The call returns only once the search is over.
        assert!(elapsed >= testing::RESULT_DELAY * 3, "{elapsed:?}");
        // Results arrive one by one, not all at the end.
        assert!(first < testing::RESULT_DELAY * 2, "{first:?}");
    }

    #[tokio::test]
    async fn daemon_errors_reach_the_user_as_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, _stop) = testing::start(dir.path()).await;
        let client = ControlClient::from_state_dir(dir.path()).unwrap();
        let (refused, invalid) = tokio::task::spawn_blocking(move || {
            let refused = error_of(client.search(&search_request(REFUSED_KEYWORD), |_| {}));
            let invalid = error_of(client.search(
                &SearchRequest {
                    keywords: vec![],
                    want: 5,
                },
                |_| {},
            ));
            (refused, invalid)
        })
        .await
        .unwrap();
        assert_eq!(refused, REFUSAL);
        assert_eq!(invalid, "a search needs at least one keyword");
    }

    #[tokio::test]
    async fn a_search_refused_after_it_started_is_an_error_not_an_empty_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, _stop) = testing::start(dir.path()).await;
        let client = ControlClient::from_state_dir(dir.path()).unwrap();
        let (seen, error) = tokio::task::spawn_blocking(move || {
            let mut seen = 0;
            let result = client.search(&search_request(LATE_REFUSED_KEYWORD), |_| seen += 1);
            (seen, error_of(result))
        })
        .await
        .unwrap();
        assert_eq!(seen, 1, "the result before the refusal is passed on");
        assert_eq!(error, LATE_REFUSAL);
    }

    #[tokio::test]
    async fn a_stale_token_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _stop) = testing::start(dir.path()).await;
        write_control_file(dir.path(), server.addr(), &"00".repeat(32));
        let client = ControlClient::from_state_dir(dir.path()).unwrap();
        let (status, search) = tokio::task::spawn_blocking(move || {
            (
                error_of(client.status()),
                error_of(client.search(&search_request("a"), |_| {})),
            )
        })
        .await
        .unwrap();
        for error in [status, search] {
            assert!(
                error.contains("the control token was refused (control.json is stale?)"),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn a_result_line_over_the_limit_is_refused() {
        // A hand-written daemon that sends one endless line.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut stream, _) = listener.accept().await.unwrap();
            // Read the whole request: closing with unread bytes would reset the connection.
            let mut request = Vec::new();
            let mut buf = [0; 4096];
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .split("content-length:")
                        .nth(1)
                        .and_then(|rest| rest.lines().next())
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                assert!(n > 0, "request cut off");
            }
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n\
                        connection: close\r\n\r\n";
            stream.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..(MAX_RESULT_LINE / chunk.len() + 2) {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let client = ControlClient::new(addr, "ab".into(), dir.path());
        let error = tokio::task::spawn_blocking(move || {
            error_of(client.search(&search_request("a"), |_| {}))
        })
        .await
        .unwrap();
        assert!(error.contains("over"), "{error}");
    }
}
