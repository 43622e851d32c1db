//! Property tests: every message survives encode → frame → decode unchanged.

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::content::ContentId;
use crate::identity::NodeId;

fn round_trip<T: Message + PartialEq + Debug>(msg: &T) -> Result<(), TestCaseError> {
    let frame = encode(msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    prop_assert_eq!(len, frame.len() - LENGTH_PREFIX);
    let back: T =
        decode(&frame[LENGTH_PREFIX..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, msg);
    Ok(())
}

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 32]>().prop_map(NodeId::from_bytes)
}
fn content_id() -> impl Strategy<Value = ContentId> {
    any::<[u8; 32]>().prop_map(ContentId::from_bytes)
}
fn query_id() -> impl Strategy<Value = QueryId> {
    any::<[u8; 16]>().prop_map(QueryId)
}
fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}
fn name() -> impl Strategy<Value = String> {
    "\\PC{1,40}"
}
fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Leaf),
        Just(Role::Supernode),
        Just(Role::ListServer)
    ]
}
fn intent() -> impl Strategy<Value = Intent> {
    prop_oneof![
        Just(Intent::Attach),
        Just(Intent::Link),
        Just(Intent::Registry),
        Just(Intent::Transfer),
        Just(Intent::Probe),
        Just(Intent::Directory)
    ]
}
fn file_entry() -> impl Strategy<Value = FileEntry> {
    (content_id(), name(), any::<u64>()).prop_map(|(content_id, name, size)| FileEntry {
        content_id,
        name,
        size,
    })
}
fn via() -> impl Strategy<Value = Via> {
    (node_id(), socket_addr()).prop_map(|(node_id, addr)| Via { node_id, addr })
}
fn holder() -> impl Strategy<Value = Holder> {
    (node_id(), socket_addr(), proptest::option::of(via()))
        .prop_map(|(node_id, addr, via)| Holder { node_id, addr, via })
}
fn to_rendezvous() -> impl Strategy<Value = ToRendezvous> {
    prop_oneof![
        node_id().prop_map(|holder| ToRendezvous::Reach { holder }),
        node_id().prop_map(|holder| ToRendezvous::Relay { holder }),
    ]
}
fn rendezvous_reply() -> impl Strategy<Value = RendezvousReply> {
    prop_oneof![
        (socket_addr(), socket_addr())
            .prop_map(|(holder, you)| RendezvousReply::Dialling { holder, you }),
        Just(RendezvousReply::Relaying),
        name().prop_map(|reason| RendezvousReply::Refused { reason }),
    ]
}
fn hit() -> impl Strategy<Value = QueryHit> {
    (content_id(), name(), any::<u64>(), vec(holder(), 1..4)).prop_map(
        |(content_id, name, size, holders)| QueryHit {
            content_id,
            name,
            size,
            holders,
        },
    )
}
fn query() -> impl Strategy<Value = Query> {
    (query_id(), vec("[a-z0-9]{1,10}", 1..5), any::<u32>()).prop_map(|(id, keywords, want)| Query {
        id,
        keywords,
        want,
    })
}
fn load() -> impl Strategy<Value = Load> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(leaves, capacity, neighbors)| Load {
        leaves,
        capacity,
        neighbors,
    })
}
fn supernode_info() -> impl Strategy<Value = SupernodeInfo> {
    (node_id(), socket_addr(), load(), any::<bool>()).prop_map(|(node_id, addr, load, stale)| {
        SupernodeInfo {
            node_id,
            addr,
            load,
            stale,
        }
    })
}
fn supernode_list() -> impl Strategy<Value = SupernodeList> {
    (any::<u64>(), vec(supernode_info(), 0..5), any::<bool>()).prop_map(
        |(made_at_ms, supernodes, short)| SupernodeList {
            made_at_ms,
            supernodes,
            short_of_supernodes: short,
        },
    )
}
fn query_end() -> impl Strategy<Value = QueryEnd> {
    prop_oneof![
        Just(QueryEnd::Enough),
        Just(QueryEnd::Exhausted),
        Just(QueryEnd::Deadline),
        Just(QueryEnd::Cancelled)
    ]
}

