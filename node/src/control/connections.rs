//! The control server's connection table: how many connections it holds, and which one
//! makes room for a newcomer. A plain state machine; the server drives it.
//!
//! The control API is on a loopback address, so any local user can connect, and only the
//! token in `control.json` (mode 0600) tells the owner apart. So:
//! 1. At most [`MAX_CONNECTIONS`] are held; a connection that has not presented the token
//!    yet is *unproven*.
//! 2. A newcomer past the cap closes the oldest unproven connection: connections that just
//!    sit there cannot lock the owner out, and a client that sends its request at once
//!    (the CLI does) is the youngest, the last to go.
//! 3. When every held connection has proven itself, the newcomer is refused.
//!
//! With the header timeout (a connection must finish a request head within
//! `HEADER_TIMEOUT` of the server waiting for one, idle keep-alive time included) this
//! bounds what strangers hold: [`MAX_CONNECTIONS`] descriptors for seconds at most.

use std::collections::BTreeMap;

/// Connections the control server holds at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Whether a newcomer was let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// In, as connection `id`; `evicted` (what was given for the connection it replaces)
    /// must be closed.
    Admitted { id: u64, evicted: Option<T> },
    /// Every held connection has proven itself: close the newcomer.
    Refused,
}

struct Held<T> {
    proven: bool,
    closer: T,
}

/// The connections held, oldest first; `T` is what the server needs to close one.
pub struct Connections<T> {
    cap: usize,
    next_id: u64,
    held: BTreeMap<u64, Held<T>>,
}

impl<T> Connections<T> {
    /// A table holding `cap` connections at most (at least one).
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            next_id: 0,
            held: BTreeMap::new(),
        }
    }

    /// A new connection, with what closes it.
    pub fn admit(&mut self, closer: T) -> Admission<T> {
        let mut evicted = None;
        if self.held.len() >= self.cap {
            let oldest_unproven = self.held.iter().find(|(_, h)| !h.proven).map(|(id, _)| *id);
            let Some(victim) = oldest_unproven else {
                return Admission::Refused;
            };
            evicted = self.held.remove(&victim).map(|h| h.closer);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.held.insert(
            id,
            Held {
                proven: false,
                closer,
            },
        );
        Admission::Admitted { id, evicted }
    }

    /// Connection `id` presented the token: it is never evicted.
    pub fn proven(&mut self, id: u64) {
        if let Some(held) = self.held.get_mut(&id) {
            held.proven = true;
        }
    }

    /// Connection `id` closed (or was evicted: then this does nothing).
    pub fn closed(&mut self, id: u64) {
        self.held.remove(&id);
    }

    /// Connections held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted<T: std::fmt::Debug>(a: Admission<T>) -> (u64, Option<T>) {
        match a {
            Admission::Admitted { id, evicted } => (id, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn past_the_cap_the_oldest_unproven_makes_room() {
        let mut table = Connections::new(3);
        let (a, _) = admitted(table.admit("a"));
        let (b, _) = admitted(table.admit("b"));
        let (_c, none) = admitted(table.admit("c"));
        assert_eq!(none, None);
        table.proven(a);
        // `a` showed the token: `b` is the oldest stranger.
        let (_d, evicted) = admitted(table.admit("d"));
        assert_eq!(evicted, Some("b"));
        table.closed(b); // its task ends later: nothing more happens
        assert_eq!(table.len(), 3);
        let (_e, evicted) = admitted(table.admit("e"));
        assert_eq!(evicted, Some("c"));
    }

    #[test]
    fn a_flood_never_holds_more_than_the_cap_and_the_newest_stays() {
        let mut table = Connections::new(MAX_CONNECTIONS);
        let mut last = 0;
        for n in 0..1_100 {
            last = admitted(table.admit(n)).0;
            assert!(table.len() <= MAX_CONNECTIONS);
        }
        table.proven(last);
        for n in 0..1_100 {
            admitted(table.admit(n));
        }
        assert_eq!(table.len(), MAX_CONNECTIONS);
        assert!(
            table.held.contains_key(&last),
            "a proven connection is never evicted"
        );
    }

    #[test]
    fn when_every_held_one_is_proven_the_newcomer_is_refused() {
        let mut table = Connections::new(2);
        for closer in ["a", "b"] {
            let (id, _) = admitted(table.admit(closer));
            table.proven(id);
        }
        assert_eq!(table.admit("c"), Admission::Refused);
        table.closed(0);
        assert!(matches!(
            table.admit("c"),
            Admission::Admitted { evicted: None, .. }
        ));
    }
}
