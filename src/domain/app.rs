//! Which mini-program a login, a session or a WeChat call is for.

use std::fmt;
use std::sync::Arc;

/// The name of the app that `WXLOGIN_APPID` declares, and that routes without an
/// `/apps/{app}/` prefix serve when there are several.
pub const DEFAULT_APP: &str = "default";

/// An app's name in wxlogin's configuration: 1 to 32 of `[a-z0-9_]`, so that it is safe in a
/// route, a metric label, a header and a store key. Cheap to clone, and one pointer wide:
/// every user record in the memory store holds one.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct AppName(Arc<Box<str>>);

impl PartialEq for AppName {
    fn eq(&self, other: &Self) -> bool {
        // The names of one deployment's apps are shared, not copied: most compare by address.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl std::hash::Hash for AppName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl AppName {
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = (1..=32).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        valid.then(|| Self(Arc::new(raw.into())))
    }

    pub fn default_app() -> Self {
        Self(Arc::new(DEFAULT_APP.into()))
    }

    pub fn is_default(&self) -> bool {
        **self.0 == *DEFAULT_APP
    }
}

impl AsRef<str> for AppName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppName({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_name_is_1_to_32_lowercase_letters_digits_or_underscores() {
        for good in ["shop", "club_2", "a", &"x".repeat(32), "default"] {
            assert!(AppName::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "Shop",
            "shop-1",
            "shop 1",
            &"x".repeat(33),
            "商店",
            "wx/1",
        ] {
            assert!(AppName::parse(bad).is_none(), "{bad}");
        }
    }
}
