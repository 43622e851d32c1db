//! The supernode's decisions in one state machine, with no I/O: leaves attach and publish,
//! queries are answered and routed, neighbours exchange summaries and gossip, the mesh
//! decides whom to dial. The driver feeds events in (`leaf_*`, `neighbor_*`, `link_*`,
//! `learn`, `handle_timeout`) and sends what [`SupernodeCore::poll_action`] returns.
//! The simulator drives this same type.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rustc_hash::{FxHashMap, FxHashSet};
use superpeer_common::wire::MAX_QUERY_KEYWORDS;
use superpeer_common::wire::{
    CloseCode, FileEntry, HelloReply, Holder, LeafLimits, LeafToSupernode, Load,
    MAX_ENTRIES_PER_MESSAGE, MAX_HITS_PER_MESSAGE, MAX_SUPERNODES_PER_LIST, Query, QueryId, Role,
    SupernodeInfo, SupernodeList, SupernodeToLeaf, SupernodeToSupernode, Via,
};
use superpeer_common::{ContentId, NodeId, TokenBucket, keywords};

use crate::SessionId;
use crate::directory::lookup::Lookups;
use crate::directory::peers::Peers;
use crate::directory::{DirectoryLimits, MemberSet, OwnerStore, Publisher};
use crate::index::{ContentIndex, IndexLimits};
use crate::leaves::{Admission, Leaves};
use crate::mesh::{LinkDecision, Mesh};
use crate::router::{Asker, Router, RouterConfig, RouterOutput, RouterStats, Started, Targets};
use crate::summary::KeywordSummary;

/// A neighbour's queries to us: per second, and burst.
pub const NEIGHBOR_QUERIES_PER_SECOND: f64 = 100.0;
pub const NEIGHBOR_QUERY_BURST: u32 = 400;
/// Queries one neighbour may have running here at once: an eighth of the router's 4,096,
/// so a neighbour cannot fill the table that leaves' searches need.
pub const MAX_RUNNING_PER_NEIGHBOR: usize = 512;
/// All of a neighbour's messages: past this it is broken or hostile, and the link closes.
pub const NEIGHBOR_MESSAGES_PER_SECOND: f64 = 2_000.0;
pub const NEIGHBOR_MESSAGE_BURST: u32 = 4_000;
/// A summary with more bits set than this share counts as matching nothing (an honest
/// supernode's, at 500 leaves of 10 files, sets a few percent).
pub const MAX_SUMMARY_FILL: f64 = 0.25;

/// Tunables of a supernode.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Most leaves admitted.
    pub max_leaves: usize,
    /// Most supernode links kept.
    pub max_neighbors: usize,
    /// Query routing.
    pub router: RouterConfig,
    /// Index caps.
    pub index: IndexLimits,
    /// Queries per leaf: (per second, burst).
    pub leaf_query_rate: (f64, u32),
    /// Most hops a query takes through the overlay when the mesh is not full.
    pub max_hops: u8,
    /// Most results one query may ask for.
    pub max_want: u32,
    /// Least time between two summaries sent to neighbours.
    pub summary_interval: Duration,
    /// How often neighbours are told our load and the supernodes we know.
    pub gossip_interval: Duration,
    /// Whether the keyword directory is used (publishing to owners, lookups); an owner
    /// answers either way.
    pub directory: bool,
    /// What this supernode keeps as an owner.
    pub directory_limits: DirectoryLimits,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            max_leaves: 500,
            max_neighbors: 32,
            router: RouterConfig::default(),
            index: IndexLimits::default(),
            leaf_query_rate: (5.0, 20),
            max_hops: 2,
            max_want: 500,
            summary_interval: Duration::from_millis(250),
            gossip_interval: Duration::from_secs(15),
            directory: true,
            directory_limits: DirectoryLimits::default(),
        }
    }
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send to a leaf.
    ToLeaf(SessionId, SupernodeToLeaf),
    /// Send to a neighbour.
    ToNeighbor(SessionId, SupernodeToSupernode),
    /// Close a session's connection.
    Close {
        session: SessionId,
        code: CloseCode,
        reason: String,
    },
    /// Open a link to a supernode; report with `link_up` or `dial_failed`.
    Dial { node_id: NodeId, addr: SocketAddr },
    /// Open a directory session to a member; report with `direct_up` (outgoing) or
    /// `direct_failed`. Messages for it come as `ToNeighbor` on that session.
    Connect { node_id: NodeId, addr: SocketAddr },
}

