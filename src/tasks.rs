//! The app's background tasks, owned by the app: dropping [`Tasks`] stops every one, so
//! nothing outlives what it tends, and nothing needs to hold it weakly to find out.

use std::time::Duration;

use tokio::task::JoinSet;

/// Housekeeping that runs beside the app (a store's sweep, a Redis probe, a certificate
/// reload). Aborted when dropped.
#[derive(Default)]
pub struct Tasks(JoinSet<()>);

impl Tasks {
    /// Runs `work` on `target` every `period`, the first time one period from now. Must be
    /// called within a tokio runtime.
    pub fn every<T: Send + 'static>(
        &mut self,
        period: Duration,
        target: T,
        mut work: impl FnMut(&T) + Send + 'static,
    ) {
        self.0.spawn(async move {
            let mut every = tokio::time::interval(period);
            every.tick().await;
            loop {
                every.tick().await;
                work(&target);
            }
        });
    }

    /// Runs `task` until it ends or the tasks are dropped.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_runs_each_period_and_stops_when_the_tasks_are_dropped() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Tasks::default();
        tasks.every(Duration::from_secs(10), Arc::clone(&runs), |runs| {
            runs.fetch_add(1, Ordering::SeqCst);
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        drop(tasks);
        tokio::task::yield_now().await;
        assert_eq!(
            Arc::strong_count(&runs),
            1,
            "the task let go of what it tended"
        );
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
