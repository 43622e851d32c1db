//! Counters of what the list server has done, for the daemon's Prometheus endpoint.
//!
//! Plain atomics, bumped by the driver ([`ListServer`](crate::ListServer)) next to the
//! decisions it already makes; nothing here decides anything. The binary reads a
//! [`ListServerStats`] snapshot at scrape time, so this crate needs no metrics library.

use std::sync::atomic::{AtomicU64, Ordering};

/// Registry messages, by type, in the order of [`ListServerStats::messages`].
pub const MESSAGE_TYPES: [&str; 5] = ["register", "heartbeat", "unregister", "list", "members"];

/// Why a connection or a request was refused, in the order of [`ListServerStats::refusals`].
pub const REFUSAL_REASONS: [&str; 7] = [
    "connection_limit",
    "per_source_limit",
    "connect_rate",
    "message_rate",
    "list_rate",
    "members_rate",
    "register_rate",
];

/// Counters since start-up; all monotonic.
#[derive(Debug, Default)]
pub struct ListServerStats {
    /// Connections accepted past every cap (before the handshake).
    pub(crate) connections: AtomicU64,
    pub(crate) messages: [AtomicU64; MESSAGE_TYPES.len()],
    pub(crate) refusals: [AtomicU64; REFUSAL_REASONS.len()],
}

/// Indexes into [`MESSAGE_TYPES`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Message {
    Register = 0,
    Heartbeat = 1,
    Unregister = 2,
    List = 3,
    Members = 4,
}

/// Indexes into [`REFUSAL_REASONS`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refusal {
    ConnectionLimit = 0,
    PerSourceLimit = 1,
    ConnectRate = 2,
    MessageRate = 3,
    ListRate = 4,
    MembersRate = 5,
    RegisterRate = 6,
}

impl ListServerStats {
    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message(&self, kind: Message) {
        if let Some(c) = self.messages.get(kind as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn refusal(&self, why: Refusal) {
        if let Some(c) = self.refusals.get(why as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections accepted since start-up.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// `(type, count)` for every registry message type, zeros included.
    pub fn messages(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        MESSAGE_TYPES
            .iter()
            .zip(&self.messages)
            .map(|(name, c)| (*name, c.load(Ordering::Relaxed)))
    }

    /// `(reason, count)` for every refusal reason, zeros included.
    pub fn refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REFUSAL_REASONS
            .iter()
            .zip(&self.refusals)
            .map(|(name, c)| (*name, c.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_under_their_own_label() {
        let stats = ListServerStats::default();
        stats.message(Message::List);
        stats.message(Message::List);
        stats.refusal(Refusal::ListRate);
        stats.connection();
        let messages: Vec<_> = stats.messages().collect();
        assert!(messages.contains(&("list", 2)));
        assert!(messages.contains(&("register", 0)));
        assert!(stats.refusals().any(|r| r == ("list_rate", 1)));
        assert_eq!(stats.connections(), 1);
    }
}