/// Counters and sizes, for `status` and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoreStatus {
    /// Attached leaves.
    pub leaves: usize,
    /// Linked supernodes.
    pub neighbors: Vec<NodeId>,
    /// Entries in the index.
    pub indexed: usize,
    /// Query messages received from neighbours (duplicates included).
    pub queries_from_neighbors: u64,
    /// Of those, answered at once with nothing: past the neighbour's budget.
    pub busy_for_neighbors: u64,
    /// Routing counters.
    pub router: RouterStats,
    /// The generation stamped on our latest keyword summary.
    pub summary_generation: u64,
    /// Whether the index has changed since the summary last sent to every neighbour (a new
    /// one goes out within `summary_interval`).
    pub summary_pending: bool,
    /// Per neighbour, the generation of its summary we hold (`None` before the first).
    pub neighbor_summaries: Vec<(NodeId, Option<u64>)>,
    /// The keyword directory.
    pub directory: DirectoryStatus,
}

#[derive(Debug)]
struct Neighbor {
    node_id: NodeId,
    summary: KeywordSummary,
    /// The generation stamped on the summary we hold, once one has come.
    summary_generation: Option<u64>,
    load: Load,
    /// The supernodes it last told us it is linked to (its gossip).
    links: FxHashSet<NodeId>,
    /// Its queries to us, and all its messages: budgets a neighbour cannot exceed.
    queries: TokenBucket,
    messages: TokenBucket,
}

/// A supernode's state.
#[derive(Debug)]
pub struct SupernodeCore {
    me: Holder,
    config: CoreConfig,
    leaves: Leaves,
    index: ContentIndex,
    mesh: Mesh,
    router: Router,
    neighbors: FxHashMap<SessionId, Neighbor>,
    /// Index keyword generation our `summary` was built from.
    summary_built: Option<u64>,
    /// Index keyword generation last broadcast to every neighbour, and when.
    summary_broadcast: Option<(u64, Instant)>,
    summary: KeywordSummary,
    summaries_sent: u64,
    last_gossip: Instant,
    unix_ms: u64,
    queries_from_neighbors: u64,
    busy_for_neighbors: u64,
    actions: VecDeque<Action>,
    rng: StdRng,
    /// The keyword directory: every live supernode, what we own, what we told the owners,
    /// the lookups running, and the sessions to members.
    members: Arc<MemberSet>,
    store: OwnerStore,
    publisher: Publisher,
    lookups: Lookups,
    peers: Peers,
    directory_stats: DirectoryStatus,
    last_publish: Instant,
    last_store_expiry: Instant,
}

impl SupernodeCore {
    /// A supernode that others reach at `me.addr`. `seed` drives every random choice.
    pub fn new(now: Instant, me: Holder, config: CoreConfig, seed: u64) -> Self {
        Self {
            me,
            leaves: Leaves::new(config.max_leaves, config.leaf_query_rate),
            index: ContentIndex::new(config.index),
            mesh: Mesh::new(me.node_id, config.max_neighbors),
            router: Router::new(config.router.clone()),
            neighbors: FxHashMap::default(),
            summary_built: None,
            summary_broadcast: None,
            summary: KeywordSummary::empty(),
            summaries_sent: 0,
            last_gossip: now,
            unix_ms: 0,
            queries_from_neighbors: 0,
            busy_for_neighbors: 0,
            actions: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            members: Arc::new(MemberSet::default()),
            store: OwnerStore::new(now, config.directory_limits.clone()),
            publisher: Publisher::new(now, me.node_id),
            lookups: Lookups::default(),
            peers: Peers::default(),
            directory_stats: DirectoryStatus::default(),
            last_publish: now,
            last_store_expiry: now,
            config,
        }
    }

