//! Login codes and browser sessions: a plain state machine, no clock and no randomness of
//! its own (both come in as arguments), so its rules are tested with a fake clock.
//!
//! 1. `superpeer ui` asks the daemon (with the control token) for a code:
//!    [`Logins::issue_code`]. A code is good for one use within [`LoginLimits::code_ttl`].
//! 2. The browser opens `/login?code=...`: [`Logins::redeem`] takes the code away whatever
//!    happens next and, if it was good, opens a session whose id goes into a cookie.
//! 3. Every UI request shows the cookie: [`Logins::check`] says whether the session is
//!    open, and keeps it open for another [`LoginLimits::session_idle`] (up to
//!    [`LoginLimits::session_max_age`] in all).
//!
//! Codes and sessions are capped; the oldest goes when a new one needs its place, so a
//! user who logs in again is never locked out by sessions left behind.

use std::time::{Duration, Instant};

use super::super::server::constant_time_eq;

/// How long codes and sessions last, and how many are kept.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// A code must be used within this long.
    pub code_ttl: Duration,
    /// Codes waiting to be used at once.
    pub max_codes: usize,
    /// A session unused for this long is closed.
    pub session_idle: Duration,
    /// A session is closed this long after login, used or not.
    pub session_max_age: Duration,
    /// Sessions open at once.
    pub max_sessions: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            code_ttl: Duration::from_secs(60),
            max_codes: 8,
            session_idle: Duration::from_secs(30 * 60),
            session_max_age: Duration::from_secs(12 * 60 * 60),
            max_sessions: 8,
        }
    }
}

struct Code {
    secret: String,
    expires: Instant,
}

struct Session {
    id: String,
    created: Instant,
    last_used: Instant,
}

/// The codes waiting to be used and the sessions open.
pub struct Logins {
    limits: LoginLimits,
    codes: Vec<Code>,
    sessions: Vec<Session>,
}

