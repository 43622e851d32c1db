//! Which of the holders a search result names a download may dial.
//!
//! Holders come from hits, and a hit comes from whichever supernode answered: it may name
//! any node id at any address. Dialling all of them would let a stranger aim our download
//! at a third party (each dial is a QUIC Initial of 1,200 bytes and its retransmissions).
//! So a download dials only:
//! - holders pinned to a node id (the handshake fails unless that node answers, so a
//!   bystander gets one handshake attempt, never a session);
//! - at routable unicast addresses (no unspecified address, port 0, multicast or broadcast);
//! - one per node id, at most [`MAX_HOLDERS_PER_IP`] per IP address (a real holder has one
//!   address; many "holders" at one address are an attack on it, or a single host's
//!   sybils, which give us nothing more);
//! - at most [`MAX_HOLDERS_PER_DOWNLOAD`] in all (more than eight at once gives no speed,
//!   and the rest only stand by for those that fail).
//!
//! A plain function of the list, in the order given (the supernodes put their best first).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use superpeer_common::PeerAddr;

/// Holders at one IP address a download dials at most.
pub const MAX_HOLDERS_PER_IP: usize = 2;

/// Holders one download dials at most, standbys included (every size tried counts).
pub const MAX_HOLDERS_PER_DOWNLOAD: usize = 16;

/// The holders of `holders` a download may dial, in order (see the module docs).
pub fn dialable(holders: &[PeerAddr]) -> Vec<PeerAddr> {
    let mut ids = HashSet::new();
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    let mut chosen = Vec::new();
    for holder in holders {
        if chosen.len() >= MAX_HOLDERS_PER_DOWNLOAD {
            break;
        }
        let Some(node_id) = holder.node_id else {
            continue;
        };
        if !routable(holder.addr) || ids.contains(&node_id) {
            continue;
        }
        let at_ip = per_ip.entry(holder.addr.ip()).or_insert(0);
        if *at_ip >= MAX_HOLDERS_PER_IP {
            continue;
        }
        *at_ip += 1;
        ids.insert(node_id);
        chosen.push(*holder);
    }
    chosen
}

/// Whether `addr` can be one host's address at all.
fn routable(addr: SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

#[cfg(test)]
mod tests {
    use superpeer_common::NodeId;

    use super::*;

    fn holder(n: u8, addr: &str) -> PeerAddr {
        PeerAddr::pinned(NodeId::from_bytes([n; 32]), addr.parse().unwrap())
    }

    #[test]
    fn a_hit_aimed_at_one_address_dials_it_at_most_twice() {
        let flood: Vec<PeerAddr> = (0..32)
            .map(|n| holder(n, &format!("198.51.100.7:{}", 4000 + u16::from(n))))
            .collect();
        let chosen = dialable(&flood);
        assert_eq!(chosen, flood[..MAX_HOLDERS_PER_IP]);
    }

    #[test]
    fn holders_are_capped_deduplicated_and_routable() {
        let mut holders = vec![
            holder(1, "0.0.0.0:4000"),
            holder(2, "192.0.2.1:0"),
            holder(3, "224.0.0.1:4000"),
            holder(4, "255.255.255.255:4000"),
            holder(5, "[::]:4000"),
            holder(6, "192.0.2.1:4000"),
            holder(6, "192.0.2.2:4000"),
            PeerAddr::unpinned("192.0.2.3:4000".parse().unwrap()),
        ];
        holders.extend((10..60).map(|n| holder(n, &format!("10.0.0.{n}:4000"))));
        let chosen = dialable(&holders);
        assert_eq!(chosen.len(), MAX_HOLDERS_PER_DOWNLOAD);
        assert_eq!(
            chosen[0],
            holder(6, "192.0.2.1:4000"),
            "one address per node id"
        );
        assert_eq!(chosen[1], holder(10, "10.0.0.10:4000"));
    }
}
