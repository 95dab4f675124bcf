//! The kinds of WeChat app one deployment can serve, and what each trades a code with.

use std::fmt;

/// What an app is to WeChat, which decides how its login code is traded and what its
/// sessions can do. A mini-program's session holds a session_key; the others' never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AppKind {
    /// `wx.login()` codes, traded with `sns/jscode2session`.
    #[default]
    MiniProgram,
    /// H5 pages inside WeChat: codes from `connect/oauth2/authorize`.
    OfficialAccount,
    /// "Log in with WeChat" on a website: codes from `connect/qrconnect`.
    Website,
    /// A mobile app's OpenSDK `SendAuth` codes.
    MobileApp,
}

impl AppKind {
    pub const ALL: [Self; 4] = [
        Self::MiniProgram,
        Self::OfficialAccount,
        Self::Website,
        Self::MobileApp,
    ];

    /// The kind as the configuration spells it.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MiniProgram => "miniprogram",
            Self::OfficialAccount => "official_account",
            Self::Website => "website",
            Self::MobileApp => "mobile_app",
        }
    }

    /// Whether a user's browser can be sent to WeChat's consent page for a code: only an
    /// official account's H5 pages and a website's QR login have one.
    pub fn has_consent_page(self) -> bool {
        matches!(self, Self::OfficialAccount | Self::Website)
    }
}

impl AppKind {
    /// Whether WeChat gives the app an access_token of its own (`cgi-bin/stable_token`):
    /// a mini-program and an official account have one; a website or mobile app of the
    /// Open Platform does not.
    pub fn has_access_token(self) -> bool {
        matches!(self, Self::MiniProgram | Self::OfficialAccount)
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_spelling_and_nothing_else_parses() {
        for kind in AppKind::ALL {
            assert_eq!(AppKind::parse(kind.as_str()), Some(kind));
        }
        for bad in ["", "MiniProgram", "official-account", "h5", "app"] {
            assert_eq!(AppKind::parse(bad), None, "{bad}");
        }
        assert_eq!(AppKind::default(), AppKind::MiniProgram);
    }
}
