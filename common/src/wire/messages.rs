//! Every message of the protocol, as enums named by direction.
//!
//! A connection starts with the hello exchange (see `hello.rs`), whose [`Intent`] says which
//! conversation follows on the first bidirectional stream:
//!
//! | intent | initiator sends | responder sends |
//! |---|---|---|
//! | [`Intent::Attach`] | [`LeafToSupernode`] | [`SupernodeToLeaf`] |
//! | [`Intent::Link`] | [`SupernodeToSupernode`] | [`SupernodeToSupernode`] |
//! | [`Intent::Registry`] | [`ToListServer`] | [`ListServerToNode`] |
//! | [`Intent::Transfer`] | [`DownloaderToHolder`] | [`HolderToDownloader`] |
//! | [`Intent::Probe`] | [`ProbeRequest`] | [`ProbeReply`] |
//! | [`Intent::Directory`] | [`SupernodeToSupernode`] | [`SupernodeToSupernode`] |
//! | [`Intent::Rendezvous`] | [`ToRendezvous`] | [`RendezvousReply`] |
//! | [`Intent::Push`] | (the downloader opens transfer sessions) | |
//! | [`Intent::RelayLeg`] | [`RelayLegRequest`] | [`RendezvousReply`] |
//!
//! Sizes a peer controls are capped by the frame limit and by the `MAX_*` constants here;
//! receivers check them with the `validate` methods before acting on a message.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::nat::{Observed, RelayLegRequest, RendezvousReply, ToRendezvous, Via};
use super::{Message, WireError};
use crate::content::ContentId;
use crate::identity::NodeId;

/// Longest file name (bytes of UTF-8) carried in an entry or a hit.
pub const MAX_NAME_BYTES: usize = 255;
/// Most entries in one publish message; a leaf publishes a large folder in several.
pub const MAX_ENTRIES_PER_MESSAGE: usize = 2_000;
/// Most keywords in one query.
pub const MAX_QUERY_KEYWORDS: usize = 8;
/// Most bytes of one query keyword.
pub const MAX_KEYWORD_BYTES: usize = 64;
/// Most hits in one hits message.
pub const MAX_HITS_PER_MESSAGE: usize = 200;
/// Most holders listed for one hit.
pub const MAX_HOLDERS_PER_HIT: usize = 32;
/// Most supernodes in one list.
pub const MAX_SUPERNODES_PER_LIST: usize = 200;
/// Size in bytes of a keyword routing summary: a bit table of 2^18 bits. A supernode with
/// 500 leaves x 1,000 files holds some 50,000 distinct words, which fill about 17% of it, so
/// a one-word query is sent to a non-holder about one time in six, a two-word query one in
/// thirty-five. (Gnutella's QRP used 64K slots for a single leaf.)
pub const SUMMARY_BYTES: usize = 32 * 1024;
/// Most membership changes in one page from a list server.
pub const MAX_MEMBERS_PER_PAGE: usize = 2_000;
/// Most keywords in one directory publish.
pub const MAX_DIRECTORY_KEYWORDS: usize = 1_000;
/// Most holders an owner names for one keyword.
pub const MAX_DIRECTORY_HOLDERS: usize = 1_000;

/// Which part a node plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// An ordinary node, attached to one supernode.
    Leaf,
    /// A supernode: indexes leaves, routes queries.
    Supernode,
    /// The bootstrap list server.
    ListServer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Leaf => "leaf",
            Role::Supernode => "supernode",
            Role::ListServer => "list-server",
        })
    }
}

