//! The memory store's index of users: the record each user's live sessions share, found by
//! app and openid when the user logs in again. It owns no lifetimes: the sessions cache
//! does, and its eviction listener hands over the user of each session that goes; the
//! next change to the index takes out those no session holds any more. So a user costs
//! one pointer in a hash table here, not a cache entry of their own.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::domain::{AppName, WxSession};
use crate::session::{User, UserId};

#[derive(Default)]
pub(super) struct UserIndex {
    table: Mutex<Table>,
    /// Keyed per process, so nobody can aim openids at one bucket.
    hasher: RandomState,
}

/// Users waiting in `leaving` at most: past it the oldest is left to [`UserIndex::sweep`].
/// Few wait at a time (most leave at the next change), and a user joins the queue only
/// once, which takes a look along it.
const LEAVING_MAX: usize = 1024;
/// Leaving users looked at per change: more than one arrives per change, so the queue
/// drains, and a change never pays for a long one.
const SETTLE_PER_CHANGE: usize = 4;

#[derive(Default)]
struct Table {
    users: HashTable<Arc<User>>,
    /// Users one of whose sessions has gone. moka may still hold its copy of the session for
    /// a while (until its housekeeping runs again, and its hash table's epoch-deferred drop
    /// after that), and the user may have other sessions, so
    /// whether the user has any left is looked at later, a few at each change.
    leaving: VecDeque<Arc<User>>,
}

impl Table {
    /// Looks at up to `most` leaving users: one that only this index still holds (here and in
    /// `leaving`) is taken out; one still held goes to the back of the queue.
    fn settle(&mut self, hasher: &RandomState, most: usize) {
        for _ in 0..most.min(self.leaving.len()) {
            let Some(user) = self.leaving.pop_front() else {
                return;
            };
            if Arc::strong_count(&user) > 2 {
                self.leaving.push_back(user);
                continue;
            }
            let hash = hasher.hash_one(user.id());
            if let Ok(entry) = self
                .users
                .find_entry(hash, |indexed| Arc::ptr_eq(indexed, &user))
            {
                entry.remove();
            }
        }
    }

    fn leave(&mut self, user: &Arc<User>) {
        // Each copy here counts as a holder: one per user keeps the count readable.
        if self
            .leaving
            .iter()
            .any(|waiting| Arc::ptr_eq(waiting, user))
        {
            return;
        }
        if self.leaving.len() >= LEAVING_MAX {
            self.leaving.pop_front();
        }
        self.leaving.push_back(Arc::clone(user));
    }
}

impl UserIndex {
    /// The user record that `login` makes current: the existing one given the new key, so
    /// that every live session of the user moves to it, or a new one.
    pub(super) fn newest(&self, app: &AppName, login: WxSession) -> Arc<User> {
        let id = UserId {
            app: app.clone(),
            openid: login.openid,
        };
        let hash = self.hasher.hash_one(&id);
        let mut table = self.lock();
        table.settle(&self.hasher, SETTLE_PER_CHANGE);
        let entry = table.users.entry(
            hash,
            |user| *user.id() == id,
            |user| self.hasher.hash_one(user.id()),
        );
        match entry {
            Entry::Occupied(mut entry) => {
                let user = entry.get();
                if let Some(key) = login.session_key {
                    user.replace_session_key(key);
                }
                // A unionid can appear once the user follows a linked account: then a new
                // record takes over, and the old one's sessions keep the key just set.
                if user.unionid() == login.unionid.as_ref() {
                    return Arc::clone(user);
                }
                let user = Arc::new(User::with_key(id, login.unionid, login.session_key));
                *entry.get_mut() = Arc::clone(&user);
                user
            }
            Entry::Vacant(entry) => {
                let user = Arc::new(User::with_key(id, login.unionid, login.session_key));
                entry.insert(Arc::clone(&user));
                user
            }
        }
    }

    /// Called as a session of `user` goes: the user leaves the index once no session holds
    /// the record. Logins clone records only under the lock, so none can pick one up
    /// between that check and the removal.
    pub(super) fn session_gone(&self, user: &Arc<User>) {
        let mut table = self.lock();
        table.settle(&self.hasher, SETTLE_PER_CHANGE);
        table.leave(user);
    }

    /// Takes out every user no session holds any more; returns how many. For what the
    /// queue of leaving users let go of, now and then, off the request path.
    pub(super) fn sweep(&self) -> usize {
        let mut table = self.lock();
        table.leaving.clear();
        let before = table.users.len();
        table.users.retain(|user| Arc::strong_count(user) > 1);
        if table.users.capacity() > 4 * table.users.len().max(1024) {
            table
                .users
                .shrink_to_fit(|user| self.hasher.hash_one(user.id()));
        }
        before - table.users.len()
    }

    /// How many users are indexed, once those that have left are out.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        let mut table = self.lock();
        let all = table.leaving.len();
        table.settle(&self.hasher, all);
        table.users.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
