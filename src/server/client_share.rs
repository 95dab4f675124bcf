//! Each client's share of the server, so that one client cannot take all of it (holding
//! connections with unfinished bodies, renewed at every body deadline, say). A client is
//! an address, an IPv6 client's whole /64. A connection from a trusted proxy carries many
//! clients, so it counts as no one's; its requests count instead, each for the address the
//! proxy forwards, while they are in progress.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::http::client_ip::{from_forwarded_for, rate_limit_key};

pub(super) struct ClientShare {
    /// Connections per client, or requests in progress per forwarded client, at most.
    pub share: usize,
    trusted_proxies: Vec<IpNet>,
    /// Requests in progress through trusted proxies, by forwarded client.
    forwarded: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientShare {
    pub fn new(share: usize, trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            share,
            trusted_proxies,
            forwarded: Mutex::default(),
        }
    }

    /// Who a connection from `peer` belongs to: `None` for a trusted proxy's.
    pub fn client_of(&self, peer: SocketAddr) -> Option<IpAddr> {
        let ip = peer.ip().to_canonical();
        let proxy = self.trusted_proxies.iter().any(|net| net.contains(&ip));
        (!proxy).then(|| rate_limit_key(ip))
    }

    /// A place for a request that a trusted proxy at `peer` forwards for a client, or
    /// `None` if that client has its share in progress already.
    pub fn claim(self: &Arc<Self>, peer: SocketAddr, headers: &HeaderMap) -> Option<Claim> {
        let forwarded =
            from_forwarded_for(peer.ip().to_canonical(), headers, &self.trusted_proxies);
        let client = rate_limit_key(forwarded);
        let mut in_progress = self.lock();
        let count = in_progress.entry(client).or_default();
        if *count >= self.share {
            return None;
        }
        *count += 1;
        Some(Claim {
            shares: Arc::clone(self),
            client,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A forwarded client's request in progress; dropping it gives the place back.
pub(super) struct Claim {
    shares: Arc<ClientShare>,
    client: IpAddr,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut in_progress = self.shares.lock();
        if let Some(count) = in_progress.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                in_progress.remove(&self.client);
            }
        }
    }
}