/// What the initiator of a connection wants; picks the message types that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Intent {
    /// A leaf attaches to a supernode.
    Attach,
    /// Two supernodes link in the overlay.
    Link,
    /// Register, heartbeat or ask a list server for supernodes.
    Registry,
    /// Download content from a holder.
    Transfer,
    /// Measure round-trip time and load (candidate probing, dial-back checks).
    Probe,
    /// A supernode reaching another that need not be its neighbour, for the keyword
    /// directory: publishes to owners, lookups, and queries asked directly.
    Directory,
    /// A downloader asks a supernode to connect it with an attached, firewalled leaf
    /// (`nat.rs`): [`ToRendezvous`], [`RendezvousReply`].
    Rendezvous,
    /// A holder dials a downloader back, as its supernode asked (a reverse connection or a
    /// hole punch). On welcome the downloader opens transfer sessions on this connection.
    Push,
    /// A holder opens its leg of a relayed session at its supernode: [`RelayLegRequest`],
    /// [`RendezvousReply`].
    RelayLeg,
}

/// A 128-bit random query id; a supernode drops an id it has already seen.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueryId(pub [u8; 16]);

impl QueryId {
    /// A fresh id from `rng`.
    pub fn random(rng: &mut impl rand::Rng) -> Self {
        Self(rng.random())
    }
}

impl fmt::Debug for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryId({})", hex::encode(self.0))
    }
}

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// One shared file as a leaf publishes it. The supernode derives the keywords from `name`
/// with the common tokenizer; a leaf cannot inject keywords its name does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileEntry {
    /// BLAKE3 of the file.
    pub content_id: ContentId,
    /// File name without directories.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

impl FileEntry {
    /// Checks the limits a receiver must enforce.
    pub fn validate(&self) -> Result<(), WireError> {
        validate_name(&self.name)
    }
}

fn validate_name(name: &str) -> Result<(), WireError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(WireError::Invalid(format!(
            "file name of {} bytes (1..={MAX_NAME_BYTES})",
            name.len()
        )));
    }
    Ok(())
}

/// A node that holds some content, and where to reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's node id (pin it when dialling).
    pub node_id: NodeId,
    /// The holder's address: the one its supernode observed, or an advertised one that
    /// passed a dial-back.
    pub addr: SocketAddr,
    /// `Some` for a firewalled holder (behind a NAT, not reachable at `addr` unasked): the
    /// supernode it is attached to, which connects downloaders to it (`nat.rs`).
    pub via: Option<Via>,
}

/// One search result: some content and every holder known for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryHit {
    /// BLAKE3 of the file.
    pub content_id: ContentId,
    /// The file name as a holder shares it.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The nodes that hold it.
    pub holders: Vec<Holder>,
}

impl QueryHit {
    /// Checks the limits a receiver must enforce.
    pub fn validate(&self) -> Result<(), WireError> {
        validate_name(&self.name)?;
        if self.holders.is_empty() || self.holders.len() > MAX_HOLDERS_PER_HIT {
            return Err(WireError::Invalid(format!(
                "hit with {} holders",
                self.holders.len()
            )));
        }
        Ok(())
    }
}

/// A keyword query as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Random id, the same on every hop.
    pub id: QueryId,
    /// Lower-case keywords; a hit must hold every one.
    pub keywords: Vec<String>,
    /// How many results the asker wants.
    pub want: u32,
}

impl Query {
    /// Checks the limits a receiver must enforce.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.keywords.is_empty() || self.keywords.len() > MAX_QUERY_KEYWORDS {
            return Err(WireError::Invalid(format!(
                "query with {} keywords (1..={MAX_QUERY_KEYWORDS})",
                self.keywords.len()
            )));
        }
        if let Some(k) = self
            .keywords
            .iter()
            .find(|k| k.is_empty() || k.len() > MAX_KEYWORD_BYTES)
        {
            return Err(WireError::Invalid(format!(
                "query keyword of {} bytes",
                k.len()
            )));
        }
        if self.want == 0 {
            return Err(WireError::Invalid("query wants 0 results".into()));
        }
        Ok(())
    }
}

/// A supernode's load as it reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Leaves attached now.
    pub leaves: u32,
    /// Most leaves it admits.
    pub capacity: u32,
    /// Supernode links it keeps.
    pub neighbors: u32,
}

