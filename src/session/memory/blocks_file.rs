//! The memory store's blocks on disk (`WXLOGIN_BLOCKS_FILE`). Losing sessions at a
//! restart fails safe; losing blocks would let a blocked user back in, so each change is
//! written to a new file beside the old one, synced, and renamed over it: a crash leaves
//! the old file or the new one, never half of either. The file is for wxlogin's user only,
//! since it holds operators' reasons.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::{AppName, OpenId};
use crate::session::{Block, UserId};

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    blocks: Vec<StoredBlock>,
}

#[derive(Serialize, Deserialize)]
struct StoredBlock {
    app: String,
    openid: String,
    until: u64,
    reason: String,
}

pub struct BlocksFile {
    path: PathBuf,
    /// One write at a time, each with the blocks as they are when it starts, so that an
    /// older list never lands after a newer one.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlocksFileError {
    #[error("cannot read WXLOGIN_BLOCKS_FILE {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("WXLOGIN_BLOCKS_FILE {path} is not a blocks file of this wxlogin: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl BlocksFile {
    /// The file at `path` and the blocks in it that still hold at `now`. No file yet holds
    /// none: the first start.
    pub async fn open(
        path: PathBuf,
        now: u64,
    ) -> Result<(Self, HashMap<UserId, Block>), BlocksFileError> {
        let reading = path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(reading))
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err)));
        let blocks = match read {
            Ok(bytes) => parse(&bytes, now).map_err(|reason| BlocksFileError::Invalid {
                path: path.clone(),
                reason,
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(source) => return Err(BlocksFileError::Read { path, source }),
        };
        let file = Self {
            path,
            writing: tokio::sync::Mutex::default(),
        };
        Ok((file, blocks))
    }

    /// Writes the blocks that `change` leaves, once it has run; `change` runs inside this
    /// file's turn, so that the writes land in the order of the changes.
    pub async fn save_after(
        &self,
        change: impl FnOnce() -> Vec<(UserId, Block)>,
    ) -> std::io::Result<()> {
        let _turn = self.writing.lock().await;
        let stored = Stored {
            version: VERSION,
            blocks: change()
                .into_iter()
                .map(|(user, block)| StoredBlock {
                    app: user.app.as_ref().to_owned(),
                    openid: user.openid.as_ref().to_owned(),
                    until: block.until,
                    reason: block.reason,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(std::io::Error::other)?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || replace(&path, &bytes))
            .await
            .map_err(std::io::Error::other)?
    }
}

fn parse(bytes: &[u8], now: u64) -> Result<HashMap<UserId, Block>, String> {
    let stored: Stored = serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
    if stored.version != VERSION {
        return Err(format!(
            "version {}, where {VERSION} is known",
            stored.version
        ));
    }
    let mut blocks = HashMap::new();
    for block in stored.blocks {
        let (Some(app), Some(openid)) = (AppName::parse(&block.app), OpenId::parse(&block.openid))
        else {
            return Err(format!("an invalid user {} {}", block.app, block.openid));
        };
        if block.until > now {
            let (until, reason) = (block.until, block.reason);
            blocks.insert(UserId { app, openid }, Block { until, reason });
        }
    }
    Ok(blocks)
}

/// Replaces the file at `path` with `bytes` in one step.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.tmp", std::process::id()));
    let temporary = dir.map_or_else(|| PathBuf::from(&name), |dir| dir.join(&name));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    // The rename is durable once the directory is.
    #[cfg(unix)]
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_keeps_the_blocks_that_still_hold_and_refuses_what_it_cannot_read() {
        let file = br#"{"version": 1, "blocks": [
            {"app": "default", "openid": "oLater", "until": 200, "reason": "r"},
            {"app": "default", "openid": "oOver", "until": 100, "reason": ""}
        ]}"#;
        let blocks = parse(file, 100).expect("a blocks file");
        assert_eq!(blocks.len(), 1);
        let (user, block) = blocks.into_iter().next().expect("one block");
        assert_eq!(user.openid.as_ref(), "oLater");
        assert_eq!(block.until, 200);
        for bad in [
            &b"not json"[..],
            br#"{"version": 2, "blocks": []}"#,
            br#"{"version": 1, "blocks": [{"app": "Bad App", "openid": "o", "until": 1, "reason": ""}]}"#,
        ] {
            assert!(parse(bad, 0).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
