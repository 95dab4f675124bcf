//! How a WeChat call can fail. Nothing here carries the request URL: it holds the secret.

use std::borrow::Cow;

use reqwest::StatusCode;

/// Errcodes worth a label value of their own beyond those [`ErrCode`] names.
const LABELLED_ERRCODES: &[i64] = &[40001, 41001, 42001, 45009, 87009];

#[derive(Debug, thiserror::Error)]
pub enum WeChatError {
    /// WeChat answered, with a non-zero `errcode`.
    #[error("WeChat answered errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// No complete answer within the configured timeout.
    #[error("WeChat did not answer in time")]
    Timeout,
    /// Connection refused, reset, TLS failure… The error has had its URL stripped.
    #[error("could not reach WeChat")]
    Unreachable(#[source] reqwest::Error),
    /// Something between us and WeChat (a proxy, a load balancer) answered non-200.
    #[error("WeChat answered HTTP {0}")]
    Status(StatusCode),
    /// A 200 whose body is not the JSON WeChat documents (an HTML page, garbage…).
    #[error("WeChat sent an unreadable answer: {0}")]
    Malformed(&'static str),
    /// WeChat named a snapshot user (`is_snapshotuser: 1`): an official-account page opened
    /// in WeChat's preview mode, by a virtual account that is nobody.
    #[error("WeChat named a snapshot (preview-mode) user")]
    SnapshotUser,
    /// Not attempted: as many WeChat calls as allowed are in flight already.
    #[error("too many WeChat calls in flight; this one was not made")]
    Overloaded,
    /// The store that replicas share the access_token through (Redis) failed.
    #[error("the shared access_token store failed")]
    TokenStore(#[source] crate::redis_conn::StoreError),
    /// The call needed an access_token, and none could be had: the cause says why.
    #[error("could not get an access_token")]
    AccessToken(#[source] Box<WeChatError>),
    /// The access_token was reported rejected and `stable_token` hands it out still, but
    /// WeChat's limit on forced refreshes (20 a day, 30 s apart, per app) allows none for
    /// this long.
    #[error(
        "WeChat's limit on forced access_token refreshes allows the next in {retry_after_secs} s"
    )]
    ForceRefreshLimited { retry_after_secs: u64 },
}

impl WeChatError {
    /// Wraps a reqwest error with the URL removed, since our URL carries the app secret.
    pub(crate) fn transport(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::Timeout
        } else {
            Self::Unreachable(err.without_url())
        }
    }

    /// 40001 (invalid or overwritten) or 42001 (expired): the access_token needs replacing.
    pub fn rejects_access_token(&self) -> bool {
        matches!(self.raw_errcode(), Some(40001 | 42001))
    }

    /// The seconds until WeChat's limit allows a forced refresh, if that is what failed.
    pub fn force_refresh_wait(&self) -> Option<u64> {
        match self {
            Self::ForceRefreshLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::AccessToken(cause) => cause.force_refresh_wait(),
            _ => None,
        }
    }

    /// The call, or the access_token it needed, was shed under load.
    pub fn is_overloaded(&self) -> bool {
        match self {
            Self::Overloaded => true,
            Self::AccessToken(cause) => cause.is_overloaded(),
            _ => false,
        }
    }

    /// The failure to get an access_token, when that is what went wrong.
    pub fn access_token_failure(&self) -> Option<&WeChatError> {
        match self {
            Self::AccessToken(cause) => Some(cause),
            _ => None,
        }
    }

    /// The `errcode` WeChat answered, if it answered one.
    pub fn raw_errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// What the `errcode`, if any, means for us.
    pub fn errcode(&self) -> Option<ErrCode> {
        self.raw_errcode().map(ErrCode::from)
    }

    /// What came of a call, as the `outcome` label of the call metrics.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Self::Api { .. } | Self::SnapshotUser => "answered",
            Self::Timeout => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Status(_) => "bad_status",
            _ => "malformed",
        }
    }

    /// The errcode as the `errcode` label of the call metrics: empty without an answer, and
    /// "other" for an errcode wxlogin neither names nor lists, so that a misbehaving
    /// upstream cannot mint new series without end.
    pub fn errcode_label(&self) -> Cow<'static, str> {
        match self.raw_errcode() {
            None => Cow::Borrowed(""),
            Some(code)
                if matches!(ErrCode::from(code), ErrCode::Other(_))
                    && !LABELLED_ERRCODES.contains(&code) =>
            {
                Cow::Borrowed("other")
            }
            Some(code) => Cow::Owned(code.to_string()),
        }
    }

    /// WeChat's request id (`rid: …` in errmsg), which WeChat support asks for.
    pub fn rid(&self) -> Option<&str> {
        match self {
            Self::Api { errmsg, .. } => rid(errmsg),
            _ => None,
        }
    }
}

/// The errcodes that wxlogin tells apart (docs/http-api.md's error table says what each answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrCode {
    /// -1: system busy, worth one retry.
    Busy,
    /// 40029: garbage, expired or from another appid.
    InvalidCode,
    /// 40163: the code was used already.
    CodeUsed,
    /// 40226: WeChat blocks this high-risk user.
    UserBlocked,
    /// 45011: the per-user rate limit.
    RateLimited,
    /// Our own appid, secret or IP whitelist is wrong, or the secret is frozen: an
    /// operator must act.
    Misconfigured(i64),
    /// Anything else.
    Other(i64),
}

