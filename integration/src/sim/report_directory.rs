//! The keyword directory's part of a report: how each query ended against what the
//! network held, what the directory cost per query and as upkeep, its counters, and
//! memory per supernode.
//!
//! Outcomes, four ways, against the query's ground truth (`truth`: the distinct contents
//! matching it among the files indexed by running supernodes when it was sent):
//! - `complete`: it got every available result, `min(want, truth)`, with `truth > 0`;
//! - `partial`: some, fewer than that;
//! - `zero`: none, although the network held matches;
//! - `absent`: the network held no match (`truth = 0`).
//!
//! The success counts only the queries whose results the network holds:
//! `complete / (complete + partial + zero)`.
//!
//! Memory is an estimate from the cores' counters (`SupernodeCore` does not expose its
//! structures' sizes): the index at [`INDEX_BYTES_PER_ENTRY`], the owner store at
//! [`OWNER_PAIR_BYTES`] per (keyword, publisher) pair and [`OWNED_KEYWORD_BYTES`] per
//! keyword, the publisher at [`PUBLISHED_KEYWORD_BYTES`] per keyword; the membership is
//! shared (one `MemberSet` per version) and counted once.

use std::fmt::Write as _;

use serde::Serialize;

use super::direct::DirectSessions;
use super::queries::QueryRecord;
use super::report::Stats;
use super::world::World;

/// An index entry with its share of the word and content tables (SIMULATOR.md, "Scale":
/// ~1.7 KB per leaf sharing 10 files).
pub const INDEX_BYTES_PER_ENTRY: usize = 170;
/// One (keyword, publisher) pair in an owner's store: the node id, the holding (count and
/// expiry) and the hash table's share.
pub const OWNER_PAIR_BYTES: usize = 64;
/// One keyword an owner holds: its string and its map of publishers.
pub const OWNED_KEYWORD_BYTES: usize = 100;
/// One keyword the publisher tracks: its string, count, hash, three ranked owners (a heap
/// vector of 120 bytes) and its place in the refresh order (a second copy of the string).
pub const PUBLISHED_KEYWORD_BYTES: usize = 300;
/// One member in a `MemberSet`: (hash, id) ranked, and id to address.
pub const MEMBER_BYTES: usize = 110;

/// How a query ended against what the network held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Complete,
    Partial,
    Zero,
    Absent,
}

impl Outcome {
    /// The outcome of a query that got `found` of `truth`, wanting `want`.
    pub fn of(found: usize, truth: usize, want: usize) -> Self {
        if truth == 0 {
            Outcome::Absent
        } else if found >= want.min(truth) {
            Outcome::Complete
        } else if found == 0 {
            Outcome::Zero
        } else {
            Outcome::Partial
        }
    }
}

/// The directory's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirectoryFigures {
    /// Whether the cores ran with the directory (`CoreConfig::directory`).
    pub enabled: bool,
    /// Queries sent, by outcome.
    pub complete: usize,
    pub partial: usize,
    pub zero: usize,
    pub absent: usize,
    /// `complete` over the queries whose results the network held.
    pub success_held: f64,
    /// The numbers of the queries answered with nothing although the network held matches.
    pub zero_queries: Vec<u32>,
    /// Of the partial and zero queries, those that some supernode holding a match never
    /// got (the rest reached every holder and still came short: each holder answers with
    /// its own first matches up to what is still wanted, which may be contents the asker
    /// has already).
    pub missed_a_holder: usize,
    /// Per query: bytes of its supernode-to-supernode messages, lookups and answers,
    /// query messages sent directly.
    pub bytes: Stats,
    pub lookups: Stats,
    pub direct: Stats,
    /// Routing's messages per query as a share of flooding's at the largest TTL, percent.
    pub percent_of_flooding: Option<f64>,
    /// While querying, per supernode and second: publishes and their replies, and bytes.
    pub upkeep_per_supernode_sec: f64,
    pub upkeep_bytes_per_supernode_sec: f64,
    /// The whole run (every index's first publishes included).
    pub upkeep_messages: u64,
    pub upkeep_bytes: u64,
    /// Publishes carried to owners (the cores count those they tried to send, some of
    /// which never left: no room for a connection, or it failed).
    pub publishes_carried: u64,
    /// Summed over the cores at the end (`DirectoryStatus`, and the router's count).
    pub publishes_sent: u64,
    pub keywords_sent: u64,
    pub refused_not_owner: u64,
    pub refused_capped: u64,
    pub refused_to_others: u64,
    pub lookups_sent: u64,
    pub lookups_answered: u64,
    pub unreachable: u64,
    pub asked_directly: u64,
    /// Directory sessions, as the simulator carried them.
    pub sessions: DirectSessions,
    /// Per running supernode at the end, estimated bytes (see the module docs).
    pub index_bytes: Stats,
    pub directory_bytes: Stats,
    pub owned_pairs: Stats,
    pub published_keywords: Stats,
    /// Members listed at the end, versions of the membership, and one set's bytes.
    pub members: usize,
    pub member_versions: u64,
    pub member_set_bytes: usize,
}