/// One supernode in a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupernodeInfo {
    /// Its node id (the list's consumers pin it).
    pub node_id: NodeId,
    /// Its advertised address.
    pub addr: SocketAddr,
    /// Its last reported load.
    pub load: Load,
    /// Known from an earlier run and not yet confirmed by a fresh heartbeat.
    pub stale: bool,
}

/// A list of supernodes, as a list server or a supernode hands it out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupernodeList {
    /// When the list was made, in milliseconds since the Unix epoch.
    pub made_at_ms: u64,
    /// The supernodes, most recommended first.
    pub supernodes: Vec<SupernodeInfo>,
    /// The network needs more supernodes (all near capacity, or too few for the leaves).
    pub short_of_supernodes: bool,
}

impl SupernodeList {
    /// Checks the limits a receiver must enforce.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.supernodes.len() > MAX_SUPERNODES_PER_LIST {
            return Err(WireError::Invalid(format!(
                "list of {} supernodes",
                self.supernodes.len()
            )));
        }
        Ok(())
    }
}

/// Why a query ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryEnd {
    /// It found as many results as wanted.
    Enough,
    /// No more supernodes could match within the hop limit.
    Exhausted,
    /// The deadline passed.
    Deadline,
    /// The asker cancelled it.
    Cancelled,
}

/// Leaf to its supernode, after [`Intent::Attach`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LeafToSupernode {
    /// Adds entries to this leaf's part of the index.
    Publish { entries: Vec<FileEntry> },
    /// Removes entries from this leaf's part of the index.
    Unpublish { content_ids: Vec<ContentId> },
    /// Starts a search.
    Query(Query),
    /// Stops a search early.
    CancelQuery { id: QueryId },
    /// Asks for other supernodes (failover candidates).
    GetSupernodes { max: u16 },
    /// Keeps the session warm and measures RTT at the application level.
    Ping { nonce: u64 },
    /// The leaf is leaving; drop its entries now.
    Leaving,
}

/// Supernode to an attached leaf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SupernodeToLeaf {
    /// Results of a running query, streamed as they arrive.
    Hits { id: QueryId, hits: Vec<QueryHit> },
    /// No more results will come for this query.
    QueryDone { id: QueryId, end: QueryEnd },
    /// Other supernodes.
    Supernodes(SupernodeList),
    /// Answer to a ping.
    Pong { nonce: u64 },
    /// This supernode is stepping down or shutting down: go to one of these now.
    MoveTo { supernodes: Vec<SupernodeInfo> },
    /// A request was refused (over a limit, rate-limited) without ending the session.
    Refused { reason: String },
    /// The query was not run (rate-limited, invalid): nothing more comes for it.
    QueryRefused { id: QueryId, reason: String },
    /// What this supernode allows the leaf; sent right after the welcome, so the leaf paces
    /// its queries and chooses what to publish instead of being refused.
    Limits(LeafLimits),
    /// After each publish or unpublish: how many of the leaf's entries the index holds now,
    /// and, when the last change was refused, why (printable, capped by the receiver).
    Indexed {
        entries: u32,
        refused: Option<String>,
    },
    /// Where this supernode sees the leaf, and whether a dial-back reached it there.
    Reachability(Observed),
    /// A downloader asked for this leaf's content: dial `requester` at `addr` (where the
    /// supernode observed it), pinned to its id, with [`Intent::Push`].
    DialBack { requester: NodeId, addr: SocketAddr },
    /// A downloader that could not reach this leaf otherwise waits at the relay: open a
    /// leg with [`Intent::RelayLeg`] and this token.
    OpenRelay { requester: NodeId, token: u64 },
}

/// What a supernode allows each attached leaf ([`SupernodeToLeaf::Limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafLimits {
    /// One query is allowed per this many milliseconds on average...
    pub query_interval_ms: u32,
    /// ...and this many at once.
    pub query_burst: u32,
    /// Most entries the index keeps for one leaf; a publish past it is refused whole.
    pub max_entries: u32,
}