impl Logins {
    pub fn new(limits: LoginLimits) -> Logins {
        Logins {
            limits,
            codes: Vec::new(),
            sessions: Vec::new(),
        }
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// Takes `secret` (random, from the caller) as a new code, good until `now + code_ttl`.
    pub fn issue_code(&mut self, now: Instant, secret: String) {
        self.codes.retain(|c| c.expires > now);
        if self.codes.len() >= self.limits.max_codes {
            self.codes.remove(0);
        }
        self.codes.push(Code {
            secret,
            expires: now + self.limits.code_ttl,
        });
    }

    /// Uses up `code`: if it was issued and has not expired, opens the session `session_id`
    /// (random, from the caller) and returns true. A code works once.
    pub fn redeem(&mut self, now: Instant, code: &str, session_id: String) -> bool {
        self.codes.retain(|c| c.expires > now);
        let Some(index) = position(self.codes.iter().map(|c| c.secret.as_str()), code) else {
            return false;
        };
        self.codes.remove(index);
        self.prune(now);
        if self.sessions.len() >= self.limits.max_sessions {
            self.sessions.remove(0);
        }
        self.sessions.push(Session {
            id: session_id,
            created: now,
            last_used: now,
        });
        true
    }

    /// Whether `session_id` names an open session; using it keeps it open.
    pub fn check(&mut self, now: Instant, session_id: &str) -> bool {
        self.prune(now);
        let found = position(self.sessions.iter().map(|s| s.id.as_str()), session_id);
        match found.and_then(|index| self.sessions.get_mut(index)) {
            Some(session) => {
                session.last_used = now;
                true
            }
            None => false,
        }
    }

    /// Closes `session_id` (logout).
    pub fn end(&mut self, session_id: &str) {
        self.sessions
            .retain(|s| !constant_time_eq(s.id.as_bytes(), session_id.as_bytes()));
    }

    /// Open sessions (after dropping the expired ones).
    #[cfg(test)]
    pub fn sessions(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.sessions.len()
    }

    fn prune(&mut self, now: Instant) {
        let limits = self.limits;
        self.sessions.retain(|s| {
            now.duration_since(s.last_used) < limits.session_idle
                && now.duration_since(s.created) < limits.session_max_age
        });
    }
}

/// Where `wanted` is among `secrets`. Every one is compared, in constant time, so the time
/// taken does not say how far a guess matched, nor where.
fn position<'a>(secrets: impl Iterator<Item = &'a str>, wanted: &str) -> Option<usize> {
    secrets.enumerate().fold(None, |found, (index, secret)| {
        if constant_time_eq(secret.as_bytes(), wanted.as_bytes()) {
            Some(index)
        } else {
            found
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_code_works_once_and_opens_a_session() {
        let t0 = Instant::now();
        let mut logins = Logins::new(LoginLimits::default());
        logins.issue_code(t0, "code".into());
        assert!(!logins.redeem(t0, "wrong", "s0".into()));
        assert!(logins.redeem(t0 + secs(1), "code", "s1".into()));
        assert!(!logins.redeem(t0 + secs(2), "code", "s2".into()));
        assert!(logins.check(t0 + secs(3), "s1"));
        assert!(!logins.check(t0 + secs(3), "s2"));
        assert!(!logins.check(t0 + secs(3), "s0"));
        assert!(!logins.check(t0 + secs(3), ""));
    }

    #[test]
    fn a_code_expires_after_its_ttl() {
        let t0 = Instant::now();
        let mut logins = Logins::new(LoginLimits::default());
        logins.issue_code(t0, "code".into());
        assert!(!logins.redeem(t0 + secs(60), "code", "s".into()));
        assert!(!logins.check(t0 + secs(60), "s"));
        logins.issue_code(t0, "code2".into());
        assert!(logins.redeem(t0 + secs(59), "code2", "s".into()));
    }

    #[test]
    fn sessions_close_when_idle_or_old_and_on_logout() {
        let limits = LoginLimits::default();
        let t0 = Instant::now();
        let mut logins = Logins::new(limits);
        logins.issue_code(t0, "a".into());
        assert!(logins.redeem(t0, "a", "idle".into()));
        assert!(logins.check(t0 + limits.session_idle - secs(1), "idle"));
        // Used a moment before, so idle only from then.
        assert!(logins.check(t0 + 2 * limits.session_idle - secs(2), "idle"));
        assert!(!logins.check(t0 + 3 * limits.session_idle, "idle"));

        logins.issue_code(t0, "b".into());
        assert!(logins.redeem(t0, "b", "busy".into()));
        let mut t = t0;
        while t < t0 + limits.session_max_age - limits.session_idle {
            t += limits.session_idle / 2;
            assert!(logins.check(t, "busy"));
        }
        assert!(!logins.check(t0 + limits.session_max_age, "busy"));

        logins.issue_code(t0, "c".into());
        assert!(logins.redeem(t0, "c", "out".into()));
        logins.end("out");
        assert!(!logins.check(t0, "out"));
    }

    #[test]
    fn codes_and_sessions_are_capped_and_the_oldest_go() {
        let limits = LoginLimits::default();
        let t0 = Instant::now();
        let mut logins = Logins::new(limits);
        for i in 0..=limits.max_codes {
            logins.issue_code(t0, format!("code{i}"));
        }
        assert!(
            !logins.redeem(t0, "code0", "x".into()),
            "the oldest code went"
        );
        for i in 1..=limits.max_sessions + 1 {
            logins.issue_code(t0, format!("more{i}"));
            assert!(logins.redeem(t0, &format!("more{i}"), format!("s{i}")));
        }
        assert_eq!(logins.sessions(t0), limits.max_sessions);
        assert!(!logins.check(t0, "s1"), "the oldest session went");
        assert!(logins.check(t0, &format!("s{}", limits.max_sessions + 1)));
    }
}
