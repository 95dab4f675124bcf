//! The settings of the other WeChat logins: each app's kind, and what the web-login helper
//! needs (where a browser may be sent back to, wxlogin's own public URL, the cookie that
//! carries the session).

use super::apps::{app_error, var};
use super::values::invalid;
use super::{ConfigError, ConfiguredApp, Mode};
use crate::domain::{AppKind, AppName};

/// An app's kind (a mini-program unless named) and the redirect URIs its web login may
/// send a browser back to, each checked.
pub(super) fn kind_and_redirects(
    name: &AppName,
    kind: Option<String>,
    redirect_uris: Option<Vec<String>>,
) -> Result<(AppKind, Vec<String>), ConfigError> {
    let kind = match kind.as_deref().map(str::trim) {
        None | Some("") => AppKind::default(),
        Some(raw) => AppKind::parse(raw).ok_or_else(|| {
            let spellings: Vec<_> = AppKind::ALL.iter().map(|k| k.as_str()).collect();
            app_error(
                name,
                &format!(
                    "has an unknown kind in {} (or kind under [apps.{name}]): {raw:?}; expected one of {}",
                    var(name, "KIND"),
                    spellings.join(", ")
                ),
            )
        })?,
    };
    let redirect_uris: Vec<String> = redirect_uris
        .unwrap_or_default()
        .iter()
        .map(|uri| uri.trim().to_owned())
        .filter(|uri| !uri.is_empty())
        .collect();
    if !redirect_uris.is_empty() && !kind.has_consent_page() {
        return Err(app_error(
            name,
            &format!(
                "has {} but is a {kind}: only an official_account or a website logs in through a browser",
                var(name, "REDIRECT_URIS")
            ),
        ));
    }
    for uri in &redirect_uris {
        if let Err(reason) = redirect_uri_problem(uri) {
            return Err(app_error(
                name,
                &format!(
                    "has a bad redirect URI in {}: {uri} {reason}",
                    var(name, "REDIRECT_URIS")
                ),
            ));
        }
    }
    Ok((kind, redirect_uris))
}

/// Why a page's redirect URI cannot be one, if it cannot: https (http only on the machine
/// itself, for development), absolute, no fragment, no credentials.
fn redirect_uri_problem(uri: &str) -> Result<(), &'static str> {
    let url = reqwest::Url::parse(uri).map_err(|_| "is not an absolute URL")?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be https (http only for localhost)"),
    }
    if url.fragment().is_some() {
        return Err("must have no #fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must carry no credentials");
    }
    Ok(())
}

