//! Frame encode/decode: what every message costs before it reaches the network, for the
//! messages that dominate traffic (a publish of a full batch of entries, a query, a batch
//! of hits). `cargo bench -p superpeer-common --bench frame`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput};
use superpeer_common::wire::{
    FileEntry, Holder, LeafToSupernode, MAX_ENTRIES_PER_MESSAGE, Query, QueryHit, QueryId,
    SupernodeToLeaf, decode, encode,
};
use superpeer_common::{ContentId, NodeId};

fn entries(n: usize) -> Vec<FileEntry> {
    (0..n)
        .map(|i| FileEntry {
            content_id: ContentId::of_bytes(&i.to_le_bytes()),
            name: format!(
                "Artist {i} - Some Fairly Typical Song Title ({}).mp3",
                1960 + i % 60
            ),
            size: 3_000_000 + i as u64,
        })
        .collect()
}

fn hits(n: usize) -> Vec<QueryHit> {
    entries(n)
        .into_iter()
        .enumerate()
        .map(|(i, e)| QueryHit {
            content_id: e.content_id,
            name: e.name,
            size: e.size,
            holders: (0..3)
                .map(|h| Holder {
                    node_id: NodeId::from_bytes([(i + h) as u8; 32]),
                    addr: SocketAddr::from(([127, 0, 0, h as u8 + 1], 4000)),
                    via: None,
                })
                .collect(),
        })
        .collect()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let publish = LeafToSupernode::Publish {
        entries: entries(MAX_ENTRIES_PER_MESSAGE),
    };
    let query = LeafToSupernode::Query(Query {
        id: QueryId([42; 16]),
        keywords: vec!["abba".into(), "waterloo".into()],
        want: 50,
    });
    let answer = SupernodeToLeaf::Hits {
        id: QueryId([42; 16]),
        hits: hits(50),
    };
    let mut group = criterion.benchmark_group("frame");
    for (label, frame) in [
        ("publish", encode(&publish).unwrap()),
        ("query", encode(&query).unwrap()),
    ] {
        group.throughput(Throughput::Bytes(frame.len() as u64));
        let msg = decode::<LeafToSupernode>(&frame[4..]).unwrap();
        group.bench_function(format!("encode {label} ({} bytes)", frame.len()), |b| {
            b.iter(|| encode(black_box(&msg)).unwrap())
        });
        group.bench_function(format!("decode {label} ({} bytes)", frame.len()), |b| {
            b.iter(|| decode::<LeafToSupernode>(black_box(&frame[4..])).unwrap())
        });
    }
    let frame = encode(&answer).unwrap();
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function(format!("encode 50 hits ({} bytes)", frame.len()), |b| {
        b.iter(|| encode(black_box(&answer)).unwrap())
    });
    group.bench_function(format!("decode 50 hits ({} bytes)", frame.len()), |b| {
        b.iter(|| decode::<SupernodeToLeaf>(black_box(&frame[4..])).unwrap())
    });
    group.finish();
    criterion.final_summary();
}
