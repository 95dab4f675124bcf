//! Housekeeping that runs beside the app: tasks that hold only a weak reference to what
//! they tend, so they end on their own once the app drops it.

use std::sync::{Arc, Weak};
use std::time::Duration;

/// Runs `work` every `period`, the first time one period from now, until `target` is
/// dropped. Must be called within a tokio runtime.
pub fn spawn_every<T: Send + Sync + 'static>(
    period: Duration,
    target: &Arc<T>,
    work: impl Fn(Arc<T>) + Send + 'static,
) {
    let target: Weak<T> = Arc::downgrade(target);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(period);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(target) = target.upgrade() else {
                return;
            };
            work(target);
        }
    });
}