/// Between two linked supernodes, both ways, after [`Intent::Link`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SupernodeToSupernode {
    /// The sender's keyword routing summary: its bit table of [`SUMMARY_BYTES`], or, when
    /// shorter, the set bits as LEB128 gaps (`superpeer_supernode::KeywordSummary`).
    Summary { generation: u64, table: Vec<u8> },
    /// A query forwarded for the sender; `ttl` hops remain.
    Query { query: Query, ttl: u8 },
    /// Results for a query the receiver forwarded to the sender.
    Hits { id: QueryId, hits: Vec<QueryHit> },
    /// The sender has finished with a query.
    QueryDone { id: QueryId },
    /// Supernodes the sender knows (gossip), with its own load.
    Known {
        load: Load,
        supernodes: Vec<SupernodeInfo>,
    },
    /// Link keep-alive.
    Ping { nonce: u64 },
    /// Answer to a ping.
    Pong { nonce: u64 },
    /// To an owner of these keywords: the sender's index holds `count` entries with each
    /// (0: none any more). Taken again within the owner's expiry, or forgotten.
    DirPublish { keywords: Vec<KeywordCount> },
    /// The owner's answer to a publish: how many keywords it took, how many it does not
    /// own, and how many were past its caps.
    DirPublished {
        accepted: u32,
        not_owner: u32,
        capped: u32,
    },
    /// To an owner of `keyword`: which supernodes hold it?
    DirLookup { id: QueryId, keyword: String },
    /// The owner's answer: `holders` (the most entries first, at most
    /// [`MAX_DIRECTORY_HOLDERS`]) of `total` supernodes holding `keyword`. `owner` is false
    /// when the receiver does not own the keyword (the asker tries the next owner).
    DirHolders {
        id: QueryId,
        keyword: String,
        owner: bool,
        total: u32,
        holders: Vec<DirHolder>,
    },
}

/// One keyword of a directory publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeywordCount {
    pub keyword: String,
    pub count: u32,
}

/// A supernode holding a keyword, in an owner's answer. Addresses come from the asker's
/// own membership view, never from the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirHolder {
    pub node_id: NodeId,
    pub count: u32,
}

