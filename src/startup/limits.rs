//! What the open-file limit allows: raised as far as the kernel lets it, and the
//! connection cap kept under it.

/// Raises the soft limit on open files to the hard one: each connection is a descriptor,
/// and the usual soft limit (1024) is far below what the kernel would allow.
pub(super) fn raise_open_file_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE);
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok((soft, hard)), Ok(raised)) => {
            tracing::info!(
                soft_before = soft,
                soft_now = raised,
                hard,
                "open-file limit"
            );
        }
        (_, Err(err)) | (Err(err), _) => {
            tracing::warn!(error = %err, "cannot raise the open-file limit");
        }
    }
}

/// Descriptors kept for what is not a client connection: the listener, Redis, WeChat's
/// pool, the emulator in development mode, log and standard streams.
const RESERVED_DESCRIPTORS: u64 = 64;

/// `max_connections`, or fewer if the open-file limit would be reached first: at the cap,
/// idle connections make room, which an exhausted descriptor table cannot.
pub(super) fn connection_cap(max_connections: usize) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return max_connections;
    };
    let room = soft.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    match usize::try_from(room) {
        Ok(room) if room < max_connections => {
            tracing::warn!(
                max_connections,
                open_file_limit = soft,
                cap = room,
                "WXLOGIN_MAX_CONNECTIONS is above what the open-file limit allows; capping connections lower"
            );
            room
        }
        _ => max_connections,
    }
}