impl From<i64> for ErrCode {
    fn from(code: i64) -> Self {
        match code {
            -1 => Self::Busy,
            40029 => Self::InvalidCode,
            40163 => Self::CodeUsed,
            40226 => Self::UserBlocked,
            45011 => Self::RateLimited,
            40013 | 40125 | 41002 | 41004 | 40164 | 40243 | 89501 | 89503 | 89506 | 89507 => {
                Self::Misconfigured(code)
            }
            other => Self::Other(other),
        }
    }
}

/// The most of an errmsg that goes into a log line: WeChat's are a sentence and a rid.
const MAX_ERRMSG_CHARS: usize = 200;

/// Query parameters whose values are secrets or one-time codes: an upstream that echoes the
/// request's URL (a proxy, a broken stub) must not put them into our logs.
const REDACTED_PARAMETERS: &[&str] = &["secret=", "access_token=", "js_code=", "code="];

/// WeChat's errmsg as it may be logged: on one line (control characters become spaces),
/// at most [`MAX_ERRMSG_CHARS`] characters, and with the value of any secret-bearing query
/// parameter it quotes replaced by `<redacted>`.
pub(super) fn sanitized_errmsg(raw: &str) -> String {
    let mut clean: String = raw
        .chars()
        .take(MAX_ERRMSG_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    for parameter in REDACTED_PARAMETERS {
        let mut from = 0;
        while let Some(at) = clean[from..].to_ascii_lowercase().find(parameter) {
            let start = from + at + parameter.len();
            let end = clean[start..]
                .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == ',')
                .map_or(clean.len(), |len| start + len);
            clean.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    clean
}

/// Finds the request id in an errmsg such as `invalid code, rid: 6512ab-…` or
/// `… hints: [ req_id: Abc123 ]`.
fn rid(errmsg: &str) -> Option<&str> {
    let start = ["rid:", "req_id:"]
        .iter()
        .find_map(|tag| errmsg.find(tag).map(|at| at + tag.len()))?;
    let id = errmsg[start..].trim_start();
    let end = id
        .find(|c: char| c.is_whitespace() || matches!(c, ']' | ',' | ';'))
        .unwrap_or(id.len());
    Some(&id[..end]).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_are_classified_as_the_api_table_says() {
        for (code, kind) in [
            (-1, ErrCode::Busy),
            (40029, ErrCode::InvalidCode),
            (40163, ErrCode::CodeUsed),
            (40226, ErrCode::UserBlocked),
            (45011, ErrCode::RateLimited),
            (40013, ErrCode::Misconfigured(40013)),
            (40125, ErrCode::Misconfigured(40125)),
            (41002, ErrCode::Misconfigured(41002)),
            (41004, ErrCode::Misconfigured(41004)),
            (40164, ErrCode::Misconfigured(40164)),
            (40243, ErrCode::Misconfigured(40243)),
            (89503, ErrCode::Misconfigured(89503)),
            (40001, ErrCode::Other(40001)),
            (61024, ErrCode::Other(61024)),
        ] {
            assert_eq!(ErrCode::from(code), kind, "{code}");
        }
    }

    #[test]
    fn unknown_errcodes_share_one_label_value() {
        let label = |err: WeChatError| format!("{}/{}", err.outcome_label(), err.errcode_label());
        let err = |errcode| WeChatError::Api {
            errcode,
            errmsg: String::new(),
        };
        assert_eq!(label(err(40029)), "answered/40029");
        assert_eq!(label(err(42001)), "answered/42001");
        assert_eq!(label(err(61024)), "answered/other");
        assert_eq!(label(err(-1)), "answered/-1");
        assert_eq!(label(WeChatError::Timeout), "timeout/");
    }

    #[test]
    fn an_errmsg_is_logged_on_one_line_bounded_and_without_secrets_it_quotes() {
        let echoed = "bad: GET /sns/jscode2session?appid=wx1&secret=S3CR3T&js_code=C0DE&grant_type=x\r\nX: 1";
        let clean = sanitized_errmsg(echoed);
        assert!(
            !clean.contains("S3CR3T") && !clean.contains("C0DE"),
            "{clean}"
        );
        assert!(
            clean.contains("appid=wx1") && clean.contains("grant_type=x"),
            "{clean}"
        );
        assert!(!clean.contains('\n') && !clean.contains('\r'), "{clean}");
        assert_eq!(sanitized_errmsg(&"é".repeat(500)).chars().count(), 200);
        assert_eq!(
            sanitized_errmsg("invalid code, rid: 6512ab-1"),
            "invalid code, rid: 6512ab-1"
        );
        let token = sanitized_errmsg("?ACCESS_TOKEN=abc&x=1");
        assert_eq!(token, "?ACCESS_TOKEN=<redacted>&x=1");
    }

    #[test]
    fn the_rid_is_found_in_both_errmsg_styles() {
        assert_eq!(
            rid("invalid code, rid: 6512ab4e-1c2d"),
            Some("6512ab4e-1c2d")
        );
        assert_eq!(
            rid("invalid appsecret hints: [ req_id: Xy12z ]"),
            Some("Xy12z")
        );
        assert_eq!(rid("code been used, rid:abc, more"), Some("abc"));
        assert_eq!(rid("system error"), None);
        assert_eq!(rid("rid: "), None);
    }
}
