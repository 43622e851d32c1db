//! The directory across several cores with no links between them: what one supernode's
//! leaves share is found from any other through the owners, and hostile publishes are
//! refused. Cores are wired by a pump that does what the driver does with sessions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use superpeer_common::wire::{
    FileEntry, Holder, KeywordCount, LeafToSupernode, Query, QueryEnd, QueryId, SupernodeToLeaf,
    SupernodeToSupernode,
};
use superpeer_common::{ContentId, NodeId};

use crate::SessionId;
use crate::core::{Action, CoreConfig, SupernodeCore};
use crate::directory::MemberSet;

fn id(n: usize) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[0] = n as u8;
    bytes[1] = 0xd1;
    NodeId::from_bytes(bytes)
}

fn addr(n: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 1, n as u8], 5000))
}

/// First session ids of leaves, so they never meet the pump's.
const LEAF_SESSIONS: u64 = 1_000_000;

struct Net {
    now: Instant,
    cores: Vec<Option<SupernodeCore>>,
    /// (core, its session) -> (the other core, its session)
    wires: HashMap<(usize, SessionId), (usize, SessionId)>,
    next_session: u64,
    to_leaves: Vec<(usize, SessionId, SupernodeToLeaf)>,
    /// Directory messages carried, by kind.
    carried: HashMap<&'static str, usize>,
}

impl Net {
    fn new(n: usize) -> Self {
        let now = Instant::now();
        let cores = (0..n)
            .map(|i| {
                let me = Holder {
                    node_id: id(i),
                    addr: addr(i),
                    via: None,
                };
                Some(SupernodeCore::new(now, me, CoreConfig::default(), i as u64))
            })
            .collect();
        let mut net = Self {
            now,
            cores,
            wires: HashMap::new(),
            next_session: 1,
            to_leaves: Vec::new(),
            carried: HashMap::new(),
        };
        net.set_members();
        net
    }

    /// Every live core gets the live cores as members (as a list server fetch would).
    fn set_members(&mut self) {
        let live: Vec<usize> = (0..self.cores.len())
            .filter(|i| self.cores[*i].is_some())
            .collect();
        let members = Arc::new(MemberSet::new(live.iter().map(|i| (id(*i), addr(*i)))));
        let now = self.now;
        for i in &live {
            let core = self.cores[*i].as_mut().unwrap();
            let before: Vec<NodeId> = core.members().ids().copied().collect();
            let joined: Vec<NodeId> = members
                .ids()
                .filter(|m| !before.contains(m))
                .copied()
                .collect();
            let left: Vec<NodeId> = before
                .iter()
                .filter(|m| !members.contains(m))
                .copied()
                .collect();
            core.members_changed(now, members.clone(), &joined, &left);
        }
        self.settle();
    }

    fn core(&mut self, i: usize) -> &mut SupernodeCore {
        self.cores[i].as_mut().unwrap()
    }

    fn share(&mut self, i: usize, leaf: u64, names: &[&str]) {
        let now = self.now;
        let session = SessionId(LEAF_SESSIONS + leaf);
        let leaf_id = NodeId::from_bytes([leaf as u8; 32]);
        let core = self.core(i);
        core.leaf_attach(
            now,
            session,
            leaf_id,
            SocketAddr::from(([10, 0, 0, leaf as u8], 7000)),
        );
        let entries = names
            .iter()
            .map(|n| FileEntry {
                content_id: ContentId::of_bytes(n.as_bytes()),
                name: (*n).into(),
                size: 1,
            })
            .collect();
        core.leaf_message(now, session, LeafToSupernode::Publish { entries });
        self.settle();
    }

