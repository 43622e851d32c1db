//! Rate limits on rendezvous requests: a plain state machine, time passed in.
//!
//! Every request makes an attached leaf send packets (a dial-back, a punch, a relay leg),
//! so neither one asker nor a crowd asking for one leaf may make it send many: requests
//! are limited per asker IP address (an asker can make new node ids at will, not new
//! addresses) and per holder. Both tables are bounded; when one is full, buckets that
//! have refilled (their owner has been quiet) are forgotten first, and if none has, the
//! request is refused.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

use superpeer_common::{NodeId, TokenBucket};

/// Requests one IP address may make per second on average...
pub const PER_ASKER_PER_SECOND: f64 = 2.0;
/// ...and at once.
pub const PER_ASKER_BURST: u32 = 10;
/// Requests for one holder per second on average, from everyone together...
pub const PER_HOLDER_PER_SECOND: f64 = 5.0;
/// ...and at once.
pub const PER_HOLDER_BURST: u32 = 20;
/// Buckets kept per table at most.
pub const MAX_TRACKED: usize = 4096;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// This asker asked too often.
    #[error("too many requests from this address")]
    Asker,
    /// This holder was asked for too often.
    #[error("too many requests for this node")]
    Holder,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct RequestLimits {
    askers: HashMap<IpAddr, TokenBucket>,
    holders: HashMap<NodeId, TokenBucket>,
}

impl RequestLimits {
    /// Whether `asker` may ask for `holder` now; takes a token from both when it may.
    pub fn allow(&mut self, now: Instant, asker: IpAddr, holder: NodeId) -> Result<(), Limited> {
        let asker_rate = (PER_ASKER_PER_SECOND, PER_ASKER_BURST);
        let Some(asker_bucket) = bucket(&mut self.askers, now, asker, asker_rate) else {
            return Err(Limited::Asker);
        };
        if !asker_bucket.try_take(now) {
            return Err(Limited::Asker);
        }
        // The asker's token is spent even when the holder's runs out: asking for a busy
        // holder is not free.
        let holder_rate = (PER_HOLDER_PER_SECOND, PER_HOLDER_BURST);
        let Some(holder_bucket) = bucket(&mut self.holders, now, holder, holder_rate) else {
            return Err(Limited::Holder);
        };
        if !holder_bucket.try_take(now) {
            return Err(Limited::Holder);
        }
        Ok(())
    }
}

/// The bucket of `key`, created (room permitting) if new.
fn bucket<K: Eq + Hash + Copy>(
    table: &mut HashMap<K, TokenBucket>,
    now: Instant,
    key: K,
    (rate, burst): (f64, u32),
) -> Option<&mut TokenBucket> {
    if !table.contains_key(&key) {
        if table.len() >= MAX_TRACKED {
            table.retain(|_, bucket| !bucket.is_full(now));
        }
        if table.len() >= MAX_TRACKED {
            return None;
        }
        table.insert(key, TokenBucket::new(now, rate, burst));
    }
    table.get_mut(&key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, n])
    }

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn one_asker_gets_its_burst_then_its_rate() {
        let now = Instant::now();
        let mut limits = RequestLimits::default();
        let allowed = (0..100u8)
            .filter(|n| limits.allow(now, ip(1), node(*n)).is_ok())
            .count();
        assert_eq!(allowed, PER_ASKER_BURST as usize);
        assert_eq!(limits.allow(now, ip(1), node(200)), Err(Limited::Asker));
        let later = now + Duration::from_secs(1);
        let more = (0..100u8)
            .filter(|n| limits.allow(later, ip(1), node(*n)).is_ok())
            .count();
        assert_eq!(more, PER_ASKER_PER_SECOND as usize);
        assert!(
            limits.allow(now, ip(2), node(1)).is_ok(),
            "another asker is not held up"
        );
    }

    #[test]
    fn a_crowd_asking_for_one_holder_gets_the_holders_burst() {
        let now = Instant::now();
        let mut limits = RequestLimits::default();
        let allowed = (0..200u8)
            .filter(|n| limits.allow(now, ip(*n), node(7)).is_ok())
            .count();
        assert_eq!(allowed, PER_HOLDER_BURST as usize);
        assert!(
            limits.allow(now, ip(250), node(8)).is_ok(),
            "another holder is not held up"
        );
    }

    #[test]
    fn the_tables_are_bounded_and_forget_quiet_askers_first() {
        let now = Instant::now();
        let mut limits = RequestLimits::default();
        for n in 0..MAX_TRACKED as u32 {
            let asker = IpAddr::from(n.to_be_bytes());
            let _ = limits.allow(now, asker, node(1));
        }
        assert_eq!(limits.askers.len(), MAX_TRACKED);
        // Every bucket is fresh (spent): nothing can be forgotten, the newcomer is refused.
        assert_eq!(
            limits.allow(now, IpAddr::from([203, 0, 113, 1]), node(2)),
            Err(Limited::Asker)
        );
        // Later, refilled buckets make room.
        let later = now + Duration::from_secs(60);
        assert!(
            limits
                .allow(later, IpAddr::from([203, 0, 113, 1]), node(2))
                .is_ok()
        );
        assert!(limits.askers.len() < MAX_TRACKED);
    }
}
