//! Tests of the control server's limits against strangers: the header timeout, one answer
//! per connection without the token, and the connection cap under a flood.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::super::testing;
use super::super::{CONTROL_FILE, ControlClient, ControlFile};
use super::HEADER_TIMEOUT;

/// Reads until the server closes; returns how long that took, or `None` past `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut sink))
        .await
        .ok()
        .map(|_| start.elapsed())
}

#[tokio::test]
async fn silent_and_trickling_connections_are_closed_after_the_header_timeout() {
    // Before: axum::serve set no timer, so neither was ever closed.
    let dir = tempfile::tempdir().unwrap();
    let (server, _stop) = testing::start(dir.path()).await;
    let mut silent = TcpStream::connect(server.addr()).await.unwrap();
    let mut trickling = TcpStream::connect(server.addr()).await.unwrap();
    trickling
        .write_all(b"GET /status HTTP/1.1\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            if trickling.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        trickling
    });
    let limit = HEADER_TIMEOUT + Duration::from_secs(3);
    let took = closed_within(&mut silent, limit).await;
    assert!(
        took.is_some(),
        "a silent connection was held past {limit:?}"
    );
    let mut trickling = trickle.await.unwrap();
    assert!(
        closed_within(&mut trickling, Duration::from_secs(1))
            .await
            .is_some(),
        "a trickling connection was held for 10 s"
    );
}

#[tokio::test]
async fn a_request_without_the_token_gets_its_answer_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _stop) = testing::start(dir.path()).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    // Keep-alive asked for: a stranger still does not keep the connection.
    let request = format!("GET /status HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "the connection stayed open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_while_strangers_hold_a_thousand_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _stop) = testing::start(dir.path()).await;
    let mut held = Vec::new();
    for _ in 0..1_100 {
        if let Ok(stream) = TcpStream::connect(server.addr()).await {
            held.push(stream);
        }
    }
    let file: ControlFile =
        serde_json::from_slice(&std::fs::read(dir.path().join(CONTROL_FILE)).unwrap()).unwrap();
    let state_dir = dir.path().to_owned();
    let status = tokio::task::spawn_blocking(move || {
        ControlClient::new(file.addr, file.token, &state_dir).status()
    });
    let status = tokio::time::timeout(Duration::from_secs(10), status).await;
    let status = status.expect("status answered in time").unwrap();
    assert_eq!(status.unwrap(), testing::fixed_status());
    drop(held);
}