/// wxlogin's public base URL (`WXLOGIN_PUBLIC_URL`), which WeChat sends browsers back to:
/// required when any app has redirect URIs, except in development mode, where the server's
/// own address stands in (filled in once it is bound).
pub(super) fn public_url(
    raw: &str,
    apps: &[ConfiguredApp],
    auth_cookie: Option<&str>,
    mode: Mode,
) -> Result<Option<String>, ConfigError> {
    let helper = apps.iter().find(|app| !app.redirect_uris.is_empty());
    let raw = raw.trim();
    if let Some(app) = helper {
        if auth_cookie.is_none() {
            return Err(invalid(
                "auth_cookie",
                &format!(
                    "WXLOGIN_AUTH_COOKIE is required by the web login of app {}: it names the cookie the session is handed over in",
                    app.name
                ),
            ));
        }
        if raw.is_empty() && mode == Mode::Production {
            return Err(invalid(
                "public_url",
                &format!(
                    "WXLOGIN_PUBLIC_URL is required by the web login of app {}: WeChat sends the browser back to it",
                    app.name
                ),
            ));
        }
    }
    if raw.is_empty() {
        return Ok(None);
    }
    let url = reqwest::Url::parse(raw).map_err(|e| invalid("public_url", &format!("{e}")))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid(
            "public_url",
            "WXLOGIN_PUBLIC_URL must be an http(s) URL without a query or fragment, e.g. https://login.example.com",
        ));
    }
    Ok(Some(raw.trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{load, with};
    use crate::domain::AppKind;

    const OA: [(&str, &str); 3] = [
        ("WXLOGIN_APP_OA_APPID", "wx_oa_appid_0001"),
        ("WXLOGIN_APP_OA_SECRET", "oa-secret-value"),
        ("WXLOGIN_APP_OA_KIND", "official_account"),
    ];

    #[test]
    fn an_app_is_a_mini_program_unless_its_kind_says_otherwise() {
        let settings = load(&with(
            &OA,
            &[
                ("WXLOGIN_APP_SHOP_APPID", "wx_shop_appid_01"),
                ("WXLOGIN_APP_SHOP_SECRET", "shop-secret-value"),
            ],
        ))
        .expect("loads");
        let kinds: Vec<_> = settings
            .wechat
            .apps
            .iter()
            .map(|a| (a.name.to_string(), a.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("oa".to_owned(), AppKind::OfficialAccount),
                ("shop".to_owned(), AppKind::MiniProgram)
            ]
        );
    }

    #[test]
    fn an_unknown_kind_is_refused_naming_the_variable_and_the_kinds() {
        let err = load(&[
            ("WXLOGIN_APP_OA_APPID", "wx_oa_appid_0001"),
            ("WXLOGIN_APP_OA_SECRET", "oa-secret-value"),
            ("WXLOGIN_APP_OA_KIND", "h5"),
        ])
        .expect_err("no such kind")
        .to_string();
        assert!(err.contains("WXLOGIN_APP_OA_KIND"), "{err}");
        assert!(err.contains("official_account"), "{err}");
        assert!(!err.contains("oa-secret-value"), "{err}");
    }

    #[test]
    fn redirect_uris_are_a_comma_separated_list_of_https_urls() {
        let settings = load(&with(
            &OA,
            &[
                (
                    "WXLOGIN_APP_OA_REDIRECT_URIS",
                    "https://h5.example.com/done, http://localhost:5173/done",
                ),
                ("WXLOGIN_AUTH_COOKIE", "wxsid"),
                ("WXLOGIN_PUBLIC_URL", "https://login.example.com/"),
            ],
        ))
        .expect("loads");
        assert_eq!(
            settings.wechat.apps[0].redirect_uris,
            ["https://h5.example.com/done", "http://localhost:5173/done"]
        );
        assert_eq!(
            settings.public_url.as_deref(),
            Some("https://login.example.com")
        );
        for bad in [
            "http://h5.example.com/done",
            "https://h5.example.com/done#x",
            "/done",
            "https://user:pw@h5.example.com/",
        ] {
            let err = load(&with(
                &OA,
                &[
                    ("WXLOGIN_APP_OA_REDIRECT_URIS", bad),
                    ("WXLOGIN_AUTH_COOKIE", "wxsid"),
                    ("WXLOGIN_PUBLIC_URL", "https://login.example.com"),
                ],
            ))
            .expect_err(bad)
            .to_string();
            assert!(err.contains("WXLOGIN_APP_OA_REDIRECT_URIS"), "{err}");
        }
    }

    #[test]
    fn the_web_login_needs_a_public_url_and_an_auth_cookie() {
        let err = load(&with(
            &OA,
            &[
                (
                    "WXLOGIN_APP_OA_REDIRECT_URIS",
                    "https://h5.example.com/done",
                ),
                ("WXLOGIN_AUTH_COOKIE", "wxsid"),
            ],
        ))
        .expect_err("no public URL")
        .to_string();
        assert!(err.contains("WXLOGIN_PUBLIC_URL"), "{err}");
        let err = load(&with(
            &OA,
            &[
                (
                    "WXLOGIN_APP_OA_REDIRECT_URIS",
                    "https://h5.example.com/done",
                ),
                ("WXLOGIN_PUBLIC_URL", "https://login.example.com"),
            ],
        ))
        .expect_err("no cookie")
        .to_string();
        assert!(err.contains("WXLOGIN_AUTH_COOKIE"), "{err}");
    }

    #[test]
    fn a_kind_without_a_consent_page_takes_no_redirect_uris() {
        let err = load(&[
            ("WXLOGIN_APP_APP_APPID", "wx_mobile_app_01"),
            ("WXLOGIN_APP_APP_SECRET", "app-secret-value"),
            ("WXLOGIN_APP_APP_KIND", "mobile_app"),
            (
                "WXLOGIN_APP_APP_REDIRECT_URIS",
                "https://h5.example.com/done",
            ),
            ("WXLOGIN_AUTH_COOKIE", "wxsid"),
            ("WXLOGIN_PUBLIC_URL", "https://login.example.com"),
        ])
        .expect_err("a mobile app has no browser flow")
        .to_string();
        assert!(err.contains("mobile_app"), "{err}");
    }
}