    /// Who we are and where others reach us.
    pub fn me(&self) -> Holder {
        self.me
    }

    /// Our load as the list server and neighbours see it.
    pub fn load(&self) -> Load {
        Load {
            leaves: u32::try_from(self.leaves.len()).unwrap_or(u32::MAX),
            capacity: u32::try_from(self.leaves.capacity()).unwrap_or(u32::MAX),
            neighbors: u32::try_from(self.mesh.neighbor_count()).unwrap_or(u32::MAX),
        }
    }

    /// Counters and sizes.
    pub fn status(&self) -> CoreStatus {
        CoreStatus {
            leaves: self.leaves.len(),
            neighbors: self.mesh.neighbors().map(|(id, _)| id).collect(),
            indexed: self.index.len(),
            queries_from_neighbors: self.queries_from_neighbors,
            busy_for_neighbors: self.busy_for_neighbors,
            router: self.router.stats(),
            summary_generation: self.summaries_sent,
            summary_pending: self.summary_broadcast.map(|(g, _)| g)
                != Some(self.index.keyword_generation()),
            neighbor_summaries: self
                .neighbors
                .values()
                .map(|n| (n.node_id, n.summary_generation))
                .collect(),
            directory: self.directory_status(),
        }
    }

    /// Other supernodes to hand out (to leaves, or when refusing one).
    pub fn supernode_list(&self, max: usize) -> SupernodeList {
        SupernodeList {
            made_at_ms: self.unix_ms,
            supernodes: self.mesh.list(max.min(MAX_SUPERNODES_PER_LIST), None),
            short_of_supernodes: false,
        }
    }

    // ----- leaves -----

    /// Whether the leaf on `session` is firewalled: `via` (this supernode) when downloaders
    /// must ask us to reach it, `None` when they can dial it. Its hits say so from now on.
    pub fn leaf_reachability(&mut self, session: SessionId, via: Option<Via>) {
        if let Some(leaf) = self.leaves.get_mut(session) {
            leaf.via = via;
            let holder = leaf.holder();
            self.index.update_holder(holder);
        }
    }

    /// A leaf asks to attach on `session`; `addr` is where downloaders reach it.
    pub fn leaf_attach(
        &mut self,
        now: Instant,
        session: SessionId,
        node_id: NodeId,
        addr: SocketAddr,
    ) -> HelloReply {
        match self.leaves.admit(now, session, node_id, addr) {
            Admission::Admitted { replaced } => {
                if let Some(old) = replaced {
                    self.drop_leaf(now, old);
                    self.close(
                        old,
                        CloseCode::Replaced,
                        "a newer session of this node replaced this one",
                    );
                }
                // Goes out right after the welcome (the outbox is written after the reply).
                let limits = self.leaf_limits();
                self.send_leaf(session, SupernodeToLeaf::Limits(limits));
                HelloReply::Welcome {
                    role: Role::Supernode,
                }
            }
            Admission::Full => {
                let try_instead = self
                    .mesh
                    .list(10, None)
                    .into_iter()
                    .filter(|s| s.load.leaves < s.load.capacity)
                    .collect();
                HelloReply::Refused {
                    reason: "this supernode is full".into(),
                    try_instead,
                }
            }
        }
    }

