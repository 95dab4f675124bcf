//! A real Redis Cluster for the tests that need one: three primaries and three replicas of
//! `redis-server --cluster-enabled yes` on free loopback ports, each in its own temporary
//! directory, created with `redis-cli --cluster create` and stopped when dropped. Every
//! wait polls the cluster's own answers under a deadline; none sleeps a fixed time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::SharedRedis;
use crate::tools::{self, free_port};

/// How long a node may stay silent before the others call it failed. Short, so that a
/// failover takes about a second, not the default fifteen.
const NODE_TIMEOUT_MS: &str = "500";
const DEADLINE: Duration = Duration::from_secs(60);

pub struct RedisCluster {
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    dir: PathBuf,
    process: Option<Child>,
}

/// One line of `CLUSTER NODES`, as far as the tests care.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    pub failed: bool,
    /// The primary's id, for a replica.
    pub replica_of: Option<String>,
    /// The ranges of slots it serves.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts one, or returns `None` (outside CI) when redis-server is not installed.
    pub async fn start() -> Option<Self> {
        if !tools::available(
            "redis-server",
            &["--version"],
            "apt-get install -y redis-server",
        ) {
            return None;
        }
        let nodes: Vec<Node> = (0..6).map(|_| Node::start()).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("redis-cli runs");
        let cluster = Self { nodes };
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster
            .wait_until("every node sees a whole, replicated cluster", |c| {
                c.live_ports().iter().all(|&port| {
                    let info = c.cli(port, &["CLUSTER", "INFO"]);
                    info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6")
                }) && c.replicas_linked()
            })
            .await;
        Some(cluster)
    }

    /// The seed list for `WXLOGIN_REDIS_URL`: the first `n` nodes.
    pub fn seeds(&self, n: usize) -> String {
        self.nodes
            .iter()
            .take(n)
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The cluster's view of itself, from the first node that answers.
    pub fn topology(&self) -> Vec<ClusterNode> {
        for port in self.live_ports() {
            let text = self.cli(port, &["CLUSTER", "NODES"]);
            if !text.trim().is_empty() {
                return text.lines().filter_map(parse_node).collect();
            }
        }
        panic!("no node of the cluster answers");
    }

    /// The primaries that serve, with their slots.
    pub fn primaries(&self) -> Vec<ClusterNode> {
        self.topology()
            .into_iter()
            .filter(|n| n.primary && !n.failed)
            .collect()
    }

    /// The node that serves `slot` now.
    pub fn owner_of(&self, slot: u16) -> ClusterNode {
        self.primaries()
            .into_iter()
            .find(|n| {
                n.slots
                    .iter()
                    .any(|&(from, to)| (from..=to).contains(&slot))
            })
            .expect("every slot has an owner")
    }

    /// How many keys each serving primary holds, by port.
    pub fn keys_per_primary(&self) -> HashMap<u16, u64> {
        self.primaries()
            .into_iter()
            .map(|n| {
                let count = self.cli(n.port, &["DBSIZE"]).trim().parse().unwrap_or(0);
                (n.port, count)
            })
            .collect()
    }

    /// Every key in the cluster, from every serving primary.
    pub fn keys(&self) -> Vec<String> {
        self.primaries()
            .into_iter()
            .flat_map(|n| {
                self.cli(n.port, &["KEYS", "*"])
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// What `redis-cli -c` (following redirections) prints for `command`.
    pub fn cli_any(&self, command: &[&str]) -> String {
        let port = self.live_ports()[0];
        let output = Command::new("redis-cli")
            .args(["-c", "-p", &port.to_string(), "--raw"])
            .args(command)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What `redis-cli` prints for `command`, sent to the node on `port` itself.
    pub fn cli(&self, port: u16, command: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--raw"])
            .args(command)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until every replica has every write its primary took.
    pub async fn wait_until_replicated(&self) {
        self.wait_until("every replica has caught up with its primary", |c| {
            c.replicas_caught_up()
        })
        .await;
    }

    /// Kills the primary on `port`, as a crashed machine would look.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        node.stop();
    }

    /// Waits until a replica of the killed primary on `port` serves its slots and every
    /// live node says the cluster is whole again.
    pub async fn wait_for_failover(&self, port: u16) {
        self.wait_until("a replica takes over the killed primary's slots", |c| {
            let topology = c.topology();
            let serving = topology.iter().filter(|n| n.primary && !n.failed);
            topology.iter().any(|n| n.port == port && n.failed)
                && serving.filter(|n| !n.slots.is_empty()).count() == 3
                && c.live_ports()
                    .iter()
                    .all(|&p| c.cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        })
        .await;
    }

    /// Moves `count` slots from the primary on `from` to the one on `to`, the way an
    /// operator does with `redis-cli --cluster reshard`.
    pub fn reshard(&self, from: &ClusterNode, to: &ClusterNode, count: u16) {
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", from.port))
            .args(["--cluster-from", &from.id, "--cluster-to", &to.id])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "reshard failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// How many times the node on `port` has answered MOVED since it started.
    pub fn moved_replies(&self, port: u16) -> u64 {
        self.cli(port, &["INFO", "errorstats"])
            .lines()
            .find_map(|line| line.strip_prefix("errorstat_MOVED:count="))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0)
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.process.is_some())
            .map(|n| n.port)
            .collect()
    }

    fn replicas_linked(&self) -> bool {
        self.topology()
            .iter()
            .filter(|n| !n.primary && !n.failed)
            .all(|n| {
                self.cli(n.port, &["INFO", "replication"])
                    .contains("master_link_status:up")
            })
    }

    fn replicas_caught_up(&self) -> bool {
        let topology = self.topology();
        topology
            .iter()
            .filter(|n| n.primary && !n.failed)
            .all(|primary| {
                let offset = info_field(
                    &self.cli(primary.port, &["INFO", "replication"]),
                    "master_repl_offset",
                );
                topology
                    .iter()
                    .filter(|n| !n.failed && n.replica_of.as_deref() == Some(primary.id.as_str()))
                    .all(|replica| {
                        let info = self.cli(replica.port, &["INFO", "replication"]);
                        info.contains("master_link_status:up")
                            && info_field(&info, "slave_repl_offset") >= offset
                    })
            })
    }

    /// Polls the cluster's answers without blocking the runtime that wxlogin runs on.
    async fn wait_until(&self, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "still not true after a minute: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl SharedRedis for RedisCluster {
    /// Two of the six nodes as seeds: the client learns the others from them.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WXLOGIN_SESSION_STORE", "redis".to_owned()),
            ("WXLOGIN_REDIS_MODE", "cluster".to_owned()),
            ("WXLOGIN_REDIS_URL", self.seeds(2)),
            ("WXLOGIN_REDIS_TIMEOUT_MS", "500".to_owned()),
        ]
    }

    fn all_keys(&self) -> Vec<String> {
        self.keys()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
            let _ = std::fs::remove_dir_all(&node.dir);
        }
    }
}

impl Node {
    fn start() -> Self {
        let port = free_port();
        let bus_port = free_port();
        let dir =
            std::env::temp_dir().join(format!("wxlogin-cluster-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory for Redis");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-port", &bus_port.to_string()])
            .args(["--cluster-node-timeout", NODE_TIMEOUT_MS])
            // A replica takes over however long it was cut off: the test kills on purpose.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir);
        let process = crate::redis_server::spawn_until_ready(command);
        Self {
            port,
            dir,
            process: Some(process),
        }
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

fn parse_node(line: &str) -> Option<ClusterNode> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [id, address, flags, primary_id, ..] = fields[..] else {
        return None;
    };
    let port = address.split(['@', ':']).nth(1)?.parse().ok()?;
    let slots = fields
        .get(8..)
        .unwrap_or_default()
        .iter()
        .filter(|range| !range.starts_with('['))
        .filter_map(|range| match range.split_once('-') {
            Some((from, to)) => Some((from.parse().ok()?, to.parse().ok()?)),
            None => {
                let slot = range.parse().ok()?;
                Some((slot, slot))
            }
        })
        .collect();
    Some(ClusterNode {
        id: id.to_owned(),
        port,
        primary: flags.contains("master"),
        failed: flags.contains("fail") && !flags.contains("fail?"),
        replica_of: (primary_id != "-").then(|| primary_id.to_owned()),
        slots,
    })
}

fn info_field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}