impl DirectoryFigures {
    /// The figures of `world`'s run; `flood_messages`: flooding's mean messages per query
    /// at its largest TTL, `routing_messages` ours.
    pub fn new(world: &World<'_>, routing_messages: f64, flood_messages: Option<f64>) -> Self {
        let want = world.config.want as usize;
        let mut figures = DirectoryFigures {
            enabled: world.config.core.directory,
            sessions: world.direct,
            ..Self::default()
        };
        let mut sent: Vec<&QueryRecord> = Vec::new();
        for (q, r) in world.queries.records.iter().enumerate() {
            if !r.sent {
                continue;
            }
            sent.push(r);
            let outcome = Outcome::of(r.found.len(), r.truth, want);
            match outcome {
                Outcome::Complete => figures.complete += 1,
                Outcome::Partial => figures.partial += 1,
                Outcome::Zero => {
                    figures.zero += 1;
                    figures.zero_queries.push(q as u32);
                }
                Outcome::Absent => figures.absent += 1,
            }
            if matches!(outcome, Outcome::Partial | Outcome::Zero)
                && r.held_at.iter().any(|sn| !r.visited.contains(sn))
            {
                figures.missed_a_holder += 1;
            }
        }
        let held = figures.complete + figures.partial + figures.zero;
        figures.success_held = figures.complete as f64 / held.max(1) as f64;
        let stat = |f: &dyn Fn(&QueryRecord) -> f64| Stats::of(sent.iter().map(|r| f(r)).collect());
        figures.bytes = stat(&|r| r.bytes as f64);
        figures.lookups = stat(&|r| r.lookups as f64);
        figures.direct = stat(&|r| r.direct as f64);
        figures.percent_of_flooding = flood_messages
            .filter(|f| *f > 0.0)
            .map(|f| routing_messages / f * 100.0);
        let upkeep = world.upkeep;
        let span = world
            .queue
            .now()
            .saturating_sub(world.timeline.queries)
            .as_secs_f64()
            .max(f64::MIN_POSITIVE)
            * world.nodes.len().max(1) as f64;
        figures.upkeep_per_supernode_sec = upkeep.directory as f64 / span;
        figures.upkeep_bytes_per_supernode_sec = upkeep.directory_bytes as f64 / span;
        figures.upkeep_messages = upkeep.directory_total;
        figures.publishes_carried = upkeep.publishes;
        figures.upkeep_bytes = upkeep.directory_total_bytes;
        let (mut index, mut directory, mut pairs, mut published) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for node in &world.nodes {
            let status = node.core.status();
            let d = &status.directory;
            figures.publishes_sent += d.publishes_sent;
            figures.keywords_sent += d.keywords_sent;
            figures.refused_not_owner += d.refused_not_owner;
            figures.refused_capped += d.refused_capped;
            figures.refused_to_others += d.refused_to_others;
            figures.lookups_sent += d.lookups_sent;
            figures.lookups_answered += d.lookups_answered;
            figures.unreachable += d.unreachable;
            figures.asked_directly += status.router.asked_directly;
            if !node.is_up() {
                continue;
            }
            index.push((status.indexed * INDEX_BYTES_PER_ENTRY) as f64);
            let bytes = d.owned_pairs * OWNER_PAIR_BYTES
                + d.owned_keywords * OWNED_KEYWORD_BYTES
                + d.published_keywords * PUBLISHED_KEYWORD_BYTES;
            directory.push(bytes as f64);
            pairs.push(d.owned_pairs as f64);
            published.push(d.published_keywords as f64);
        }
        figures.index_bytes = Stats::of(index);
        figures.directory_bytes = Stats::of(directory);
        figures.owned_pairs = Stats::of(pairs);
        figures.published_keywords = Stats::of(published);
        figures.members = world.list.members.len();
        figures.member_versions = world.list.members.version();
        figures.member_set_bytes = figures.members * MEMBER_BYTES;
        figures
    }

