//! The control API: how `superpeer search` and `superpeer status` talk to a running daemon.
//!
//! A daemon (leaf or supernode) serves a small HTTP/JSON API on a loopback address only and
//! writes where it listens, with a random secret token, to `STATE_DIR/control.json` (mode
//! 0600). The client commands find the daemon through that file. Every request carries
//! `Authorization: Bearer TOKEN`; anything else gets 401. The file's permissions are what
//! keep other local users out; the loopback address is what keeps other hosts out.
//!
//! Requests:
//! 1. `GET /status` → one [`StatusJson`].
//! 2. `POST /search` with a [`SearchRequest`] → `application/x-ndjson`, one
//!    [`SearchResultJson`] per line. The body ends when the search is over; a search the
//!    supernode refused (rate limit) ends with an [`ErrorJson`] line instead.
//! 3. `POST /get` with a [`GetRequest`] → `application/x-ndjson`, one [`GetEventJson`] per
//!    line (progress about twice a second) until the download finished or failed. The
//!    download belongs to the daemon: a client that hangs up does not stop it, and a second
//!    `get` of the same content follows the running download.
//! 4. `GET /downloads` → a list of [`DownloadJson`] (running ones, then recent ones).
//! 5. `POST /promote` → a [`PromoteJson`] once the node runs as a supernode (and a list
//!    server has confirmed it can dial it back, when it has one); 400 if it cannot be
//!    promoted, with the reason (it stays what it was).
//! 6. `POST /ui/code` → a [`UiCodeJson`]: a login URL for the web UI, whose own routes
//!    (a session instead of the token) are in `ui`.
//! 7. Errors (400 bad request, 401 token, 404 route, 413 body too large, 421 another Host,
//!    503 search refused or busy) carry an [`ErrorJson`].
//!
//! This module does not run searches or know about connections: the daemon implements
//! [`ControlHandler`] and the server only moves requests and answers.
//!
//! Layout:
//! - `mod.rs`: the JSON types shared by both sides, the [`ControlHandler`] trait.
//! - `server`: [`serve`], the accept loop and axum router, token check, `control.json`
//!   life cycle.
//! - `connections`: the connection table (cap, which connection makes room).
//! - `ui`: the web UI: its page, login codes and sessions, the guard, live events.
//! - `client`: [`ControlClient`], the blocking client the CLI commands use.
//! - `testing` (tests only): a fake daemon.

mod client;
mod connections;
mod server;
#[cfg(test)]
mod testing;
mod ui;

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};
use superpeer_supernode::CoreStatus;
use tokio::sync::mpsc;

pub use client::ControlClient;
// `ControlServer` (what `serve` returns) is re-exported once something names the type.
pub use server::serve;
pub use ui::{ContentRef, DownloadAction, SharingJson, UiCodeJson, UiSearch, UiStateJson};

/// Name of the file, in the state dir, that says where the daemon's control API listens.
pub const CONTROL_FILE: &str = "control.json";

/// Most results one search may ask for.
pub const MAX_WANT: u32 = 1000;

/// Results a search asks for when the request does not say.
pub const DEFAULT_WANT: u32 = 50;

/// Most keywords one search request may carry (before the daemon normalises them).
pub const MAX_REQUEST_KEYWORDS: usize = 64;

/// Longest keyword, in bytes, a search request may carry (before normalisation).
pub const MAX_REQUEST_KEYWORD_BYTES: usize = 1024;

/// What the daemon implements so the control API can answer.
pub trait ControlHandler: Send + Sync + 'static {
    /// The daemon's current state, for `superpeer status`.
    fn status(&self) -> impl Future<Output = StatusJson> + Send;

    /// Starts a search. Results stream in as they arrive; the channel closes when the
    /// search is over. An `Err` (e.g. not attached to a supernode yet) is shown to the user.
    fn search(
        &self,
        request: SearchRequest,
    ) -> impl Future<Output = Result<mpsc::Receiver<SearchLineJson>, String>> + Send;

    /// Starts (or follows) a download. Events stream until it finished or failed; an `Err`
    /// means it could not start at all.
    fn get(
        &self,
        request: GetRequest,
    ) -> impl Future<Output = Result<mpsc::Receiver<GetEventJson>, String>> + Send;

    /// Downloads running and recently ended.
    fn downloads(&self) -> impl Future<Output = Vec<DownloadJson>> + Send;

    /// Turns the node into a supernode.
    fn promote(&self) -> impl Future<Output = Result<PromoteJson, String>> + Send;

    /// Turns a supernode back into a leaf (the web UI's "step down").
    fn demote(&self) -> impl Future<Output = Result<(), String>> + Send {
        async { Err("this daemon cannot step down".to_string()) }
    }

    /// Pauses, resumes or cancels a download (the web UI's buttons).
    fn download_action(
        &self,
        content_id: String,
        action: DownloadAction,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = (content_id, action);
        async { Err("this daemon cannot pause or cancel downloads".to_string()) }
    }

    /// The shared folder and the uploads, for the web UI.
    fn sharing(&self) -> impl Future<Output = SharingJson> + Send {
        async { SharingJson::default() }
    }
}

