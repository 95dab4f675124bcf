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
            expires_at: self.idle.map_or(ends_at, |idle| moved(now, idle, ends_at)),
            ends_at,
        }
    }

    /// Where a use at `now` moves a live session's deadline, if it must: only when less
    /// than the whole idle window is left, and then a quarter window beyond it, so that a
    /// session in steady use costs a store write once per quarter window, not per use. A
    /// session so lives at least the idle window after its last use, and at most a quarter
    /// more (Keycloak's idle grace does the same); never past its TTL.
    pub fn extended(&self, deadlines: Deadlines, now: u64) -> Option<u64> {
        let idle = self.idle?;
        // `now` counts whole seconds, and a use may come late in its second: the deadline
        // must lie past the second in which the window ends.
        let needed = now.saturating_add(idle).saturating_add(1);
        (deadlines.expires_at < needed.min(deadlines.ends_at))
            .then(|| moved(now, idle, deadlines.ends_at))
    }
}

fn moved(now: u64, idle: u64, ends_at: u64) -> u64 {
    let grace = idle.div_ceil(4);
    now.saturating_add(idle).saturating_add(grace).min(ends_at)
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

    /// Replays uses at real times, in tenths of a second, against the store's whole-second
    /// clock.
    struct Replay {
        lifetime: Lifetime,
        deadlines: Deadlines,
        moves: u64,
    }

    const LOGIN: u64 = 10_000;

    impl Replay {
        fn login(lifetime: Lifetime, tenths: u64) -> Self {
            Self {
                lifetime,
                deadlines: lifetime.at_login(tenths / 10),
                moves: 0,
            }
        }

        fn alive_at(&self, tenths: u64) -> bool {
            tenths / 10 < self.deadlines.expires_at
        }

        fn use_at(&mut self, tenths: u64) -> bool {
            if !self.alive_at(tenths) {
                return false;
            }
            if let Some(moved) = self.lifetime.extended(self.deadlines, tenths / 10) {
                self.deadlines.expires_at = moved;
                self.moves += 1;
            }
            true
        }
    }

    #[test]
    fn a_session_used_more_often_than_its_idle_window_lives_to_its_ttl_at_every_scale() {
        for idle in [1_u64, 2, 3, 5, 10, 600] {
            let ttl = idle * 6;
            for gap in (1..idle * 10).step_by((idle as usize / 10).max(1)) {
                for start in [0, 3, 9] {
                    let login = LOGIN + start;
                    let mut replay = Replay::login(sliding(ttl, idle), login);
                    let mut at = login + gap;
                    while at + 10 < login + ttl * 10 {
                        assert!(
                            replay.use_at(at),
                            "idle {idle} s, used every {gap} tenths: dead at {} tenths",
                            at - login
                        );
                        at += gap;
                    }
                    assert!(
                        !replay.alive_at(login + ttl * 10),
                        "idle {idle} s: alive past its TTL"
                    );
                }
            }
        }
    }

    #[test]
    fn an_unused_session_lives_its_idle_window_and_at_most_a_quarter_more() {
        for idle in [1_u64, 3, 8, 600] {
            let slack = idle.div_ceil(4);
            for start in [0, 5, 9] {
                let used_at = LOGIN + start;
                let mut replay = Replay::login(sliding(idle * 100, idle), LOGIN);
                assert!(replay.use_at(used_at));
                for at in used_at..used_at + idle * 10 {
                    assert!(replay.alive_at(at), "idle {idle} s: dead at {at} tenths");
                }
                assert!(
                    !replay.alive_at(used_at + (idle + slack + 1) * 10),
                    "idle {idle} s: alive well past its window"
                );
            }
        }
    }

    #[test]
    fn a_busy_session_costs_a_store_write_at_most_once_per_quarter_window() {
        let (idle, ttl) = (600, 36_000);
        let mut replay = Replay::login(sliding(ttl, idle), LOGIN);
        let mut at = LOGIN + 5;
        while at + 10 < LOGIN + ttl * 10 {
            assert!(replay.use_at(at));
            at += 10;
        }
        assert!(
            replay.moves <= ttl / (idle / 4),
            "{} moves in {ttl} s",
            replay.moves
        );
    }

    #[test]
    fn a_use_moves_the_deadline_a_quarter_window_past_the_window_and_never_past_the_ttl() {
        let lifetime = sliding(100, 32);
        let login = lifetime.at_login(1000);
        assert_eq!(
            login,
            Deadlines {
                expires_at: 1040,
                ends_at: 1100
            }
        );
        assert_eq!(lifetime.extended(login, 1007), None, "33 s of 32 left");
        assert_eq!(lifetime.extended(login, 1008), Some(1048), "32 s left");
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