    /// The directory's lines of the table.
    pub fn table(&self, out: &mut String) {
        let kib = |b: f64| b / 1024.0;
        let _ = writeln!(
            out,
            "\ndirectory: {}; {} members listed at the end ({} versions of the membership, {:.0} KiB each, shared)",
            if self.enabled { "on" } else { "off" },
            self.members,
            self.member_versions,
            kib(self.member_set_bytes as f64)
        );
        let _ = writeln!(
            out,
            "outcomes: {} all available results found, {} partial, {} zero although the network held matches, {} absent from the network; success among held {:.1}%; {} of the partial and zero never reached a supernode holding a match",
            self.complete,
            self.partial,
            self.zero,
            self.absent,
            self.success_held * 100.0,
            self.missed_a_holder
        );
        let _ = writeln!(
            out,
            "per query: {:.1} KiB (p99 {:.1}), {:.2} lookups and answers, {:.2} supernodes asked directly (p99 {:.0}); messages {}",
            kib(self.bytes.mean),
            kib(self.bytes.p99),
            self.lookups.mean,
            self.direct.mean,
            self.direct.p99,
            self.percent_of_flooding
                .map_or("-".to_string(), |p| format!(
                    "{p:.2}% of flooding's at the largest TTL"
                ))
        );
        let _ = writeln!(
            out,
            "directory upkeep while querying, per supernode and second: {:.2} messages, {:.2} KiB (whole run: {} messages, {:.1} MiB)",
            self.upkeep_per_supernode_sec,
            kib(self.upkeep_bytes_per_supernode_sec),
            self.upkeep_messages,
            kib(kib(self.upkeep_bytes as f64))
        );
        let _ = writeln!(
            out,
            "directory counters: {} publishes tried ({} keywords), {} carried; refused {} not owner / {} capped (by owners: {}); {} lookups, {} answered; {} asked directly; {} unreachable",
            self.publishes_sent,
            self.keywords_sent,
            self.publishes_carried,
            self.refused_not_owner,
            self.refused_capped,
            self.refused_to_others,
            self.lookups_sent,
            self.lookups_answered,
            self.asked_directly,
            self.unreachable
        );
        let s = &self.sessions;
        let _ = writeln!(
            out,
            "directory sessions: {} asked for, {} opened, {} refused by the target, {} found nobody there, {} closed by a core; {} messages lost on sessions closed under them",
            s.connects, s.opened, s.refused, s.unreachable, s.closed, s.lost
        );
        let _ = writeln!(
            out,
            "memory per running supernode (estimates): index p50 {:.0} KiB, max {:.0} KiB; directory p50 {:.0} KiB, max {:.0} KiB ({:.0} owned pairs, {:.0} published keywords at p50)",
            kib(self.index_bytes.p50),
            kib(self.index_bytes.max),
            kib(self.directory_bytes.p50),
            kib(self.directory_bytes.max),
            self.owned_pairs.p50,
            self.published_keywords.p50
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_split_four_ways() {
        assert_eq!(Outcome::of(0, 0, 50), Outcome::Absent);
        assert_eq!(Outcome::of(3, 3, 50), Outcome::Complete);
        assert_eq!(Outcome::of(50, 80, 50), Outcome::Complete);
        assert_eq!(Outcome::of(2, 3, 50), Outcome::Partial);
        assert_eq!(Outcome::of(0, 3, 50), Outcome::Zero);
    }
}