    /// A message from an attached leaf.
    pub fn leaf_message(&mut self, now: Instant, session: SessionId, msg: LeafToSupernode) {
        let Some(leaf) = self.leaves.get_mut(session) else {
            return;
        };
        if !leaf.messages.try_take(now) {
            // A leaf that floods us is dropped, and its files with it when the driver
            // reports the session gone.
            return self.close(session, CloseCode::Overloaded, "too many messages");
        }
        let holder = leaf.holder();
        match msg {
            LeafToSupernode::Publish { entries } => {
                if entries.len() > MAX_ENTRIES_PER_MESSAGE {
                    return self.violation(session, "too many entries in one publish");
                }
                let refused = self.index.publish(holder, &entries).err();
                self.send_indexed(session, holder.node_id, refused.map(|e| e.to_string()));
            }
            LeafToSupernode::Unpublish { content_ids } => {
                if content_ids.len() > MAX_ENTRIES_PER_MESSAGE {
                    return self.violation(session, "too many ids in one unpublish");
                }
                self.index.unpublish(holder.node_id, &content_ids);
                self.send_indexed(session, holder.node_id, None);
            }
            LeafToSupernode::Query(query) => {
                let allowed = leaf.queries.try_take(now);
                self.leaf_query(now, session, query, allowed);
            }
            LeafToSupernode::CancelQuery { id } => self.router.cancel(session, id),
            LeafToSupernode::GetSupernodes { max } => {
                let list = self.supernode_list(usize::from(max));
                self.send_leaf(session, SupernodeToLeaf::Supernodes(list));
            }
            LeafToSupernode::Ping { nonce } => {
                self.send_leaf(session, SupernodeToLeaf::Pong { nonce })
            }
            LeafToSupernode::Leaving => {
                self.drop_leaf(now, session);
                self.close(session, CloseCode::Normal, "goodbye");
            }
        }
    }

    /// What every attached leaf is allowed (sent to it as [`SupernodeToLeaf::Limits`]).
    pub fn leaf_limits(&self) -> LeafLimits {
        let (per_second, burst) = self.config.leaf_query_rate;
        let interval_ms = if per_second > 0.0 {
            (1000.0 / per_second).ceil().min(f64::from(u32::MAX)) as u32
        } else {
            u32::MAX
        };
        LeafLimits {
            query_interval_ms: interval_ms,
            query_burst: burst,
            max_entries: u32::try_from(self.config.index.max_entries_per_holder)
                .unwrap_or(u32::MAX),
        }
    }

    /// Tells a leaf how many of its entries the index holds after a change, and why a
    /// refused change was refused.
    fn send_indexed(&mut self, session: SessionId, holder: NodeId, refused: Option<String>) {
        let entries = u32::try_from(self.index.entries_of(&holder)).unwrap_or(u32::MAX);
        self.send_leaf(session, SupernodeToLeaf::Indexed { entries, refused });
    }

    fn leaf_query(&mut self, now: Instant, session: SessionId, query: Query, allowed: bool) {
        let id = query.id;
        let refuse = |core: &mut Self, reason: String| {
            core.send_leaf(session, SupernodeToLeaf::QueryRefused { id, reason });
        };
        if !allowed {
            return refuse(self, "too many queries; slow down".into());
        }
        if let Err(e) = query.validate() {
            return refuse(self, e.to_string());
        }
        let query = match self.normalize(query) {
            Ok(query) => query,
            Err(reason) => return refuse(self, reason),
        };
        // In a full mesh every supernode is one hop away: relays need not relay further.
        let ttl = if self.mesh.known_count() <= self.mesh.neighbor_count() {
            1
        } else {
            self.config.max_hops
        };
        self.start_query(now, query, Asker::Leaf(session), ttl);
    }

    /// A query of the supernode's own user ([`SessionId::LOCAL`]): routed like a leaf's,
    /// answered with `Action::ToLeaf(SessionId::LOCAL, ..)`. Not rate-limited: the user is
    /// local.
    pub fn local_query(&mut self, now: Instant, query: Query) {
        self.leaf_query(now, SessionId::LOCAL, query, true);
    }

    /// Keywords through the common tokenizer (lower case, no punctuation); `want` capped.
    /// Refused when nothing searchable is left, or when splitting made more words than a
    /// query may carry (forwarded, it would break the neighbours' limit).
    fn normalize(&self, mut query: Query) -> Result<Query, String> {
        let words = keywords(&query.keywords.join(" "));
        if words.is_empty() {
            return Err("the query has no searchable words".into());
        }
        if words.len() > MAX_QUERY_KEYWORDS {
            return Err(format!(
                "the query has {} words; at most {MAX_QUERY_KEYWORDS}",
                words.len()
            ));
        }
        query.keywords = words;
        query.want = query.want.min(self.config.max_want);
        Ok(query)
    }

