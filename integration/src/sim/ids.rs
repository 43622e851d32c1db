//! Names of simulated nodes: node ids and addresses that carry the simulator's own
//! numbering, so an id seen in a message (a dial target, a holder) maps back to a node
//! without a lookup table. (Query ids are the leaves' cores' own; `queries` maps them.)

use std::net::{Ipv4Addr, SocketAddr};

use superpeer_common::NodeId;

const SUPERNODE_TAG: u8 = b'S';
const LEAF_TAG: u8 = b'L';

fn node_id(tag: u8, n: u32) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[0] = tag;
    bytes[1..5].copy_from_slice(&n.to_le_bytes());
    NodeId::from_bytes(bytes)
}

fn number(tag: u8, id: &NodeId) -> Option<u32> {
    let bytes = id.as_bytes();
    if bytes.first() != Some(&tag) {
        return None;
    }
    let n: [u8; 4] = bytes.get(1..5)?.try_into().ok()?;
    Some(u32::from_le_bytes(n))
}

/// The node id of supernode `n`.
pub fn supernode_id(n: u32) -> NodeId {
    node_id(SUPERNODE_TAG, n)
}

/// The supernode number a node id names, if it names one.
pub fn supernode_number(id: &NodeId) -> Option<u32> {
    number(SUPERNODE_TAG, id)
}

/// The node id of leaf `n`.
pub fn leaf_id(n: u32) -> NodeId {
    node_id(LEAF_TAG, n)
}

/// The leaf number a node id names, if it names one.
pub fn leaf_number(id: &NodeId) -> Option<u32> {
    number(LEAF_TAG, id)
}

/// Supernode `n`'s address: one host each (the list server allows only a few entries per
/// source address).
pub fn supernode_addr(n: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0A00_0000 + n), 7000))
}

/// Leaf `n`'s address.
pub fn leaf_addr(n: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x4000_0000 + n), 6000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_back_to_their_numbers() {
        assert_eq!(supernode_number(&supernode_id(9_999)), Some(9_999));
        assert_eq!(leaf_number(&leaf_id(2_999_999)), Some(2_999_999));
        assert_eq!(supernode_number(&leaf_id(3)), None);
        assert_ne!(supernode_addr(1), supernode_addr(2));
    }
}
