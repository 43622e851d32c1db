//! A node's status, and the one place it becomes `status --json` (leaf and supernode alike).

use std::net::SocketAddr;

use superpeer_common::NodeId;
use superpeer_supernode::SupernodeStatus;

use super::core::{PublicationStatus, Reach, ReachView, SupernodeView};
use super::join::CandidateView;
use crate::control::{
    CandidateJson, DirectoryJson, DownloadJson, HashingJson, PublicationJson, ReachabilityJson,
    RelayJson, StatusJson, SummariesJson, SupernodeJson,
};
use crate::share::HashingNow;

/// The node's state as `status` shows it.
#[derive(Clone, Debug)]
pub struct LeafStatus {
    pub node_id: NodeId,
    pub listen: SocketAddr,
    pub advertise: SocketAddr,
    /// The supernode we are attached to (a leaf).
    pub supernode: Option<SupernodeView>,
    /// Every supernode attached, the current one first, when there are spares.
    pub attached: Vec<SupernodeView>,
    /// The supernodes the leaf knows, best measured first.
    pub candidates: Vec<CandidateView>,
    /// Files in the shared folder.
    pub shared_files: usize,
    /// Hashing in the shared folder, when one is shared.
    pub hashing: Option<HashingNow>,
    /// How they stand with the supernode that indexes them.
    pub publication: PublicationStatus,
    /// Searches running, and waiting for the query limit.
    pub searches: (usize, usize),
    /// Whether the node is (or is becoming) a supernode.
    pub is_supernode: bool,
    /// Whether others can reach us, and where our supernode sees us.
    pub reachability: ReachView,
    /// As a supernode: its own status.
    pub promoted: Option<SupernodeStatus>,
}

impl LeafStatus {
    /// The JSON of `status --json`, with the daemon's downloads and uploads.
    pub fn to_json(&self, downloads: Vec<DownloadJson>, uploaded_bytes: u64) -> StatusJson {
        let core = self.promoted.as_ref().map(|p| &p.core);
        let publication = &self.publication;
        StatusJson {
            node_id: self.node_id.to_string(),
            role: if self.is_supernode {
                "supernode"
            } else {
                "leaf"
            }
            .into(),
            supernode: self.supernode.map(supernode_json),
            // Listed only with spares: one supernode is `supernode` alone, as before.
            supernodes: if self.attached.len() > 1 {
                self.attached.iter().copied().map(supernode_json).collect()
            } else {
                Vec::new()
            },
            candidates: self
                .candidates
                .iter()
                .map(|c| CandidateJson {
                    node_id: c.node_id.to_string(),
                    addr: c.addr.to_string(),
                    rtt_ms: c.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
                    leaves: c.load.map(|l| l.leaves),
                    capacity: c.load.map(|l| l.capacity),
                    attached: c.attached,
                })
                .collect(),
            shared_files: self.shared_files,
            hashing: self.hashing.map(|h| HashingJson {
                files: h.files,
                files_done: h.files_done,
                bytes: h.bytes,
                bytes_done: h.bytes_done,
                hashed_bytes: h.hashed_total,
            }),
            publication: Some(PublicationJson {
                indexed: publication.indexed,
                pending: publication.pending,
                reason: publication.reason.clone(),
            }),
            leaves: core.map(|c| c.leaves),
            neighbors: core.map(|c| c.neighbors.len()),
            indexed: core.map(|c| c.indexed),
            queries_forwarded: core.map(|c| c.router.forwarded),
            queries_received: core.map(|c| c.queries_from_neighbors),
            summaries: core.map(SummariesJson::from),
            directory: core.map(DirectoryJson::from),
            reachability: reachability_json(self.reachability),
            relay: self.promoted.as_ref().map(|p| RelayJson {
                active: p.relay.active,
                admitted: p.relay.admitted,
                refused: p.relay.refused,
                bytes: p.relay.bytes_relayed,
                cut_off: p.relay.cut_off,
            }),
            listen: self.listen.to_string(),
            advertise: self.advertise.to_string(),
            downloads,
            uploaded_bytes,
        }
    }
}

fn reachability_json(view: ReachView) -> ReachabilityJson {
    ReachabilityJson {
        kind: view.reach.name().into(),
        mapping: match view.reach {
            Reach::Nat(mapping) => Some(mapping.name().into()),
            _ => None,
        },
        observed: view.observed.map(|a| a.to_string()),
    }
}

fn supernode_json(s: SupernodeView) -> SupernodeJson {
    SupernodeJson {
        node_id: s.node_id.to_string(),
        addr: s.addr.to_string(),
        rtt_ms: s.rtt.as_secs_f64() * 1000.0,
    }
}
