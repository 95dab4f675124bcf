//! The handles of the series that the bulk of requests record, found without the
//! recorder's per-call key building.

use std::sync::{PoisonError, RwLock};

use metrics::{Counter, Key, Label, Recorder};
use metrics_exporter_prometheus::PrometheusRecorder;

use super::METADATA;

/// Series' handles registered on first use and found again by their labels. The
/// recorder's own lookup builds, hashes and copies a key on every call; the bulk of
/// requests (the successful ones) skip that here. The labels are small fixed sets: routes
/// are patterns, apps come from the configuration.
pub(super) struct HandleCache<K, V>(RwLock<Vec<(K, V)>>);

impl<K, V> Default for HandleCache<K, V> {
    fn default() -> Self {
        Self(RwLock::default())
    }
}

impl<K, V: Clone> HandleCache<K, V> {
    /// The handle whose labels `is` accepts, or the one `register` makes (once, however
    /// many ask at the same time).
    pub(super) fn get(&self, is: impl Fn(&K) -> bool, register: impl FnOnce() -> (K, V)) -> V {
        let find = |entries: &[(K, V)]| {
            entries
                .iter()
                .find(|(labels, _)| is(labels))
                .map(|(_, handle)| handle.clone())
        };
        if let Some(handle) = find(&self.0.read().unwrap_or_else(PoisonError::into_inner)) {
            return handle;
        }
        let mut entries = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = find(&entries) {
            return handle;
        }
        let (labels, handle) = register();
        entries.push((labels, handle.clone()));
        handle
    }
}

/// One counter's series that differ only by route (and app, where it has one).
pub(super) struct RouteCounters {
    name: &'static str,
    label: Label,
    by_route: HandleCache<(Box<str>, Option<Box<str>>), Counter>,
}

impl RouteCounters {
    pub(super) fn new(name: &'static str, label: (&'static str, &'static str)) -> Self {
        Self {
            name,
            label: Label::from_static_parts(label.0, label.1),
            by_route: HandleCache::default(),
        }
    }

    pub(super) fn get(
        &self,
        recorder: &PrometheusRecorder,
        route: &str,
        app: Option<&str>,
    ) -> Counter {
        self.by_route.get(
            |(known, known_app)| **known == *route && known_app.as_deref() == app,
            || {
                let mut labels = vec![Label::new("route", route.to_owned())];
                if let Some(app) = app {
                    labels.push(Label::new("app", app.to_owned()));
                }
                labels.push(self.label.clone());
                let key = Key::from_parts(self.name, labels);
                let counter = recorder.register_counter(&key, &METADATA);
                ((route.into(), app.map(Into::into)), counter)
            },
        )
    }
}
