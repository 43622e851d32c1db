//! Content index at KaZaA supernode scale: 500 holders x 1,000 files.
//!
//! Names are 3-6 words drawn Zipf-like from a 20,000-word vocabulary plus an extension
//! (mp3 half the time), so a few words are in a large share of names and most are rare. A
//! fifth of each share comes from a catalogue of popular files that many holders have, so hits
//! carry several holders as they do in real networks. Everything comes from a fixed-seed
//! xorshift generator: runs are comparable.
//!
//! Prints once: build time, memory per entry (the index's own estimate and the RSS delta), and
//! how many hits each benchmarked query has. Then: publish and remove one holder's 1,000
//! entries with the other 499 in place, and local queries.
//!
//! `cargo bench -p superpeer-supernode --bench index`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use superpeer_common::wire::{FileEntry, Holder};
use superpeer_common::{ContentId, NodeId};
use superpeer_supernode::{ContentIndex, IndexLimits};

const HOLDERS: usize = 500;
const FILES_PER_HOLDER: usize = 1_000;
const POPULAR_PER_HOLDER: usize = 200;
const VOCABULARY: usize = 20_000;
const CATALOGUE: usize = 50_000;
/// Extensions and how often each ends a name (out of 20).
const EXTENSIONS: [(&str, u64); 4] = [("mp3", 10), ("avi", 4), ("flac", 3), ("txt", 3)];
const SYLLABLES: [&str; 30] = [
    "ka", "lo", "mi", "tu", "re", "sa", "no", "ve", "di", "po", "ga", "le", "zu", "fi", "ro", "ne",
    "ba", "ti", "mo", "se", "ku", "da", "pe", "li", "vo", "ha", "ju", "we", "xi", "co",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn content_id(&mut self) -> ContentId {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            for (byte, random) in chunk.iter_mut().zip(self.next_u64().to_le_bytes()) {
                *byte = random;
            }
        }
        ContentId::from_bytes(bytes)
    }
}

/// Draws ranks 0..n with probability proportional to 1 / (rank + 1).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|rank| {
                total += 1.0 / (rank + 1) as f64;
                total
            })
            .collect();
        Self { cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let target = rng.unit() * total;
        self.cumulative
            .partition_point(|&c| c < target)
            .min(self.cumulative.len() - 1)
    }
}

/// The vocabulary word of a rank: three syllables, distinct for every rank below 27,000.
fn word(rank: usize) -> String {
    let n = SYLLABLES.len();
    [rank % n, rank / n % n, rank / (n * n) % n]
        .iter()
        .filter_map(|&i| SYLLABLES.get(i).copied())
        .collect()
}

fn name(rng: &mut Rng, vocabulary: &[String], zipf: &Zipf) -> String {
    let count = 3 + rng.below(4) as usize;
    let words: Vec<&str> = (0..count)
        .filter_map(|_| vocabulary.get(zipf.draw(rng)).map(String::as_str))
        .collect();
    let mut pick = rng.below(EXTENSIONS.iter().map(|(_, w)| w).sum());
    let mut extension = "mp3";
    for (ext, weight) in EXTENSIONS {
        if pick < weight {
            extension = ext;
            break;
        }
        pick -= weight;
    }
    format!("{}.{extension}", words.join(" "))
}

fn holder(i: usize) -> Holder {
    let mut id = [0xA5u8; 32];
    for (byte, index) in id.iter_mut().zip((i as u64).to_le_bytes()) {
        *byte = index;
    }
    Holder {
        node_id: NodeId::from_bytes(id),
        addr: SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 6346)),
        via: None,
    }
}