fn leaf_to_supernode() -> impl Strategy<Value = LeafToSupernode> {
    prop_oneof![
        vec(file_entry(), 0..5).prop_map(|entries| LeafToSupernode::Publish { entries }),
        vec(content_id(), 0..5).prop_map(|content_ids| LeafToSupernode::Unpublish { content_ids }),
        query().prop_map(LeafToSupernode::Query),
        query_id().prop_map(|id| LeafToSupernode::CancelQuery { id }),
        any::<u16>().prop_map(|max| LeafToSupernode::GetSupernodes { max }),
        any::<u64>().prop_map(|nonce| LeafToSupernode::Ping { nonce }),
        Just(LeafToSupernode::Leaving),
    ]
}
fn supernode_to_leaf() -> impl Strategy<Value = SupernodeToLeaf> {
    prop_oneof![
        (query_id(), vec(hit(), 0..4)).prop_map(|(id, hits)| SupernodeToLeaf::Hits { id, hits }),
        (query_id(), query_end()).prop_map(|(id, end)| SupernodeToLeaf::QueryDone { id, end }),
        supernode_list().prop_map(SupernodeToLeaf::Supernodes),
        any::<u64>().prop_map(|nonce| SupernodeToLeaf::Pong { nonce }),
        vec(supernode_info(), 0..4).prop_map(|supernodes| SupernodeToLeaf::MoveTo { supernodes }),
        name().prop_map(|reason| SupernodeToLeaf::Refused { reason }),
        (query_id(), name()).prop_map(|(id, reason)| SupernodeToLeaf::QueryRefused { id, reason }),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(i, b, m)| SupernodeToLeaf::Limits(
            LeafLimits {
                query_interval_ms: i,
                query_burst: b,
                max_entries: m
            }
        )),
        (any::<u32>(), proptest::option::of(name()))
            .prop_map(|(entries, refused)| SupernodeToLeaf::Indexed { entries, refused }),
        (socket_addr(), any::<bool>()).prop_map(|(addr, reachable)| {
            SupernodeToLeaf::Reachability(Observed { addr, reachable })
        }),
        (node_id(), socket_addr())
            .prop_map(|(requester, addr)| SupernodeToLeaf::DialBack { requester, addr }),
        (node_id(), any::<u64>())
            .prop_map(|(requester, token)| SupernodeToLeaf::OpenRelay { requester, token }),
    ]
}
fn supernode_to_supernode() -> impl Strategy<Value = SupernodeToSupernode> {
    prop_oneof![
        (any::<u64>(), vec(any::<u8>(), 0..64))
            .prop_map(|(generation, table)| SupernodeToSupernode::Summary { generation, table }),
        (query(), any::<u8>()).prop_map(|(query, ttl)| SupernodeToSupernode::Query { query, ttl }),
        (query_id(), vec(hit(), 0..4))
            .prop_map(|(id, hits)| SupernodeToSupernode::Hits { id, hits }),
        query_id().prop_map(|id| SupernodeToSupernode::QueryDone { id }),
        (load(), vec(supernode_info(), 0..4))
            .prop_map(|(load, supernodes)| SupernodeToSupernode::Known { load, supernodes }),
        any::<u64>().prop_map(|nonce| SupernodeToSupernode::Ping { nonce }),
        any::<u64>().prop_map(|nonce| SupernodeToSupernode::Pong { nonce }),
        vec(
            (name(), any::<u32>()).prop_map(|(keyword, count)| KeywordCount { keyword, count }),
            0..4
        )
        .prop_map(|keywords| SupernodeToSupernode::DirPublish { keywords }),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(accepted, not_owner, capped)| {
            SupernodeToSupernode::DirPublished {
                accepted,
                not_owner,
                capped,
            }
        }),
        (query_id(), name())
            .prop_map(|(id, keyword)| SupernodeToSupernode::DirLookup { id, keyword }),
        (
            query_id(),
            name(),
            any::<bool>(),
            any::<u32>(),
            vec((node_id(), any::<u32>()), 0..4)
        )
            .prop_map(|(id, keyword, owner, total, holders)| {
                SupernodeToSupernode::DirHolders {
                    id,
                    keyword,
                    owner,
                    total,
                    holders: holders
                        .into_iter()
                        .map(|(node_id, count)| DirHolder { node_id, count })
                        .collect(),
                }
            }),
    ]
}
fn to_list_server() -> impl Strategy<Value = ToListServer> {
    prop_oneof![
        (socket_addr(), load())
            .prop_map(|(advertise, load)| ToListServer::Register { advertise, load }),
        load().prop_map(|load| ToListServer::Heartbeat { load }),
        Just(ToListServer::Unregister),
        any::<u16>().prop_map(|max| ToListServer::GetSupernodes { max }),
        (any::<u64>(), any::<u64>(), proptest::option::of(node_id())).prop_map(
            |(epoch, since, after)| ToListServer::GetMembers {
                epoch,
                since,
                after
            }
        ),
    ]
}
fn list_server_to_node() -> impl Strategy<Value = ListServerToNode> {
    prop_oneof![
        (any::<u32>(), any::<bool>()).prop_map(|(heartbeat_interval_ms, listed)| {
            ListServerToNode::Registered {
                heartbeat_interval_ms,
                listed,
            }
        }),
        supernode_list().prop_map(ListServerToNode::Supernodes),
        name().prop_map(|reason| ListServerToNode::Refused { reason }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            vec((node_id(), proptest::option::of(socket_addr())), 0..4),
            any::<bool>()
        )
            .prop_map(|(epoch, version, snapshot, changes, more)| {
                ListServerToNode::Members(MemberPage {
                    epoch,
                    version,
                    snapshot,
                    changes: changes
                        .into_iter()
                        .map(|(node_id, addr)| MemberChange { node_id, addr })
                        .collect(),
                    more,
                })
            }),
    ]
}
fn downloader_to_holder() -> impl Strategy<Value = DownloaderToHolder> {
    prop_oneof![
        content_id().prop_map(|content_id| DownloaderToHolder::Have { content_id }),
        (content_id(), any::<u64>(), any::<u64>()).prop_map(|(content_id, start, len)| {
            DownloaderToHolder::Range {
                content_id,
                start,
                len,
            }
        }),
    ]
}
fn holder_to_downloader() -> impl Strategy<Value = HolderToDownloader> {
    prop_oneof![
        (content_id(), any::<u64>())
            .prop_map(|(content_id, size)| HolderToDownloader::Have { content_id, size }),
        content_id().prop_map(|content_id| HolderToDownloader::NotFound { content_id }),
        any::<u32>().prop_map(|retry_after_ms| HolderToDownloader::Busy { retry_after_ms }),
        (content_id(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(content_id, start, len, encoded_len)| {
                HolderToDownloader::RangeFollows {
                    content_id,
                    start,
                    len,
                    encoded_len,
                }
            }
        ),
    ]
}
fn hello() -> impl Strategy<Value = Hello> {
    (
        role(),
        intent(),
        proptest::option::of(socket_addr()),
        "[ -~]{0,64}",
    )
        .prop_map(|(role, intent, advertise, agent)| Hello {
            role,
            intent,
            advertise,
            agent,
        })
}
fn hello_reply() -> impl Strategy<Value = HelloReply> {
    prop_oneof![
        role().prop_map(|role| HelloReply::Welcome { role }),
        (name(), vec(supernode_info(), 0..4)).prop_map(|(reason, try_instead)| {
            HelloReply::Refused {
                reason,
                try_instead,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn leaf_to_supernode_round_trips(msg in leaf_to_supernode()) { round_trip(&msg)?; }
    #[test]
    fn supernode_to_leaf_round_trips(msg in supernode_to_leaf()) { round_trip(&msg)?; }
    #[test]
    fn supernode_to_supernode_round_trips(msg in supernode_to_supernode()) { round_trip(&msg)?; }
    #[test]
    fn to_list_server_round_trips(msg in to_list_server()) { round_trip(&msg)?; }
    #[test]
    fn list_server_to_node_round_trips(msg in list_server_to_node()) { round_trip(&msg)?; }
    #[test]
    fn downloader_to_holder_round_trips(msg in downloader_to_holder()) { round_trip(&msg)?; }
    #[test]
    fn holder_to_downloader_round_trips(msg in holder_to_downloader()) { round_trip(&msg)?; }
    #[test]
    fn probe_round_trips(
        nonce in any::<u64>(),
        role in role(),
        load in proptest::option::of(load()),
        observed in proptest::option::of(socket_addr()),
    ) {
        round_trip(&ProbeRequest::Ping { nonce })?;
        round_trip(&ProbeReply::Pong { nonce, role, load, observed })?;
    }
    #[test]
    fn rendezvous_round_trips(msg in to_rendezvous(), reply in rendezvous_reply(), token in any::<u64>()) {
        round_trip(&msg)?;
        round_trip(&reply)?;
        round_trip(&RelayLegRequest::Join { token })?;
    }
    #[test]
    fn hello_round_trips(msg in hello(), reply in hello_reply()) {
        round_trip(&msg)?;
        round_trip(&reply)?;
    }

    /// Arbitrary bytes never panic the decoder: they decode or give a typed error.
    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..256)) {
        let _ = decode::<LeafToSupernode>(&bytes);
        let _ = decode::<SupernodeToSupernode>(&bytes);
        let _ = decode::<ToListServer>(&bytes);
        let _ = decode::<HolderToDownloader>(&bytes);
    }
}

#[test]
fn validation_enforces_limits() {
    let id = QueryId([1; 16]);
    let ok = Query {
        id,
        keywords: vec!["abba".into()],
        want: 10,
    };
    assert!(ok.validate().is_ok());
    assert!(
        Query {
            keywords: vec![],
            ..ok.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        Query {
            keywords: vec!["x".into(); MAX_QUERY_KEYWORDS + 1],
            ..ok.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        Query {
            keywords: vec!["x".repeat(MAX_KEYWORD_BYTES + 1)],
            ..ok.clone()
        }
        .validate()
        .is_err()
    );
    assert!(Query { want: 0, ..ok }.validate().is_err());

    let entry = FileEntry {
        content_id: ContentId::of_bytes(b"x"),
        name: "a.mp3".into(),
        size: 1,
    };
    assert!(entry.validate().is_ok());
    assert!(
        FileEntry {
            name: String::new(),
            ..entry.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        FileEntry {
            name: "n".repeat(MAX_NAME_BYTES + 1),
            ..entry
        }
        .validate()
        .is_err()
    );
}

#[test]
fn largest_publish_fits_in_a_frame() {
    let entry = FileEntry {
        content_id: ContentId::of_bytes(b"x"),
        name: "n".repeat(MAX_NAME_BYTES),
        size: u64::MAX,
    };
    let msg = LeafToSupernode::Publish {
        entries: vec![entry; MAX_ENTRIES_PER_MESSAGE],
    };
    assert!(encode(&msg).is_ok());
}

/// The variant counts declared for [`Message`] match the enums: the last variant decodes,
/// one past it is unknown. A variant added without updating the count fails here.
#[test]
fn declared_variant_counts_match_the_enums() {
    fn last_known_and_next<T: Message + Debug>(last: T) {
        let frame = encode(&last).unwrap();
        let body = &frame[LENGTH_PREFIX..];
        let (index, _) = postcard::take_from_bytes::<u32>(body).unwrap();
        assert_eq!(
            Some(index + 1),
            T::VARIANTS,
            "{last:?} should be the last variant"
        );
        let next = postcard::to_stdvec(&(index + 1)).unwrap();
        assert!(matches!(decode::<T>(&next), Err(WireError::UnknownVariant)));
    }
    let cid = ContentId::of_bytes(b"x");
    last_known_and_next(LeafToSupernode::Leaving);
    last_known_and_next(SupernodeToLeaf::OpenRelay {
        requester: NodeId::from_bytes([1; 32]),
        token: 1,
    });
    last_known_and_next(ToRendezvous::Relay {
        holder: NodeId::from_bytes([1; 32]),
    });
    last_known_and_next(RendezvousReply::Refused { reason: "r".into() });
    last_known_and_next(RelayLegRequest::Join { token: 1 });
    last_known_and_next(SupernodeToSupernode::DirHolders {
        id: QueryId([0; 16]),
        keyword: "k".into(),
        owner: true,
        total: 0,
        holders: vec![],
    });
    last_known_and_next(ToListServer::GetMembers {
        epoch: 1,
        since: 0,
        after: None,
    });
    last_known_and_next(ListServerToNode::Members(MemberPage {
        epoch: 1,
        version: 0,
        snapshot: true,
        changes: vec![],
        more: false,
    }));
    last_known_and_next(DownloaderToHolder::Range {
        content_id: cid,
        start: 0,
        len: 1,
    });
    last_known_and_next(HolderToDownloader::RangeFollows {
        content_id: cid,
        start: 0,
        len: 1,
        encoded_len: 1,
    });
    last_known_and_next(ProbeRequest::Ping { nonce: 1 });
    last_known_and_next(ProbeReply::Pong {
        nonce: 1,
        role: Role::Leaf,
        load: None,
        observed: None,
    });
    last_known_and_next(HelloReply::Refused {
        reason: "r".into(),
        try_instead: vec![],
    });
}