    fn start_query(&mut self, now: Instant, query: Query, asker: Asker, ttl: u8) {
        let local = self.index.query(&query.keywords, query.want as usize);
        let from = match asker {
            Asker::Neighbor(s) => self.neighbors.get(&s).map(|n| (s, &n.links)),
            Asker::Leaf(_) => None,
        };
        // A relay leaves out the asker and the asker's own links: the asker asks those
        // itself, so a copy from us would only be a duplicate.
        let skip = |s: &SessionId, n: &Neighbor| {
            from.is_some_and(|(asker, links)| *s == asker || links.contains(&n.node_id))
        };
        // And of the asker's links that reach a supernode beyond, only one (drawn per
        // query, the same draw on every one of them) passes the query on to it.
        let rank = |id: &NodeId| relay_rank(&query.id, id);
        let mine = rank(&self.me.node_id);
        let ours = |n: &Neighbor| {
            from.is_none_or(|(_, links)| {
                !n.links.iter().any(|r| links.contains(r) && rank(r) < mine)
            })
        };
        let mut candidates: Vec<(u32, SessionId)> = self
            .neighbors
            .iter()
            .filter(|(s, n)| !skip(s, n) && n.summary.may_contain_all(&query.keywords) && ours(n))
            .map(|(s, n)| (n.load.leaves, *s))
            .collect();
        // Most promising first: more leaves, more content. Session id breaks ties stably.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let candidates = candidates.into_iter().map(|(_, s)| s).collect();
        let relays = if ttl >= 2 {
            self.relays(|s, n| skip(s, n))
        } else {
            Vec::new()
        };
        // Our own leaf's query also asks the owners of its words, unless our index has
        // enough already.
        let directory =
            matches!(asker, Asker::Leaf(_)) && self.wants_directory(local.len(), query.want);
        let targets = Targets {
            candidates,
            relays,
            directory,
        };
        let (id, keywords) = (query.id, query.keywords.clone());
        let started = self
            .router
            .start_routed(now, query, asker, local, targets, ttl);
        if directory && started == Started::Running && self.router.is_active(&id) {
            self.start_lookups(now, id, &keywords);
        }
        self.drain_router(now);
    }

    /// Neighbours linked to supernodes we are not linked to, those reaching the most
    /// first: the second hop of a query that our direct neighbours could not satisfy.
    fn relays(&self, skip: impl Fn(&SessionId, &Neighbor) -> bool) -> Vec<SessionId> {
        let mine: FxHashSet<NodeId> = self.neighbors.values().map(|n| n.node_id).collect();
        let mut relays: Vec<(usize, SessionId)> = self
            .neighbors
            .iter()
            .filter(|(s, n)| !skip(s, n))
            .map(|(s, n)| {
                let beyond = n
                    .links
                    .iter()
                    .filter(|id| **id != self.me.node_id && !mine.contains(*id))
                    .count();
                (beyond, *s)
            })
            .filter(|(beyond, _)| *beyond > 0)
            .collect();
        relays.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        relays.into_iter().map(|(_, s)| s).collect()
    }

    /// A leaf's session ended: its files leave the index at once.
    pub fn leaf_gone(&mut self, now: Instant, session: SessionId) {
        self.drop_leaf(now, session);
    }

    fn drop_leaf(&mut self, now: Instant, session: SessionId) {
        if let Some(leaf) = self.leaves.remove(session) {
            self.index.remove_holder(leaf.node_id);
        }
        self.router.session_gone(now, session);
        self.drain_router(now);
    }

    // ----- our own shares -----

    /// Files this supernode shares itself.
    pub fn publish_own(
        &mut self,
        entries: &[FileEntry],
    ) -> Result<usize, crate::index::IndexError> {
        self.index.publish(self.me, entries)
    }

    /// Files this supernode no longer shares.
    pub fn unpublish_own(&mut self, content_ids: &[ContentId]) -> usize {
        self.index.unpublish(self.me.node_id, content_ids)
    }

    // ----- neighbours -----