/// The contents of `control.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlFile {
    /// Where the control API listens (a loopback address).
    pub addr: std::net::SocketAddr,
    /// The secret every request must carry, hex.
    pub token: String,
    /// Process id of the daemon, for the user's benefit.
    pub pid: u32,
}

/// A supernode's relay for firewalled leaves (`status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayJson {
    /// Sessions being relayed now.
    pub active: usize,
    /// Sessions relayed since start.
    pub admitted: u64,
    /// Sessions refused (over the caps).
    pub refused: u64,
    /// Bytes relayed, both ways.
    pub bytes: u64,
    /// Sessions cut off for exceeding their byte or time cap.
    pub cut_off: u64,
}

/// Whether others can reach a node (`status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachabilityJson {
    /// `public` (a dial-back from its supernode reached it), `nat` (behind a NAT or
    /// firewall: reached through its supernode), or `unknown` (no supernode said yet).
    pub kind: String,
    /// Behind a NAT: `endpoint-independent` (one external port for every destination: hole
    /// punching works), `endpoint-dependent` (a symmetric NAT), or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// The address its supernode sees its connection come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

/// `GET /status`, and `superpeer status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusJson {
    pub node_id: String,
    /// `"leaf"` or `"supernode"`.
    pub role: String,
    /// The supernode a leaf is attached to; always serialised, `null` when there is none.
    pub supernode: Option<SupernodeJson>,
    /// Every supernode a leaf is attached to, the one above first, then its spares (absent
    /// with no spare; see `--supernodes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supernodes: Vec<SupernodeJson>,
    /// The supernodes a leaf knows, best measured first (at most 20; empty on a supernode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateJson>,
    pub shared_files: usize,
    /// Hashing in the shared folder (present when a folder is shared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashing: Option<HashingJson>,
    /// How the shared files stand with the supernode that indexes them: how many it holds,
    /// how many wait, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<PublicationJson>,
    /// Leaves attached (supernode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaves: Option<usize>,
    /// Supernode neighbours linked (supernode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbors: Option<usize>,
    /// Entries in the supernode's index (supernode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed: Option<usize>,
    /// Query messages this supernode sent to neighbours, and received from them, since it
    /// started (supernode only): what a query costs the overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries_forwarded: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries_received: Option<u64>,
    /// Keyword summaries: ours and the ones we hold of our neighbours (supernode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summaries: Option<SummariesJson>,
    /// The keyword directory (supernode only): members known, keywords published and owned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryJson>,
    /// Whether others can reach this node, and where its supernode sees it.
    #[serde(default)]
    pub reachability: ReachabilityJson,
    /// Sessions relayed for firewalled leaves (supernode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayJson>,
    /// The address the daemon listens on.
    pub listen: String,
    /// The address others are told to dial.
    pub advertise: String,
    /// Downloads running and recently ended.
    #[serde(default)]
    pub downloads: Vec<DownloadJson>,
    /// Content bytes uploaded to other peers since start.
    #[serde(default)]
    pub uploaded_bytes: u64,
}

/// A supernode's keyword summaries: whether its neighbours know what it indexes, and what
/// it knows of theirs. A neighbour is up to date with us when it holds our `generation`
/// and we are not `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummariesJson {
    /// The generation stamped on our latest summary.
    pub generation: u64,
    /// The index changed since the last summary went to every neighbour.
    pub pending: bool,
    /// Per neighbour node id, the generation of its summary we hold (null before the first).
    pub neighbors: BTreeMap<String, Option<u64>>,
}

impl From<&CoreStatus> for SummariesJson {
    fn from(core: &CoreStatus) -> Self {
        SummariesJson {
            generation: core.summary_generation,
            pending: core.summary_pending,
            neighbors: core
                .neighbor_summaries
                .iter()
                .map(|(id, generation)| (id.to_string(), *generation))
                .collect(),
        }
    }
}