/// Every holder's share: popular files (same id and name everywhere) and files of its own.
fn shares() -> Vec<(Holder, Vec<FileEntry>)> {
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    let vocabulary: Vec<String> = (0..VOCABULARY).map(word).collect();
    let words = Zipf::new(VOCABULARY);
    let catalogue: Vec<FileEntry> = (0..CATALOGUE)
        .map(|_| FileEntry {
            content_id: rng.content_id(),
            name: name(&mut rng, &vocabulary, &words),
            size: rng.below(50_000_000),
        })
        .collect();
    let popularity = Zipf::new(CATALOGUE);
    (0..HOLDERS)
        .map(|h| {
            let mut files = Vec::with_capacity(FILES_PER_HOLDER);
            let mut taken = std::collections::HashSet::new();
            while files.len() < POPULAR_PER_HOLDER {
                let pick = popularity.draw(&mut rng);
                if taken.insert(pick) {
                    files.extend(catalogue.get(pick).cloned());
                }
            }
            while files.len() < FILES_PER_HOLDER {
                files.push(FileEntry {
                    content_id: rng.content_id(),
                    name: name(&mut rng, &vocabulary, &words),
                    size: rng.below(50_000_000),
                });
            }
            (holder(h), files)
        })
        .collect()
}

/// Resident set size of this process, from /proc (Linux only; 0 elsewhere).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn build(shares: &[(Holder, Vec<FileEntry>)]) -> ContentIndex {
    let mut index = ContentIndex::new(IndexLimits::default());
    for (holder, files) in shares {
        let published = index.publish(*holder, files);
        assert_eq!(published.ok(), Some(files.len()), "publish refused");
    }
    index
}

fn words(query: &str) -> Vec<String> {
    superpeer_common::keywords(query)
}

fn main() {
    let shares = shares();
    let entries = HOLDERS * FILES_PER_HOLDER;
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut index = build(&shares);
    let took = started.elapsed();
    let rss_after = rss_bytes();
    let approx = index.approx_bytes();
    println!(
        "index: {} entries, {} holders, {} keywords; built in {:.2?} ({:.0} entries/s)",
        index.len(),
        index.holders(),
        index.keywords().count(),
        took,
        entries as f64 / took.as_secs_f64()
    );
    println!(
        "memory: approx_bytes {:.1} MiB = {} B/entry; RSS delta {:.1} MiB = {} B/entry",
        approx as f64 / 1048576.0,
        approx / entries,
        rss_after.saturating_sub(rss_before) as f64 / 1048576.0,
        rss_after.saturating_sub(rss_before) / entries
    );

    let queries: [(&str, Vec<String>, usize); 6] = [
        ("common_word_want50", words("mp3"), 50),
        ("rare_word", vec![word(15_000)], 50),
        ("two_word_and", vec![word(30), word(100)], 50),
        ("two_word_and_no_match", vec![word(100), word(300)], 50),
        ("frequent_pair_want50", vec![word(0), word(1)], 50),
        ("miss_unknown_word", words("qqqzzz"), 50),
    ];
    for (label, query, want) in &queries {
        let all = index.query(query, usize::MAX).len();
        let holders: usize = index
            .query(query, *want)
            .iter()
            .map(|h| h.holders.len())
            .sum();
        println!("query {label} {query:?}: {all} contents match; want {want} -> {holders} holders");
    }

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    let mut group = criterion.benchmark_group("query");
    for (label, query, want) in &queries {
        group.bench_function(*label, |b| b.iter(|| index.query(black_box(query), *want)));
    }
    group.finish();

    // Publish and removal of the last holder, with the other 499 in place; each timed
    // alone, the other undone untimed so the index stays the same between iterations.
    let Some((last, files)) = shares.last() else {
        return;
    };
    index.remove_holder(last.node_id);
    let mut group = criterion.benchmark_group("holder_1000_entries");
    group
        .sample_size(20)
        .throughput(Throughput::Elements(FILES_PER_HOLDER as u64));
    group.bench_function("publish", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let published = index.publish(*last, black_box(files));
                timed += started.elapsed();
                assert!(published.is_ok());
                index.remove_holder(last.node_id);
            }
            timed
        });
    });
    group.bench_function("remove_holder", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                assert!(index.publish(*last, files).is_ok());
                let started = Instant::now();
                let removed = index.remove_holder(black_box(last.node_id));
                timed += started.elapsed();
                assert_eq!(removed, FILES_PER_HOLDER);
            }
            timed
        });
    });
    group.finish();
    criterion.final_summary();
}