    /// A link to supernode `node_id` is up on `session`, dialled by `initiator`. Returns
    /// false if it is to be closed (a duplicate, or no room).
    pub fn link_up(
        &mut self,
        now: Instant,
        session: SessionId,
        node_id: NodeId,
        initiator: NodeId,
        addr: Option<SocketAddr>,
    ) -> bool {
        match self.mesh.link_up(now, node_id, session, initiator, addr) {
            LinkDecision::Refuse => false,
            LinkDecision::Keep { close } => {
                if let Some(old) = close {
                    self.forget_neighbor(now, old);
                    self.close(old, CloseCode::Replaced, "duplicate link");
                }
                self.neighbors.insert(
                    session,
                    Neighbor {
                        node_id,
                        summary: KeywordSummary::empty(),
                        summary_generation: None,
                        load: Load::default(),
                        links: FxHashSet::default(),
                        queries: TokenBucket::new(
                            now,
                            NEIGHBOR_QUERIES_PER_SECOND,
                            NEIGHBOR_QUERY_BURST,
                        ),
                        messages: TokenBucket::new(
                            now,
                            NEIGHBOR_MESSAGES_PER_SECOND,
                            NEIGHBOR_MESSAGE_BURST,
                        ),
                    },
                );
                // A new neighbour needs our summary and our view of the network now. The
                // others get a changed summary from the next broadcast, not from this.
                self.refresh_summary();
                let table = self.summary.to_bytes();
                self.send_neighbor(
                    session,
                    SupernodeToSupernode::Summary {
                        generation: self.summaries_sent,
                        table,
                    },
                );
                // Every neighbour hears of the new link at once, so the mesh closes
                // transitively instead of waiting for the next list refresh.
                let neighbors: Vec<(SessionId, NodeId)> = self
                    .neighbors
                    .iter()
                    .map(|(s, n)| (*s, n.node_id))
                    .collect();
                for (to_session, to_node) in neighbors {
                    let known = self.gossip_message(to_node);
                    self.send_neighbor(to_session, known);
                }
                true
            }
        }
    }

    /// A dial asked for with [`Action::Dial`] failed.
    pub fn dial_failed(&mut self, now: Instant, node_id: NodeId) {
        self.mesh.dial_failed(now, node_id);
    }

    /// A neighbour's link, or a directory session, ended.
    pub fn link_down(&mut self, now: Instant, session: SessionId) {
        if self.peers.contains(session) {
            return self.direct_gone(now, session);
        }
        self.forget_neighbor(now, session);
    }

    fn forget_neighbor(&mut self, now: Instant, session: SessionId) {
        if let Some(n) = self.neighbors.remove(&session) {
            self.mesh.link_down(now, n.node_id, session);
        }
        self.router.session_gone(now, session);
        self.drain_router(now);
    }

