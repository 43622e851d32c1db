//! Tests of the control API's server.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::testing::{self, raw_agent};
use super::super::{ControlClient, StatusJson};
use super::super::{GetEventJson, GetRequest, SearchResultJson};
use super::*;

fn read_control_file(dir: &Path) -> ControlFile {
    serde_json::from_slice(&std::fs::read(dir.join(CONTROL_FILE)).unwrap()).unwrap()
}

/// A raw HTTP/1.1 exchange, so nothing on the client side adds or fixes headers.
async fn raw_http(addr: SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn control_file_has_address_token_pid_and_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _stop) = testing::start(dir.path()).await;
    let file = read_control_file(dir.path());
    assert_eq!(file.addr, server.addr());
    assert_ne!(file.addr.port(), 0);
    assert_eq!(file.token.len(), 64);
    assert!(hex::decode(&file.token).is_ok());
    assert_eq!(file.pid, std::process::id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(CONTROL_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Two daemons never share a token.
    let other = tempfile::tempdir().unwrap();
    let (_server2, _stop2) = testing::start(other.path()).await;
    assert_ne!(read_control_file(other.path()).token, file.token);
}

#[tokio::test]
async fn a_non_loopback_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for listen in ["0.0.0.0:0", "192.0.2.1:0", "[::]:0"] {
        let result = serve(
            Arc::new(testing::FakeHandler),
            listen.parse().unwrap(),
            dir.path(),
            std::future::pending(),
        )
        .await;
        let error = result.err().unwrap().to_string();
        assert!(error.contains("127.0.0.1 only"), "{listen}: {error}");
    }
    assert!(!dir.path().join(CONTROL_FILE).exists());
}