/// A supernode's part in the keyword directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryJson {
    /// Live supernodes known from the list servers: the set owners are ranked over.
    pub members: usize,
    /// Keywords our index holds, told to their owners.
    pub published_keywords: usize,
    /// As an owner: keywords held, and (keyword, supernode) pairs.
    pub owned_keywords: usize,
    pub owned_pairs: usize,
    /// Directory sessions open to other supernodes, either way.
    pub sessions: usize,
    /// Lookups sent to owners, and queries sent directly to the supernodes they named.
    pub lookups_sent: u64,
    pub asked_directly: u64,
    /// Keywords refused: by owners (not theirs, or past their caps) and by us as an owner.
    pub refused_by_owners: u64,
    pub refused_as_owner: u64,
}

impl From<&CoreStatus> for DirectoryJson {
    fn from(core: &CoreStatus) -> Self {
        let d = &core.directory;
        DirectoryJson {
            members: d.members,
            published_keywords: d.published_keywords,
            owned_keywords: d.owned_keywords,
            owned_pairs: d.owned_pairs,
            sessions: d.sessions,
            lookups_sent: d.lookups_sent,
            asked_directly: core.router.asked_directly,
            refused_by_owners: d.refused_not_owner + d.refused_capped,
            refused_as_owner: d.refused_to_others,
        }
    }
}

/// A supernode a leaf knows, as `status --json` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateJson {
    pub node_id: String,
    pub addr: String,
    /// Its last probe's median RTT; absent until it answers one (or after it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// The leaves it had and the leaves it takes, as last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaves: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// The leaf is attached to it.
    pub attached: bool,
}

/// Hashing in the shared folder: what the scan under way has to hash (all 0 when none is
/// hashing), and what has been hashed since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashingJson {
    /// Files the scan under way hashes, and how many of them are done.
    pub files: u64,
    pub files_done: u64,
    /// Their bytes, and how many of those are hashed.
    pub bytes: u64,
    pub bytes_done: u64,
    /// Bytes hashed since the node started (the first scan included).
    pub hashed_bytes: u64,
}

/// How a node's shared files stand with the supernode that indexes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationJson {
    /// Files the supernode holds in its index.
    pub indexed: usize,
    /// Files not indexed (yet).
    pub pending: usize,
    /// Why some files are not indexed, when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The supernode a leaf is attached to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupernodeJson {
    pub node_id: String,
    pub addr: String,
    pub rtt_ms: f64,
}

/// `POST /search` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub keywords: Vec<String>,
    /// How many results the user wants, `1..=MAX_WANT`.
    #[serde(default = "default_want")]
    pub want: u32,
}

fn default_want() -> u32 {
    DEFAULT_WANT
}

impl SearchRequest {
    /// Checks what the server refuses with 400; the message is shown to the user.
    pub fn validate(&self) -> Result<(), String> {
        if self.keywords.iter().all(|k| k.trim().is_empty()) {
            return Err("a search needs at least one keyword".into());
        }
        if self.keywords.len() > MAX_REQUEST_KEYWORDS {
            return Err(format!(
                "too many keywords ({}; at most {MAX_REQUEST_KEYWORDS})",
                self.keywords.len()
            ));
        }
        if self
            .keywords
            .iter()
            .any(|k| k.len() > MAX_REQUEST_KEYWORD_BYTES)
        {
            return Err(format!(
                "a keyword is too long (at most {MAX_REQUEST_KEYWORD_BYTES} bytes)"
            ));
        }
        if self.want == 0 || self.want > MAX_WANT {
            return Err(format!(
                "want must be between 1 and {MAX_WANT} (got {})",
                self.want
            ));
        }
        Ok(())
    }
}

/// One line of the `POST /search` answer, and of `superpeer search --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResultJson {
    /// BLAKE3 of the file, hex.
    pub content_id: String,
    pub name: String,
    pub size: u64,
    /// How many holders are known.
    pub sources: usize,
    pub holders: Vec<HolderJson>,
}

/// One line of a `POST /search` answer: a result, or, last, why the search was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SearchLineJson {
    Result(SearchResultJson),
    Error(ErrorJson),
}

/// A node that holds a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderJson {
    pub node_id: String,
    pub addr: String,
    /// Behind a NAT or firewall: reached through its supernode (a reverse connection, a
    /// hole punch, or a relay), never dialled at `addr` unasked.
    #[serde(default)]
    pub firewalled: bool,
}

/// `POST /get` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRequest {
    /// The content id, 64 hex digits.
    pub content_id: String,
    /// Where to put the file (absolute); by default the downloads folder, under the name
    /// from the search result.
    #[serde(default)]
    pub out: Option<std::path::PathBuf>,
}