impl SupernodeToSupernode {
    /// Checks the sizes a peer controls in the directory messages (the others are checked
    /// where they are handled).
    pub fn validate_directory(&self) -> Result<(), WireError> {
        let keyword_ok = |k: &str| !k.is_empty() && k.len() <= MAX_KEYWORD_BYTES;
        match self {
            SupernodeToSupernode::DirPublish { keywords } => {
                if keywords.len() > MAX_DIRECTORY_KEYWORDS {
                    return Err(WireError::Invalid(format!(
                        "directory publish of {} keywords",
                        keywords.len()
                    )));
                }
                if keywords.iter().any(|k| !keyword_ok(&k.keyword)) {
                    return Err(WireError::Invalid("bad keyword in a publish".into()));
                }
            }
            SupernodeToSupernode::DirLookup { keyword, .. } if !keyword_ok(keyword) => {
                return Err(WireError::Invalid("bad keyword in a lookup".into()));
            }
            SupernodeToSupernode::DirHolders { holders, .. }
                if holders.len() > MAX_DIRECTORY_HOLDERS =>
            {
                return Err(WireError::Invalid(format!(
                    "{} holders for one keyword",
                    holders.len()
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// One change to the membership (every verified supernode), from a list server: a
/// supernode listed at `addr`, or gone (`addr` of `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    pub node_id: NodeId,
    pub addr: Option<SocketAddr>,
}

/// A page of the membership: a snapshot (every member, by node id, in pages) or the
/// changes since a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPage {
    /// The list server's instance: a new one (a restart) starts every receiver again.
    pub epoch: u64,
    /// The version this page brings the receiver to, once `more` is false.
    pub version: u64,
    /// A snapshot page: `changes` are members (after the `after` asked for), not changes.
    pub snapshot: bool,
    pub changes: Vec<MemberChange>,
    /// More follows: ask again (snapshot: after the last id; changes: since `version`).
    pub more: bool,
}

impl MemberPage {
    pub fn validate(&self) -> Result<(), WireError> {
        if self.changes.len() > MAX_MEMBERS_PER_PAGE {
            return Err(WireError::Invalid(format!(
                "member page of {} entries",
                self.changes.len()
            )));
        }
        Ok(())
    }
}

/// Any node to a list server, after [`Intent::Registry`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ToListServer {
    /// A supernode asks to be listed at `advertise` (dialled back before it is listed).
    Register { advertise: SocketAddr, load: Load },
    /// A registered supernode is still alive, with its current load.
    Heartbeat { load: Load },
    /// A supernode leaves the list (clean shutdown, stepping down).
    Unregister,
    /// Asks for up to `max` supernodes.
    GetSupernodes { max: u16 },
    /// Asks for the membership: the changes since `since` if `epoch` is the server's and
    /// it still has them, else a snapshot page of the members after `after`.
    GetMembers {
        epoch: u64,
        since: u64,
        after: Option<NodeId>,
    },
}

/// A list server's answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ListServerToNode {
    /// Registration taken; heartbeat this often. `listed` once the dial-back succeeded.
    Registered {
        heartbeat_interval_ms: u32,
        listed: bool,
    },
    /// The supernodes asked for.
    Supernodes(SupernodeList),
    /// The request was refused (rate limit, registry full, dial-back failed).
    Refused { reason: String },
    /// A page of the membership.
    Members(MemberPage),
}

/// A downloader to a holder, after [`Intent::Transfer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DownloaderToHolder {
    /// Does the holder have this content, and how large is it?
    Have { content_id: ContentId },
    /// Send bytes `start..start + len` with their BLAKE3 proof.
    Range {
        content_id: ContentId,
        start: u64,
        len: u64,
    },
}

/// A holder's answers to a downloader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HolderToDownloader {
    /// The holder has it, and it is this large.
    Have { content_id: ContentId, size: u64 },
    /// The holder does not share this content.
    NotFound { content_id: ContentId },
    /// All upload slots are taken; try again later.
    Busy { retry_after_ms: u32 },
    /// The verified range follows on this stream as raw bytes of `len` encoded bytes.
    RangeFollows {
        content_id: ContentId,
        start: u64,
        len: u64,
        encoded_len: u64,
    },
}

/// A prober to any node, after [`Intent::Probe`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProbeRequest {
    /// Echo this nonce.
    Ping { nonce: u64 },
}

/// A node's answer to a probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProbeReply {
    /// The nonce back, with the node's role and (for a supernode) its load.
    Pong {
        nonce: u64,
        role: Role,
        load: Option<Load>,
        /// Where the prober's connection comes from, as seen here: two supernodes seeing
        /// different ports tell a leaf its NAT maps per destination.
        observed: Option<SocketAddr>,
    },
}

/// Declares how many variants each message enum has in this version (see [`Message`]).
macro_rules! messages {
    ($($ty:ty => $n:expr),* $(,)?) => {
        $(impl Message for $ty {
            const VARIANTS: Option<u32> = Some($n);
        })*
    };
}

messages! {
    LeafToSupernode => 7,
    SupernodeToLeaf => 12,
    SupernodeToSupernode => 11,
    ToListServer => 5,
    ListServerToNode => 4,
    DownloaderToHolder => 2,
    HolderToDownloader => 4,
    ProbeRequest => 1,
    ProbeReply => 1,
    ToRendezvous => 2,
    RendezvousReply => 3,
    RelayLegRequest => 1,
}