    /// A message from a neighbour.
    pub fn neighbor_message(
        &mut self,
        now: Instant,
        session: SessionId,
        msg: SupernodeToSupernode,
    ) {
        let Some(neighbor) = self.neighbors.get_mut(&session) else {
            return self.direct_message(now, session, msg);
        };
        if !neighbor.messages.try_take(now) {
            return self.violation(session, "too many messages");
        }
        match msg {
            SupernodeToSupernode::Summary { generation, table } => {
                match KeywordSummary::from_bytes(table) {
                    // A summary this dense matches nearly every query, so it would put its
                    // sender first for all of them: it counts as matching nothing (the
                    // neighbour is still reached as a relay).
                    Ok(summary) if summary.fill_ratio() > MAX_SUMMARY_FILL => {
                        neighbor.summary = KeywordSummary::empty();
                        neighbor.summary_generation = Some(generation);
                    }
                    Ok(summary) => {
                        neighbor.summary = summary;
                        neighbor.summary_generation = Some(generation);
                    }
                    Err(e) => self.violation(session, &e.to_string()),
                }
            }
            SupernodeToSupernode::Query { query, ttl } => {
                self.queries_from_neighbors += 1;
                if let Err(e) = query.validate() {
                    return self.violation(session, &e.to_string());
                }
                let id = query.id;
                // Past its budget (a rate, and a share of the queries we run), a neighbour's
                // query is answered at once with nothing: leaves' searches keep their room.
                let over_rate = !neighbor.queries.try_take(now);
                if over_rate || self.router.running_for(session) >= MAX_RUNNING_PER_NEIGHBOR {
                    self.busy_for_neighbors += 1;
                    return self.send_neighbor(session, SupernodeToSupernode::QueryDone { id });
                }
                match self.normalize(query) {
                    Ok(query) => {
                        let ttl = ttl.min(self.config.max_hops);
                        self.start_query(now, query, Asker::Neighbor(session), ttl);
                    }
                    // Another version may split words differently: not worth a link.
                    Err(_) => self.send_neighbor(session, SupernodeToSupernode::QueryDone { id }),
                }
            }
            SupernodeToSupernode::Hits { id, hits } => {
                if let Some(bad) = bad_hits(&hits) {
                    return self.violation(session, &bad);
                }
                let unmatched = self.router.handle_hits(now, session, id, hits);
                self.drain_router(now);
                if unmatched > 0 {
                    self.violation(session, "hits that do not match the query");
                }
            }
            SupernodeToSupernode::QueryDone { id } => {
                self.router.handle_done(now, session, id);
                self.drain_router(now);
            }
            SupernodeToSupernode::Known { load, supernodes } => {
                if supernodes.len() > MAX_SUPERNODES_PER_LIST {
                    return self.violation(session, "too many supernodes in gossip");
                }
                neighbor.load = crate::mesh::clamp(load);
                let node_id = neighbor.node_id;
                neighbor.links = supernodes
                    .iter()
                    .map(|s| s.node_id)
                    .filter(|id| *id != node_id)
                    .collect();
                self.mesh.update_load(now, node_id, load);
                self.mesh.learn_gossip(now, node_id, &supernodes);
            }
            SupernodeToSupernode::Ping { nonce } => {
                self.send_neighbor(session, SupernodeToSupernode::Pong { nonce })
            }
            SupernodeToSupernode::Pong { .. } => {}
            // The directory has its own sessions.
            SupernodeToSupernode::DirPublish { .. }
            | SupernodeToSupernode::DirPublished { .. }
            | SupernodeToSupernode::DirLookup { .. }
            | SupernodeToSupernode::DirHolders { .. } => {
                self.violation(session, "a directory message on a link")
            }
        }
    }

    /// Supernodes a list server listed (after its dial-back), or the operator named.
    pub fn learn(&mut self, now: Instant, infos: &[SupernodeInfo]) {
        self.mesh.learn(now, infos);
    }

    // ----- the clock -----

    /// Runs timers: query rounds and deadlines, summaries, gossip, dials. `unix_ms` is the
    /// wall clock, stamped on lists handed out.
    pub fn handle_timeout(&mut self, now: Instant, unix_ms: u64) {
        self.unix_ms = unix_ms;
        self.router.handle_timeout(now);
        self.drain_router(now);
        let generation = self.index.keyword_generation();
        let changed = self.summary_broadcast.is_none_or(|(g, _)| g != generation);
        let due = self
            .summary_broadcast
            .is_none_or(|(_, at)| now >= at + self.config.summary_interval);
        if changed && due && !self.neighbors.is_empty() {
            self.refresh_summary();
            self.summary_broadcast = Some((generation, now));
            let table = self.summary.to_bytes();
            let sessions: Vec<SessionId> = self.neighbors.keys().copied().collect();
            for session in sessions {
                let msg = SupernodeToSupernode::Summary {
                    generation: self.summaries_sent,
                    table: table.clone(),
                };
                self.send_neighbor(session, msg);
            }
        }
        if now >= self.last_gossip + self.config.gossip_interval {
            self.last_gossip = now;
            let neighbors: Vec<(SessionId, NodeId)> = self
                .neighbors
                .iter()
                .map(|(s, n)| (*s, n.node_id))
                .collect();
            for (session, node_id) in neighbors {
                let msg = self.gossip_message(node_id);
                self.send_neighbor(session, msg);
            }
            self.mesh.expire(now);
        }
        for (node_id, addr) in self.mesh.poll_dials(now, &mut self.rng) {
            self.actions.push_back(Action::Dial { node_id, addr });
        }
        self.directory_timeout(now);
    }

