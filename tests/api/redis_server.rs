//! A real `redis-server` for the tests that need one: on a free loopback port, in a
//! temporary directory, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::tools::{self, free_port};

/// A Redis that several wxlogin instances share: one server or a cluster. The tests of
/// what Redis must do run against both.
pub trait SharedRedis {
    /// The `WXLOGIN_*` settings that point an instance at it.
    fn settings(&self) -> Vec<(&'static str, String)>;
    /// Every key it holds.
    fn all_keys(&self) -> Vec<String>;
}

impl SharedRedis for RedisServer {
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WXLOGIN_SESSION_STORE", "redis".to_owned()),
            ("WXLOGIN_REDIS_URL", self.url()),
            ("WXLOGIN_REDIS_TIMEOUT_MS", "500".to_owned()),
        ]
    }

    fn all_keys(&self) -> Vec<String> {
        self.keys()
    }
}

pub struct RedisServer {
    port: u16,
    password: Option<String>,
    dir: PathBuf,
    process: Option<Child>,
}

impl RedisServer {
    /// Starts one, or returns `None` (outside CI) when redis-server is not installed.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// Starts one that requires `password` (AUTH) from its clients.
    pub fn start_with_password(password: &str) -> Option<Self> {
        Self::start_with(Some(password.to_owned()))
    }

    fn start_with(password: Option<String>) -> Option<Self> {
        if !tools::available(
            "redis-server",
            &["--version"],
            "apt-get install -y redis-server",
        ) {
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("wxlogin-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory for Redis");
        let mut server = Self {
            port,
            password,
            dir,
            process: None,
        };
        server.restart();
        Some(server)
    }

    /// Its URL, with the password when it has one.
    pub fn url(&self) -> String {
        match &self.password {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server, as a crash or a network cut would look to wxlogin.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts the server (again) on the same port and directory, and returns once it says
    /// it accepts connections. Every write is fsynced to the append-only file, so the data
    /// survives a kill.
    pub fn restart(&mut self) {
        self.stop();
        let mut command = Command::new("redis-server");
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir);
        self.process = Some(spawn_until_ready(command));
    }

    /// Every key in the server, for tests that look at what is stored.
    pub fn keys(&self) -> Vec<String> {
        self.cli(&["KEYS", "*"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What `redis-cli` prints for `command`.
    pub fn cli(&self, command: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-u", &self.url(), "--no-auth-warning", "--raw"])
            .args(command)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT), with whatever it was sent meanwhile.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let process = self.process.as_ref().expect("the server runs");
        let sent = Command::new("kill")
            .args([signal, &process.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.process.is_some() {
            self.resume();
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `redis-server` as `command` says, and returns once it accepts connections.
pub fn spawn_until_ready(mut command: Command) -> Child {
    let mut process = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let stdout = process.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.any(|line| line.is_ok_and(|l| l.contains("Ready to accept connections")));
    assert!(ready, "redis-server exited before it was ready");
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    process
}
