//! Tests of the control API's client.

use std::time::Instant;

use super::super::testing::{self, LATE_REFUSAL, LATE_REFUSED_KEYWORD, REFUSAL, REFUSED_KEYWORD};
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
    let status =
        tokio::task::spawn_blocking(move || ControlClient::from_state_dir(&path).unwrap().status())
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
    let error =
        tokio::task::spawn_blocking(move || error_of(client.search(&search_request("a"), |_| {})))
            .await
            .unwrap();
    assert!(error.contains("over"), "{error}");
}