    /// When [`SupernodeCore::handle_timeout`] must run next (at the latest).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let gossip = self.last_gossip + self.config.gossip_interval;
        let next = self.router.poll_timeout().map_or(gossip, |t| t.min(gossip));
        Some(self.directory_poll_timeout().map_or(next, |t| t.min(next)))
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ----- helpers -----

    /// Rebuilds our summary if the index's words changed since it was built.
    fn refresh_summary(&mut self) {
        let generation = self.index.keyword_generation();
        if self.summary_built == Some(generation) {
            return;
        }
        let mut summary = KeywordSummary::from_keywords(self.index.keywords());
        for id in self.index.content_keywords() {
            summary.insert(&id);
        }
        self.summary = summary;
        self.summaries_sent += 1;
        self.summary_built = Some(generation);
    }

    /// Our load and the supernodes we are linked to now: only first-hand knowledge, so two
    /// supernodes cannot keep a dead third alive forever by telling each other about it.
    fn gossip_message(&self, to: NodeId) -> SupernodeToSupernode {
        let mut supernodes = self.mesh.list_linked(50, Some(to));
        supernodes.push(SupernodeInfo {
            node_id: self.me.node_id,
            addr: self.me.addr,
            load: self.load(),
            stale: false,
        });
        SupernodeToSupernode::Known {
            load: self.load(),
            supernodes,
        }
    }

    fn drain_router(&mut self, now: Instant) {
        while let Some(out) = self.router.poll_output() {
            match out {
                RouterOutput::ToLeaf(s, m) => self.actions.push_back(Action::ToLeaf(s, m)),
                RouterOutput::ToNeighbor(s, m) => self.actions.push_back(Action::ToNeighbor(s, m)),
                RouterOutput::ToMember(node, m) => self.send_member(now, node, m),
            }
        }
    }

    fn send_leaf(&mut self, session: SessionId, msg: SupernodeToLeaf) {
        self.actions.push_back(Action::ToLeaf(session, msg));
    }

    fn send_neighbor(&mut self, session: SessionId, msg: SupernodeToSupernode) {
        self.actions.push_back(Action::ToNeighbor(session, msg));
    }

    fn close(&mut self, session: SessionId, code: CloseCode, reason: &str) {
        self.actions.push_back(Action::Close {
            session,
            code,
            reason: reason.to_owned(),
        });
    }

    /// A peer broke the protocol: its session is closed (and forgotten when the driver
    /// reports it gone).
    fn violation(&mut self, session: SessionId, reason: &str) {
        self.close(session, CloseCode::ProtocolViolation, reason);
    }
}

/// Why a neighbour's or member's `Hits` break the protocol, if they do: more than a
/// message may carry, or a hit that is not valid.
fn bad_hits(hits: &[superpeer_common::wire::QueryHit]) -> Option<String> {
    if hits.len() > MAX_HITS_PER_MESSAGE {
        return Some("too many hits in one message".into());
    }
    hits.iter()
        .find_map(|h| h.validate().err())
        .map(|e| e.to_string())
}

/// Where relay `node` ranks for query `id`: of the relays that can pass a query on to the
/// same supernode, the lowest rank does; every supernode computes the same ranks.
///
/// The rank is a keyed hash of the node id under a key made of the query id (random, and
/// unknown before the query), so each query draws the relays in a fresh random order. A
/// plain `query id XOR node id` would draw the node closest to the query id in XOR
/// distance, and a node whose id sits apart from the others' (ground to a rare prefix)
/// would own a large part of the id space and be drawn far more often.
fn relay_rank(id: &QueryId, node: &NodeId) -> [u8; 16] {
    let mut key = [0u8; 32];
    let (query, domain) = key.split_at_mut(16);
    query.copy_from_slice(&id.0);
    domain.copy_from_slice(b"superpeer relay.");
    let hash = blake3::keyed_hash(&key, node.as_bytes());
    let mut rank = [0u8; 16];
    rank.copy_from_slice(&hash.as_bytes()[..16]);
    rank
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[path = "core_directory.rs"]
mod directory_glue;
pub use directory_glue::DirectoryStatus;
