//! When a session ends: a hard limit from its login (`session_ttl_secs`), and, with sliding
//! expiry on, an idle limit that each use pushes forward, never past the hard one.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    ttl: u64,
    idle: Option<u64>,
}

/// A session's two deadlines, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The one that comes first: what `expires_in` counts down to.
    pub expires_at: u64,
    /// Its login plus the TTL, which no use extends.
    pub ends_at: u64,
}

impl Lifetime {
    pub fn new(ttl: Duration, idle: Option<Duration>) -> Self {
        Self {
            ttl: ttl.as_secs(),
            idle: idle.map(|idle| idle.as_secs()).filter(|&idle| idle > 0),
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl
    }

    pub fn is_sliding(&self) -> bool {
        self.idle.is_some()
    }

    /// The deadlines of a session that logs in at `now`.
    pub fn at_login(&self, now: u64) -> Deadlines {
        let ends_at = now.saturating_add(self.ttl);
        Deadlines {
            expires_at: self.idle_deadline(now, ends_at),
            ends_at,
        }
    }

    /// Where a use at `now` moves a live session's deadline, if it should move: only once
    /// less than half the idle window is left, so that a store writes at most once per
    /// half window for a session in steady use, not on every lookup.
    pub fn extended(&self, deadlines: Deadlines, now: u64) -> Option<u64> {
        let idle = self.idle?;
        let left = deadlines.expires_at.saturating_sub(now);
        let moved = self.idle_deadline(now, deadlines.ends_at);
        (left.saturating_mul(2) < idle && moved > deadlines.expires_at).then_some(moved)
    }

    fn idle_deadline(&self, now: u64, ends_at: u64) -> u64 {
        self.idle
            .map_or(ends_at, |idle| now.saturating_add(idle).min(ends_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sliding(ttl: u64, idle: u64) -> Lifetime {
        Lifetime::new(Duration::from_secs(ttl), Some(Duration::from_secs(idle)))
    }

    #[test]
    fn without_an_idle_limit_a_session_ends_at_its_ttl_and_never_moves() {
        let fixed = Lifetime::new(Duration::from_secs(100), None);
        let login = fixed.at_login(1000);
        assert_eq!(
            login,
            Deadlines {
                expires_at: 1100,
                ends_at: 1100
            }
        );
        assert_eq!(fixed.extended(login, 1099), None);
    }

    #[test]
    fn a_use_moves_the_deadline_only_past_half_the_window_and_never_past_the_ttl() {
        let lifetime = sliding(100, 30);
        let login = lifetime.at_login(1000);
        assert_eq!(
            login,
            Deadlines {
                expires_at: 1030,
                ends_at: 1100
            }
        );
        assert_eq!(lifetime.extended(login, 1010), None, "20 s of 30 left");
        assert_eq!(lifetime.extended(login, 1016), Some(1046), "14 s left");
        let late = Deadlines {
            expires_at: 1090,
            ends_at: 1100,
        };
        assert_eq!(
            lifetime.extended(late, 1080),
            Some(1100),
            "capped at the TTL"
        );
        let last = Deadlines {
            expires_at: 1100,
            ends_at: 1100,
        };
        assert_eq!(lifetime.extended(last, 1095), None, "nothing left to move");
    }
}