#[tokio::test]
async fn requests_without_or_with_a_wrong_token_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _stop) = testing::start(dir.path()).await;
    let addr = server.addr();
    let token = read_control_file(dir.path()).token;

    let no_token = raw_http(
        addr,
        format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(no_token.starts_with("HTTP/1.1 401"), "{no_token}");
    assert!(no_token.contains("\"error\""), "{no_token}");
    assert!(!no_token.contains("node_id"), "{no_token}");

    // Unknown routes answer 401 too, not 404, so nothing leaks without the token.
    let unknown = raw_http(
        addr,
        format!("GET /nope HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(unknown.starts_with("HTTP/1.1 401"), "{unknown}");

    let mut wrong = token.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let bad_headers = [
        format!("Bearer {wrong}"),
        format!("Bearer {}", &token[..63]),
        format!("Bearer {token}0"),
        format!("Basic {token}"),
        token.clone(),
        "Bearer ".into(),
    ];
    tokio::task::spawn_blocking(move || {
        let agent = raw_agent();
        for value in bad_headers {
            let status = agent
                .get(format!("http://{addr}/status"))
                .header("Authorization", &value)
                .call()
                .unwrap()
                .status();
            assert_eq!(status, 401, "{value}");
            let search = agent
                .post(format!("http://{addr}/search"))
                .header("Authorization", &value)
                .send_json(SearchRequest {
                    keywords: vec!["a".into()],
                    want: 1,
                })
                .unwrap()
                .status();
            assert_eq!(search, 401, "{value}");
        }
        let mut ok = agent
            .get(format!("http://{addr}/status"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(ok.status(), 200);
        let status: StatusJson = ok.body_mut().read_json().unwrap();
        assert_eq!(status, testing::fixed_status());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_requests_get_400_404_405_413_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _stop) = testing::start(dir.path()).await;
    let addr = server.addr();
    let bearer = format!("Bearer {}", read_control_file(dir.path()).token);
    tokio::task::spawn_blocking(move || {
        let agent = raw_agent();
        let post = |body: Vec<u8>| {
            let mut response = agent
                .post(format!("http://{addr}/search"))
                .header("Authorization", &bearer)
                .header("Content-Type", "application/json")
                .send(body)
                .unwrap();
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap();
            (status, text)
        };
        for body in [
            r#"{"keywords":[],"want":5}"#,
            r#"{"keywords":["  "],"want":5}"#,
            r#"{"keywords":["a"],"want":0}"#,
            r#"{"keywords":["a"],"want":1001}"#,
            r#"{"keywords":"a","want":5}"#,
            r#"{"want":5}"#,
            "not json",
        ] {
            let (status, text) = post(body.as_bytes().to_vec());
            assert_eq!(status, 400, "{body}: {text}");
            let error: ErrorJson = serde_json::from_str(&text).unwrap();
            assert!(!error.error.is_empty());
        }
        let mut huge = br#"{"keywords":[""#.to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_REQUEST_BODY));
        huge.extend(br#""],"want":5}"#);
        let (status, text) = post(huge);
        assert_eq!(status, 413, "{text}");

        let mut unknown = agent
            .get(format!("http://{addr}/nope"))
            .header("Authorization", &bearer)
            .call()
            .unwrap();
        assert_eq!(unknown.status(), 404);
        let error: ErrorJson = unknown.body_mut().read_json().unwrap();
        assert!(error.error.contains("no such"));

        let wrong_method = agent
            .get(format!("http://{addr}/search"))
            .header("Authorization", &bearer)
            .call()
            .unwrap();
        assert_eq!(wrong_method.status(), 405);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn search_answers_ndjson_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _stop) = testing::start(dir.path()).await;
    let addr = server.addr();
    let bearer = format!("Bearer {}", read_control_file(dir.path()).token);
    tokio::task::spawn_blocking(move || {
        let mut response = raw_agent()
            .post(format!("http://{addr}/search"))
            .header("Authorization", &bearer)
            .send_json(SearchRequest {
                keywords: vec!["song".into()],
                want: 3,
            })
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers().get("content-type").unwrap();
        assert_eq!(content_type, NDJSON);
        let text = response.body_mut().read_to_string().unwrap();
        let results: Vec<SearchResultJson> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let expected: Vec<_> = (0..3).map(|i| testing::fake_result("song", i)).collect();
        assert_eq!(results, expected);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn get_streams_events_and_refusals_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _stop) = testing::start(dir.path()).await;
    let addr = server.addr();
    let bearer = format!("Bearer {}", read_control_file(dir.path()).token);
    tokio::task::spawn_blocking(move || {
        let post = |content_id: &str| {
            raw_agent()
                .post(format!("http://{addr}/get"))
                .header("Authorization", &bearer)
                .send_json(GetRequest {
                    content_id: content_id.into(),
                    out: None,
                })
                .unwrap()
        };
        let mut response = post(&"ab".repeat(32));
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers().get("content-type").unwrap(), NDJSON);
        let text = response.body_mut().read_to_string().unwrap();
        let events: Vec<GetEventJson> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            events,
            [
                GetEventJson::Searching {
                    content_id: "ab".repeat(32)
                },
                GetEventJson::Failed {
                    error: "no holder".into()
                }
            ]
        );
        assert!(text.contains(r#""event":"searching""#), "{text}");
        let mut refused = post("nope");
        assert_eq!(refused.status(), 400);
        assert!(
            refused
                .body_mut()
                .read_to_string()
                .unwrap()
                .contains("error")
        );
        let downloads = raw_agent()
            .get(format!("http://{addr}/downloads"))
            .header("Authorization", &bearer)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert_eq!(downloads, "[]");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn shutdown_removes_control_json() {
    let dir = tempfile::tempdir().unwrap();
    let (server, stop) = testing::start(dir.path()).await;
    let addr = server.addr();
    assert!(dir.path().join(CONTROL_FILE).exists());
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.finished())
        .await
        .unwrap();
    assert!(!dir.path().join(CONTROL_FILE).exists());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_waits_briefly_for_a_running_search() {
    let dir = tempfile::tempdir().unwrap();
    let (server, stop) = testing::start(dir.path()).await;
    let client = ControlClient::from_state_dir(dir.path()).unwrap();
    let search = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let request = SearchRequest {
            keywords: vec!["slow".into()],
            want: 3,
        };
        client
            .search(&request, |result| seen.push(result))
            .map(|()| seen)
    });
    tokio::time::sleep(testing::RESULT_DELAY / 2).await;
    let start = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.finished())
        .await
        .unwrap();
    assert!(start.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(1));
    // The search was running when shutdown began and is short enough to finish.
    assert_eq!(search.await.unwrap().unwrap().len(), 3);
}

#[tokio::test]
async fn shutdown_leaves_a_control_json_written_by_another_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (server, stop) = testing::start(dir.path()).await;
    let other = ControlFile {
        addr: "127.0.0.1:9".parse().unwrap(),
        token: "ab".repeat(32),
        pid: 1,
    };
    std::fs::write(
        dir.path().join(CONTROL_FILE),
        serde_json::to_vec(&other).unwrap(),
    )
    .unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.finished())
        .await
        .unwrap();
    assert_eq!(read_control_file(dir.path()), other);
}

#[test]
fn constant_time_eq_compares_contents_and_lengths() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"", b"a"));
}