    /// A leaf of core `i` searches; returns the names found and how the query ended.
    fn search(
        &mut self,
        i: usize,
        leaf: u64,
        words: &[&str],
        n: u8,
    ) -> (Vec<String>, Option<QueryEnd>) {
        let now = self.now;
        let session = SessionId(LEAF_SESSIONS + leaf);
        let leaf_id = NodeId::from_bytes([leaf as u8; 32]);
        let core = self.core(i);
        core.leaf_attach(
            now,
            session,
            leaf_id,
            SocketAddr::from(([10, 0, 0, leaf as u8], 7000)),
        );
        let query = Query {
            id: QueryId([n; 16]),
            keywords: words.iter().map(|w| w.to_string()).collect(),
            want: 50,
        };
        core.leaf_message(now, session, LeafToSupernode::Query(query));
        self.to_leaves.clear();
        for _ in 0..40 {
            self.settle();
            if self.ended(QueryId([n; 16])).is_some() {
                break;
            }
            self.tick(Duration::from_millis(100));
        }
        let mut names: Vec<String> = self
            .to_leaves
            .iter()
            .filter_map(|(_, _, m)| match m {
                SupernodeToLeaf::Hits { hits, .. } => {
                    Some(hits.iter().map(|h| h.name.clone()).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect();
        names.sort();
        names.dedup();
        (names, self.ended(QueryId([n; 16])))
    }

    fn ended(&self, id: QueryId) -> Option<QueryEnd> {
        self.to_leaves.iter().find_map(|(_, _, m)| match m {
            SupernodeToLeaf::QueryDone { id: done, end } if *done == id => Some(*end),
            _ => None,
        })
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for core in self.cores.iter_mut().flatten() {
            core.handle_timeout(now, 0);
        }
        self.settle();
    }

    fn kill(&mut self, i: usize) {
        self.cores[i] = None;
        let now = self.now;
        let wires: Vec<((usize, SessionId), (usize, SessionId))> = self
            .wires
            .iter()
            .filter(|(a, b)| a.0 == i || b.0 == i)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (a, b) in wires {
            self.wires.remove(&a);
            self.wires.remove(&b);
            for (c, s) in [a, b] {
                if let Some(core) = self.cores[c].as_mut() {
                    core.link_down(now, s);
                }
            }
        }
        self.settle();
    }

    /// Carries every action until all are quiet.
    fn settle(&mut self) {
        let now = self.now;
        loop {
            let mut quiet = true;
            for i in 0..self.cores.len() {
                while let Some(action) = self.cores[i].as_mut().and_then(|c| c.poll_action()) {
                    quiet = false;
                    self.carry(now, i, action);
                }
            }
            if quiet {
                return;
            }
        }
    }

    fn carry(&mut self, now: Instant, i: usize, action: Action) {
        match action {
            Action::Connect { node_id, .. } => {
                let j = (0..self.cores.len()).find(|j| id(*j) == node_id).unwrap();
                let (mine, theirs) = (
                    SessionId(self.next_session),
                    SessionId(self.next_session + 1),
                );
                self.next_session += 2;
                let taken = self.cores[j]
                    .as_mut()
                    .is_some_and(|c| c.direct_up(now, theirs, id(i), false));
                if taken {
                    self.wires.insert((i, mine), (j, theirs));
                    self.wires.insert((j, theirs), (i, mine));
                    self.core(i).direct_up(now, mine, node_id, true);
                } else {
                    self.core(i).direct_failed(now, node_id);
                }
            }
            Action::ToNeighbor(session, msg) => {
                *self.carried.entry(kind(&msg)).or_default() += 1;
                if let Some(&(j, theirs)) = self.wires.get(&(i, session)) {
                    if let Some(core) = self.cores[j].as_mut() {
                        core.neighbor_message(now, theirs, msg);
                    }
                }
            }
            Action::ToLeaf(session, msg) => self.to_leaves.push((i, session, msg)),
            Action::Close { session, .. } => {
                if let Some((j, theirs)) = self.wires.remove(&(i, session)) {
                    self.wires.remove(&(j, theirs));
                    self.core(i).link_down(now, session);
                    if let Some(core) = self.cores[j].as_mut() {
                        core.link_down(now, theirs);
                    }
                }
            }
            Action::Dial { .. } => {}
        }
    }
}

fn kind(msg: &SupernodeToSupernode) -> &'static str {
    match msg {
        SupernodeToSupernode::DirPublish { .. } => "publish",
        SupernodeToSupernode::DirPublished { .. } => "published",
        SupernodeToSupernode::DirLookup { .. } => "lookup",
        SupernodeToSupernode::DirHolders { .. } => "holders",
        SupernodeToSupernode::Query { .. } => "query",
        SupernodeToSupernode::Hits { .. } => "hits",
        SupernodeToSupernode::QueryDone { .. } => "done",
        _ => "other",
    }
}

#[test]
fn files_on_unlinked_supernodes_are_found_through_the_owners() {
    let mut net = Net::new(20);
    net.share(7, 1, &["aurora borealis.flac"]);
    net.share(13, 2, &["aurora australis.flac", "something else.txt"]);
    // The owners are told within a publish batch.
    net.tick(Duration::from_secs(1));
    let (found, end) = net.search(0, 3, &["aurora"], 1);
    assert_eq!(found, vec!["aurora australis.flac", "aurora borealis.flac"]);
    assert_eq!(end, Some(QueryEnd::Exhausted));
    // Two words: only supernode 13 holds both, and only it is asked.
    let asked_before = net.carried.get("query").copied().unwrap_or(0);
    let (found, _) = net.search(0, 4, &["aurora", "australis"], 2);
    assert_eq!(found, vec!["aurora australis.flac"]);
    assert_eq!(net.carried["query"] - asked_before, 1);
    // A word nobody holds asks nobody directly.
    let asked_before = net.carried["query"];
    let (found, end) = net.search(5, 5, &["nothing"], 3);
    assert!(found.is_empty());
    assert_eq!(end, Some(QueryEnd::Exhausted));
    assert_eq!(net.carried["query"], asked_before);
    let status = net.core(0).directory_status();
    assert_eq!(status.members, 20);
    assert_eq!(status.lookups_sent, 6, "two owners a word");
}

#[test]
fn a_dead_supernodes_files_drop_out_and_its_keywords_move_to_new_owners() {
    let mut net = Net::new(12);
    for i in 1..12 {
        net.share(i, i as u64, &[&format!("track{i} common.ogg")]);
    }
    net.tick(Duration::from_secs(1));
    let (found, _) = net.search(0, 50, &["common"], 1);
    assert_eq!(found.len(), 11);
    // Kill three supernodes, including owners of "common".
    let owners: Vec<usize> = {
        let members = net.core(0).members().clone();
        let ids: Vec<NodeId> = members
            .owners("common")
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        (1..12).filter(|i| ids.contains(&id(*i))).collect()
    };
    let mut dead: Vec<usize> = owners.iter().copied().take(2).collect();
    dead.push(if dead.contains(&5) { 6 } else { 5 });
    for i in &dead {
        net.kill(*i);
    }
    net.set_members();
    net.tick(Duration::from_secs(1));
    let (found, _) = net.search(0, 51, &["common"], 2);
    let expected: Vec<String> = (1..12)
        .filter(|i| !dead.contains(i))
        .map(|i| format!("track{i} common.ogg"))
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(found, expected, "dead: {dead:?}");
}

#[test]
fn an_owner_refuses_what_it_does_not_own_strangers_and_floods() {
    let mut net = Net::new(10);
    let now = net.now;
    // A session from a supernode that is not a member is refused outright.
    assert!(!net.core(0).direct_up(now, SessionId(900), id(99), false));
    // A member publishes words core 0 does not own: refused as not its own.
    assert!(net.core(0).direct_up(now, SessionId(901), id(3), false));
    let members = net.core(0).members().clone();
    let foreign: Vec<KeywordCount> = (0..200)
        .map(|k| format!("w{k}"))
        .filter(|w| !members.owns(w, &id(0), 1))
        .take(50)
        .map(|keyword| KeywordCount { keyword, count: 1 })
        .collect();
    net.core(0).neighbor_message(
        now,
        SessionId(901),
        SupernodeToSupernode::DirPublish { keywords: foreign },
    );
    let replies: Vec<Action> = std::iter::from_fn(|| net.core(0).poll_action()).collect();
    assert!(replies.iter().any(|a| matches!(
        a,
        Action::ToNeighbor(
            _,
            SupernodeToSupernode::DirPublished {
                accepted: 0,
                not_owner: 50,
                ..
            }
        )
    )));
    // A flood past the keyword budget is capped, and memory stays within the store's caps.
    let owned: Vec<String> = (0..200_000)
        .map(|k| format!("k{k}"))
        .filter(|w| members.owns(w, &id(0), 1))
        .take(60_000)
        .collect();
    let mut capped = 0u32;
    for chunk in owned.chunks(1_000) {
        let keywords = chunk
            .iter()
            .map(|k| KeywordCount {
                keyword: k.clone(),
                count: 1,
            })
            .collect();
        net.core(0).neighbor_message(
            now,
            SessionId(901),
            SupernodeToSupernode::DirPublish { keywords },
        );
        for a in std::iter::from_fn(|| net.core(0).poll_action()) {
            if let Action::ToNeighbor(_, SupernodeToSupernode::DirPublished { capped: c, .. }) = a {
                capped += c;
            }
        }
    }
    let status = net.core(0).directory_status();
    assert!(capped >= 10_000, "capped {capped}");
    assert!(status.owned_pairs <= 50_000, "{status:?}");
    // A lookup from a stranger's session never reaches the store.
    let lookup = SupernodeToSupernode::DirLookup {
        id: QueryId([9; 16]),
        keyword: "k1".into(),
    };
    net.core(0).neighbor_message(now, SessionId(900), lookup);
    assert!(net.core(0).poll_action().is_none());
}
