//! The apps one deployment serves (mini-programs, official accounts, websites, mobile apps), each with its own WeChat client (its appid and
//! secret) and its own access_token. Fixed at start-up, and shared read-only: no request
//! ever switches a "current app", so nothing leaks from one app's request into another's.

use std::sync::Arc;

use crate::domain::{AppKind, AppName, DEFAULT_APP};
use crate::wechat::{AccessTokens, WeChatClient};

/// One app: the client that speaks for it, and its access_token.
pub struct App {
    pub wechat: WeChatClient,
    pub access_tokens: AccessTokens,
    /// The `aud` of its JWTs.
    pub audience: String,
    /// Where its web login may send a browser back to, exactly as configured.
    pub redirect_uris: Vec<String>,
}

impl App {
    pub fn name(&self) -> &AppName {
        self.wechat.app()
    }

    pub fn appid(&self) -> &str {
        self.wechat.appid()
    }

    pub fn kind(&self) -> AppKind {
        self.wechat.kind()
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }
}

/// Every app, in name order. Cheap to clone.
#[derive(Clone)]
pub struct Apps(Arc<[Arc<App>]>);

impl Apps {
    /// `apps` must not be empty: the configuration refuses to start without one.
    pub fn new(apps: Vec<App>) -> Self {
        Self(apps.into_iter().map(Arc::new).collect())
    }

    /// The app a route's `{app}` names: by its name, or by its appid.
    pub fn find(&self, name_or_appid: &str) -> Option<&Arc<App>> {
        self.0
            .iter()
            .find(|app| app.name().as_ref() == name_or_appid)
            .or_else(|| self.0.iter().find(|app| app.appid() == name_or_appid))
    }

    /// The app of that name, as a session records it.
    pub fn named(&self, name: &AppName) -> Option<&Arc<App>> {
        self.0.iter().find(|app| app.name() == name)
    }

    /// The app that routes without an `/apps/{app}/` prefix serve: the only app, or the one
    /// named `default`; none when there are several and no `default`.
    pub fn default_app(&self) -> Option<&Arc<App>> {
        match &*self.0 {
            [only] => Some(only),
            apps => apps.iter().find(|app| app.name().as_ref() == DEFAULT_APP),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.0.iter()
    }
}
