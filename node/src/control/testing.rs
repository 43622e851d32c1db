//! A fake daemon for the control API's tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::server::ControlServer;
use super::{
    ControlHandler, DownloadJson, ErrorJson, GetEventJson, GetRequest, HolderJson, PromoteJson,
    SearchLineJson, SearchRequest, SearchResultJson, StatusJson, SupernodeJson, serve,
};

/// The search that the fake handler refuses.
pub const REFUSED_KEYWORD: &str = "refuse";

/// What the fake refuses such a search with.
pub const REFUSAL: &str = "not attached to a supernode yet";

/// The search that the fake answers with one result, then a refusal (as a supernode that
/// rate-limits the query does, once the search has started).
pub const LATE_REFUSED_KEYWORD: &str = "refuse-late";

/// What the fake ends that search with.
pub const LATE_REFUSAL: &str = "the supernode refused the search: too many queries";

/// Delay before each fake result.
pub const RESULT_DELAY: Duration = Duration::from_millis(150);

/// Answers status with fixed data and every search with three results, one per
/// [`RESULT_DELAY`].
pub struct FakeHandler;

pub fn fixed_status() -> StatusJson {
    StatusJson {
        node_id: "11".repeat(32),
        role: "leaf".into(),
        reachability: Default::default(),
        relay: None,
        supernode: Some(SupernodeJson {
            node_id: "22".repeat(32),
            addr: "127.0.0.2:4000".into(),
            rtt_ms: 1.5,
        }),
        publication: None,
        shared_files: 7,
        hashing: None,
        candidates: Vec::new(),
        supernodes: Vec::new(),
        leaves: None,
        neighbors: None,
        indexed: None,
        queries_forwarded: None,
        queries_received: None,
        summaries: None,
        directory: None,
        listen: "127.0.0.1:4001".into(),
        advertise: "127.0.0.1:4001".into(),
        downloads: Vec::new(),
        uploaded_bytes: 0,
    }
}

pub fn fake_result(keyword: &str, i: u64) -> SearchResultJson {
    SearchResultJson {
        content_id: format!("{i:064x}"),
        name: format!("{keyword}-{i}.mp3"),
        size: 1000 + i,
        sources: 1,
        holders: vec![HolderJson {
            node_id: "33".repeat(32),
            addr: "127.0.0.3:4000".into(),
            firewalled: false,
        }],
    }
}

impl ControlHandler for FakeHandler {
    async fn status(&self) -> StatusJson {
        fixed_status()
    }

    async fn search(
        &self,
        request: SearchRequest,
    ) -> Result<mpsc::Receiver<SearchLineJson>, String> {
        let keyword = request.keywords.first().cloned().unwrap_or_default();
        if keyword == REFUSED_KEYWORD {
            return Err(REFUSAL.into());
        }
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0..3 {
                tokio::time::sleep(RESULT_DELAY).await;
                if tx
                    .send(SearchLineJson::Result(fake_result(&keyword, i)))
                    .await
                    .is_err()
                {
                    return;
                }
                if keyword == LATE_REFUSED_KEYWORD {
                    let error = LATE_REFUSAL.to_string();
                    let _ = tx.send(SearchLineJson::Error(ErrorJson { error })).await;
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn get(&self, request: GetRequest) -> Result<mpsc::Receiver<GetEventJson>, String> {
        if request.content_id.len() != 64 {
            return Err(REFUSAL.into());
        }
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let _ = tx
                .send(GetEventJson::Searching {
                    content_id: request.content_id,
                })
                .await;
            let _ = tx
                .send(GetEventJson::Failed {
                    error: "no holder".into(),
                })
                .await;
        });
        Ok(rx)
    }

    async fn downloads(&self) -> Vec<DownloadJson> {
        Vec::new()
    }

    async fn promote(&self) -> Result<PromoteJson, String> {
        Err(REFUSAL.into())
    }
}

/// A server for [`FakeHandler`] on 127.0.0.1 with its control file in `dir`; send on the
/// returned channel (or drop it) to shut it down.
pub async fn start(dir: &Path) -> (ControlServer, oneshot::Sender<()>) {
    let (stop, stopped) = oneshot::channel();
    let server = serve(
        Arc::new(FakeHandler),
        "127.0.0.1:0".parse().unwrap(),
        dir,
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    (server, stop)
}

/// A ureq agent that reports HTTP errors as responses, for raw requests.
pub fn raw_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}