/// One line of the `POST /get` answer, and of `superpeer get --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GetEventJson {
    /// No holder was known: searching the network for the content id.
    Searching { content_id: String },
    /// The download runs: `done_bytes` were verified by an earlier run (resumed).
    Started {
        content_id: String,
        name: String,
        size: u64,
        done_bytes: u64,
        holders: usize,
    },
    /// How far it is.
    Progress {
        bytes_done: u64,
        size: u64,
        /// Bytes per second over the last few seconds.
        rate: f64,
        /// Holders that sent a verified piece in this run.
        sources: usize,
    },
    /// A holder was dropped (unreachable, wrong data, gone); the rest go on.
    HolderDropped {
        node_id: Option<String>,
        reason: String,
    },
    /// Complete and verified.
    Finished {
        path: String,
        size: u64,
        /// Bytes verified by an earlier run (not fetched again).
        resumed_bytes: u64,
        /// Bytes fetched and verified by this run.
        fetched_bytes: u64,
        /// Bytes per holder in this run.
        sources: Vec<SourceJson>,
        seconds: f64,
    },
    /// It stopped; verified pieces stay for a later `get` to resume.
    Failed { error: String },
}

/// How many bytes one holder gave a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceJson {
    pub node_id: String,
    pub bytes: u64,
    /// How the connection to it was made: `direct`, `reverse`, `punched` or `relayed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<String>,
    /// In a download's list: `sending` (`sent` once it ended), `connected` (reached, no
    /// piece yet) or `dropped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why it was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A download as `status` and `GET /downloads` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadJson {
    pub content_id: String,
    pub name: String,
    /// `searching`, `running`, `finished`, `failed`, `paused` or `cancelled`.
    pub state: String,
    pub size: u64,
    pub bytes_done: u64,
    /// Bytes per second over the last few seconds (0 unless running).
    pub rate: f64,
    pub sources: Vec<SourceJson>,
    /// Where the finished file is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /promote` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteJson {
    /// `"supernode"`.
    pub role: String,
    /// List servers that dialled it back and list it.
    pub listed_by: Vec<String>,
    /// Anything the user should know (no list server, not confirmed yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorJson {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_status() -> StatusJson {
        StatusJson {
            node_id: "ab".into(),
            role: "leaf".into(),
            supernode: None,
            reachability: Default::default(),
            relay: None,
            publication: None,
            shared_files: 3,
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
            listen: "127.0.0.1:1".into(),
            advertise: "127.0.0.1:1".into(),
            downloads: Vec::new(),
            uploaded_bytes: 0,
        }
    }

    #[test]
    fn status_always_has_supernode_and_skips_supernode_counts_on_a_leaf() {
        let v = serde_json::to_value(leaf_status()).unwrap();
        assert!(v.get("supernode").unwrap().is_null());
        assert!(v.get("leaves").is_none());
        assert!(v.get("neighbors").is_none());
        let back: StatusJson = serde_json::from_value(v).unwrap();
        assert_eq!(back, leaf_status());
    }

    #[test]
    fn supernode_status_has_counts() {
        let status = StatusJson {
            role: "supernode".into(),
            leaves: Some(4),
            neighbors: Some(2),
            ..leaf_status()
        };
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(v["leaves"], 4);
        assert_eq!(v["neighbors"], 2);
    }

    #[test]
    fn search_request_validation() {
        let ok = SearchRequest {
            keywords: vec!["beatles".into()],
            want: 10,
        };
        assert!(ok.validate().is_ok());
        let bad = [
            SearchRequest {
                keywords: vec![],
                ..ok.clone()
            },
            SearchRequest {
                keywords: vec![" ".into()],
                ..ok.clone()
            },
            SearchRequest {
                want: 0,
                ..ok.clone()
            },
            SearchRequest {
                want: MAX_WANT + 1,
                ..ok.clone()
            },
            SearchRequest {
                keywords: vec!["x".repeat(MAX_REQUEST_KEYWORD_BYTES + 1)],
                ..ok.clone()
            },
            SearchRequest {
                keywords: vec!["a".into(); MAX_REQUEST_KEYWORDS + 1],
                ..ok.clone()
            },
        ];
        for request in bad {
            assert!(request.validate().is_err(), "{request:?}");
        }
        let defaulted: SearchRequest = serde_json::from_str(r#"{"keywords":["a"]}"#).unwrap();
        assert_eq!(defaulted.want, DEFAULT_WANT);
    }
}
