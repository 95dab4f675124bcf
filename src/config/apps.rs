//! Which mini-programs one deployment serves. An app is declared in a config file
//! (`[apps.shop] appid = "wx…"`) or by the environment alone (`WXLOGIN_APP_SHOP_APPID`);
//! its secret only ever comes from the environment (`WXLOGIN_APP_SHOP_SECRET`, or the file
//! `WXLOGIN_APP_SHOP_SECRET_FILE` names). `WXLOGIN_APPID` and `WXLOGIN_SECRET` declare the
//! app named `default`, as they always have.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, DEV_APPID, Mode, web};
use crate::domain::{AppName, ConfiguredApp, Credentials, DEFAULT_APP};

/// The prefix of the variables that declare apps by the environment.
const APP_PREFIX: &str = "WXLOGIN_APP_";

/// What may follow `WXLOGIN_APP_<NAME>`; a longer suffix before any it ends with.
const SUFFIXES: [&str; 6] = [
    "_SECRET_FILE",
    "_SECRET",
    "_APPID",
    "_AUDIENCE",
    "_KIND",
    "_REDIRECT_URIS",
];

/// An app as a config file may declare it. A secret there is refused, not ignored.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    appid: Option<String>,
    /// The `aud` of its JWTs; its appid unless given.
    audience: Option<String>,
    /// `miniprogram` unless given.
    kind: Option<String>,
    redirect_uris: Option<Vec<String>>,
    secret: Option<serde::de::IgnoredAny>,
    secret_file: Option<serde::de::IgnoredAny>,
}

/// What `WXLOGIN_APPID`, `WXLOGIN_SECRET` and `WXLOGIN_SECRET_FILE` say.
pub(super) struct Legacy {
    pub appid: Option<String>,
    pub secret: Option<SecretString>,
    pub secret_file: Option<PathBuf>,
}

/// Whether `var` is one of the variables that declare apps; such variables are read here,
/// not as settings.
pub(super) fn is_app_var(var: &str) -> bool {
    var.starts_with(APP_PREFIX)
}

/// One app's pieces, as gathered from every source.
#[derive(Default)]
struct Declared {
    appid: Option<String>,
    audience: Option<String>,
    kind: Option<String>,
    redirect_uris: Option<Vec<String>>,
    secret: Option<SecretString>,
    secret_file: Option<PathBuf>,
    in_file: bool,
}

/// The apps, each with its appid and secret (made up in development mode), in name order.
pub(super) fn apps(
    legacy: Legacy,
    file: BTreeMap<String, RawApp>,
    env: &HashMap<String, String>,
    mode: Mode,
) -> Result<Vec<ConfiguredApp>, ConfigError> {
    let mut declared: BTreeMap<AppName, Declared> = BTreeMap::new();
    for (name, raw) in file {
        let name = AppName::parse(&name).ok_or_else(|| bad_name(&format!("[apps.{name}]")))?;
        if raw.secret.is_some() || raw.secret_file.is_some() {
            return Err(app_error(
                &name,
                &format!(
                    "has a secret in a config file, where none belongs: set {} or {} instead",
                    var(&name, "SECRET"),
                    var(&name, "SECRET_FILE")
                ),
            ));
        }
        let app = declared.entry(name).or_default();
        app.appid = raw.appid;
        app.audience = raw.audience;
        app.kind = raw.kind;
        app.redirect_uris = raw.redirect_uris;
        app.in_file = true;
    }
    for (variable, value) in env {
        let Some(rest) = variable.strip_prefix(APP_PREFIX) else {
            continue;
        };
        let (upper, field) = SUFFIXES
            .iter()
            .find_map(|suffix| rest.strip_suffix(suffix).map(|name| (name, *suffix)))
            .ok_or_else(|| ConfigError::Invalid {
                key: "WXLOGIN_APP_*",
                reason: format!(
                    "{variable} is none of WXLOGIN_APP_<NAME>_APPID, _SECRET, _SECRET_FILE, _AUDIENCE, _KIND and _REDIRECT_URIS"
                ),
            })?;
        let name = upper
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            .then(|| AppName::parse(&upper.to_ascii_lowercase()))
            .flatten()
            .ok_or_else(|| bad_name(variable))?;
        let app = declared.entry(name).or_default();
        match field {
            "_APPID" => app.appid = Some(value.clone()),
            "_AUDIENCE" => app.audience = Some(value.clone()),
            "_KIND" => app.kind = Some(value.clone()),
            "_REDIRECT_URIS" => {
                app.redirect_uris = Some(value.split(',').map(str::to_owned).collect());
            }
            "_SECRET" => app.secret = Some(SecretString::from(value.clone())),
            _ => app.secret_file = Some(PathBuf::from(value)),
        }
    }
    let legacy_given =
        legacy.appid.is_some() || legacy.secret.is_some() || legacy.secret_file.is_some();
    if legacy_given {
        let default = AppName::default_app();
        if declared.contains_key(&default) {
            return Err(app_error(
                &default,
                "is declared twice: by WXLOGIN_APPID and WXLOGIN_SECRET, and as an app of that name",
            ));
        }
        declared.insert(
            default,
            Declared {
                appid: legacy.appid,
                audience: None,
                kind: None,
                redirect_uris: None,
                secret: legacy.secret,
                secret_file: legacy.secret_file,
                in_file: false,
            },
        );
    }
    let apps = match mode {
        Mode::Production => production_apps(declared, legacy_given)?,
        Mode::Development => development_apps(declared)?,
    };
    refuse_ambiguous_apps(&apps)?;
    Ok(apps)
}

fn production_apps(
    declared: BTreeMap<AppName, Declared>,
    legacy_given: bool,
) -> Result<Vec<ConfiguredApp>, ConfigError> {
    if declared.is_empty() {
        return Err(ConfigError::MissingCredentials(vec![
            "WXLOGIN_APPID",
            "WXLOGIN_SECRET (or WXLOGIN_SECRET_FILE)",
        ]));
    }
    let mut apps = Vec::new();
    for (name, app) in declared {
        let legacy = legacy_given && name.as_ref() == DEFAULT_APP && !app.in_file;
        let (appid_var, secret_var, file_var) = if legacy {
            (
                "WXLOGIN_APPID".to_owned(),
                "WXLOGIN_SECRET".to_owned(),
                "WXLOGIN_SECRET_FILE".to_owned(),
            )
        } else {
            (
                var(&name, "APPID"),
                var(&name, "SECRET"),
                var(&name, "SECRET_FILE"),
            )
        };
        let secret =
            super::values::resolve_secret(app.secret, app.secret_file, &secret_var, &file_var)?
                .map(|(secret, _)| secret);
        let appid = app.appid.filter(|a| !a.trim().is_empty());
        let (appid, secret) = match (appid, secret) {
            (Some(appid), Some(secret)) => (appid, secret),
            // The one-app variables answer as they always have, naming what is missing.
            (appid, secret) if legacy => {
                let mut missing = Vec::new();
                if appid.is_none() {
                    missing.push("WXLOGIN_APPID");
                }
                if secret.is_none() {
                    missing.push("WXLOGIN_SECRET (or WXLOGIN_SECRET_FILE)");
                }
                return Err(ConfigError::MissingCredentials(missing));
            }
            (None, _) => {
                return Err(app_error(
                    &name,
                    &format!("has no appid: set {appid_var}, or appid under [apps.{name}]"),
                ));
            }
            (Some(_), None) => {
                return Err(app_error(
                    &name,
                    &format!("has no secret: set {secret_var} or {file_var}"),
                ));
            }
        };
        let (kind, redirect_uris) = web::kind_and_redirects(&name, app.kind, app.redirect_uris)?;
        apps.push(ConfiguredApp {
            name,
            kind,
            redirect_uris,
            audience: audience_or(app.audience, &appid),
            credentials: Credentials { appid, secret },
        });
    }
    Ok(apps)
}

/// In development mode every app declared gets a secret made up for the run, which the
/// emulator checks as WeChat would; with none declared, the `default` app has
/// [`DEV_APPID`]. An app declared without an appid gets one made from its name.
fn development_apps(
    declared: BTreeMap<AppName, Declared>,
) -> Result<Vec<ConfiguredApp>, ConfigError> {
    let made_up = |name: AppName, app: Declared| {
        let appid = app
            .appid
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| match name.as_ref() {
                DEFAULT_APP => DEV_APPID.to_owned(),
                other => format!("wxdev_{other}"),
            });
        let (kind, redirect_uris) = web::kind_and_redirects(&name, app.kind, app.redirect_uris)?;
        Ok(ConfiguredApp {
            name,
            kind,
            redirect_uris,
            audience: audience_or(app.audience, &appid),
            credentials: Credentials {
                appid,
                secret: made_up_secret(),
            },
        })
    };
    if declared.is_empty() {
        return Ok(vec![made_up(AppName::default_app(), Declared::default())?]);
    }
    declared
        .into_iter()
        .map(|(name, app)| made_up(name, app))
        .collect()
}

/// The `aud` of an app's JWTs: as configured, else its appid.
fn audience_or(audience: Option<String>, appid: &str) -> String {
    audience
        .map(|audience| audience.trim().to_owned())
        .filter(|audience| !audience.is_empty())
        .unwrap_or_else(|| appid.to_owned())
}

fn made_up_secret() -> SecretString {
    use rand::Rng;
    let mut secret = [0u8; 16];
    rand::rng().fill_bytes(&mut secret);
    SecretString::from(
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

/// Routes name an app by its name or its appid, so no two apps may answer to one word: two
/// apps with one appid would share sessions' store keys and an access_token, and an app
/// named like another's appid would take that app's `/apps/{app}/` routes.
fn refuse_ambiguous_apps(apps: &[ConfiguredApp]) -> Result<(), ConfigError> {
    for (i, app) in apps.iter().enumerate() {
        if let Some(other) = apps[..i]
            .iter()
            .find(|other| other.credentials.appid == app.credentials.appid)
        {
            return Err(app_error(
                &app.name,
                &format!(
                    "has the appid of app {}: {}; each app needs its own",
                    other.name, app.credentials.appid
                ),
            ));
        }
        // An app may be named like its own appid: that is no ambiguity.
        if let Some(other) = apps
            .iter()
            .find(|other| other.credentials.appid == app.name.as_ref() && other.name != app.name)
        {
            return Err(app_error(
                &app.name,
                &format!(
                    "is named like the appid of app {}, so /apps/{}/ could mean either; rename it",
                    other.name, app.name
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn var(name: &AppName, field: &str) -> String {
    format!("{APP_PREFIX}{}_{field}", name.as_ref().to_ascii_uppercase())
}

fn bad_name(declared_by: &str) -> ConfigError {
    ConfigError::Invalid {
        key: "app name",
        reason: format!("{declared_by}: an app's name is 1 to 32 of [a-z0-9_]"),
    }
}

pub(super) fn app_error(name: &AppName, reason: &str) -> ConfigError {
    ConfigError::InvalidApp {
        app: name.to_string(),
        reason: reason.to_owned(),
    }
}

/// Shows the apps for the start-up log line: names and appids, never a secret.
pub fn describe(apps: &[ConfiguredApp]) -> String {
    apps.iter()
        .map(|app| format!("{}={}", app.name, app.credentials.appid))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use crate::config::testing::{load, temp_file};
    use crate::config::{ConfigError, DEV_APPID, Mode, Settings, describe_apps};

    #[test]
    fn an_app_named_like_another_apps_appid_is_refused_naming_both() {
        let err = load(&[
            ("WXLOGIN_APP_WXAAAAAAAAAAAAAAA1_APPID", "wxaaaaaaaaaaaaaaa4"),
            (
                "WXLOGIN_APP_WXAAAAAAAAAAAAAAA1_SECRET",
                "first-secret-value",
            ),
            ("WXLOGIN_APP_SHOP_APPID", "wxaaaaaaaaaaaaaaa1"),
            ("WXLOGIN_APP_SHOP_SECRET", "second-secret-value"),
        ])
        .expect_err("/apps/wxaaaaaaaaaaaaaaa1/ could mean either app");
        let err = err.to_string();
        assert!(err.contains("wxaaaaaaaaaaaaaaa1"), "{err}");
        assert!(err.contains("shop"), "{err}");
        assert!(!err.contains("secret-value"), "{err}");
    }

    #[test]
    fn apps_come_from_a_file_and_the_environment_with_secrets_from_the_environment_only() {
        let (dir, path) = temp_file(
            "apps.toml",
            "[apps.shop]\nappid = \"wx_shop\"\n[apps.club]\nappid = \"wx_club_file\"\n",
        );
        let (secret_dir, secret_file) = temp_file("shop-secret", "shop-secret\n");
        let s = load(&[
            ("WXLOGIN_CONFIG", path.to_str().expect("utf-8")),
            (
                "WXLOGIN_APP_SHOP_SECRET_FILE",
                secret_file.to_str().expect("utf-8"),
            ),
            ("WXLOGIN_APP_CLUB_APPID", "wx_club"),
            ("WXLOGIN_APP_CLUB_SECRET", "club-secret"),
            ("WXLOGIN_APP_MINI_GAME_APPID", "wx_game"),
            ("WXLOGIN_APP_MINI_GAME_SECRET", "game-secret"),
        ])
        .expect("settings");
        let apps: Vec<(&str, &str, &str)> = s
            .wechat
            .apps
            .iter()
            .map(|a| {
                (
                    a.name.as_ref(),
                    a.credentials.appid.as_str(),
                    a.credentials.secret.expose_secret(),
                )
            })
            .collect();
        assert_eq!(
            apps,
            [
                ("club", "wx_club", "club-secret"),
                ("mini_game", "wx_game", "game-secret"),
                ("shop", "wx_shop", "shop-secret"),
            ],
            "the environment overrides the file's appid; names in order"
        );
        assert!(s.unknown.is_empty(), "{:?}", s.unknown);
        assert_eq!(
            describe_apps(&s.wechat.apps),
            "club=wx_club, mini_game=wx_game, shop=wx_shop"
        );
        assert!(!format!("{s:?}").contains("club-secret"));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::remove_dir_all(&secret_dir).ok();
    }

    #[test]
    fn start_up_names_the_app_and_the_variable_when_an_app_is_declared_wrong() {
        let (dir, with_secret) = temp_file(
            "secret-in-file.toml",
            "[apps.shop]\nappid = \"wx1\"\nsecret = \"oops\"\n",
        );
        for (vars, says) in [
            (
                vec![("WXLOGIN_APP_SHOP_APPID", "wx1")],
                vec!["shop", "WXLOGIN_APP_SHOP_SECRET"],
            ),
            (
                vec![("WXLOGIN_APP_SHOP_SECRET", "s")],
                vec!["shop", "WXLOGIN_APP_SHOP_APPID"],
            ),
            (
                vec![
                    ("WXLOGIN_APP_SHOP_APPID", "wx1"),
                    ("WXLOGIN_APP_SHOP_SECRET", "s"),
                    ("WXLOGIN_APP_CLUB_APPID", "wx1"),
                    ("WXLOGIN_APP_CLUB_SECRET", "t"),
                ],
                vec!["shop", "club", "wx1"],
            ),
            (
                vec![("WXLOGIN_APP_SHOP-1_APPID", "wx1")],
                vec!["WXLOGIN_APP_SHOP-1_APPID", "[a-z0-9_]"],
            ),
            (
                vec![("WXLOGIN_APP_SHOP_APP_ID", "wx1")],
                vec!["WXLOGIN_APP_SHOP_APP_ID"],
            ),
            (
                vec![("WXLOGIN_CONFIG", with_secret.to_str().expect("utf-8"))],
                vec!["shop", "config file", "WXLOGIN_APP_SHOP_SECRET"],
            ),
            (
                vec![
                    ("WXLOGIN_APPID", "wx1"),
                    ("WXLOGIN_SECRET", "s"),
                    ("WXLOGIN_APP_DEFAULT_APPID", "wx2"),
                    ("WXLOGIN_APP_DEFAULT_SECRET", "t"),
                ],
                vec!["default", "twice"],
            ),
            (
                vec![
                    ("WXLOGIN_APP_SHOP_APPID", "wx1"),
                    ("WXLOGIN_APP_SHOP_SECRET", "s"),
                    ("WXLOGIN_APP_SHOP_SECRET_FILE", "/run/secrets/shop"),
                ],
                vec!["WXLOGIN_APP_SHOP_SECRET", "WXLOGIN_APP_SHOP_SECRET_FILE"],
            ),
            (vec![], vec!["WXLOGIN_APPID", "WXLOGIN_SECRET"]),
        ] {
            let err = load(&vars).expect_err("start-up must fail").to_string();
            for word in says {
                assert!(err.contains(word), "{vars:?}: {err}");
            }
            assert!(!err.contains("oops"), "no secret in the message: {err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn development_mode_makes_up_a_secret_for_every_declared_app() {
        let s = Settings::load(
            [
                ("WXLOGIN_APP_SHOP_APPID", "wx_shop"),
                ("WXLOGIN_APP_CLUB_APPID", "wx_club"),
            ],
            Mode::Development,
        )
        .expect("settings");
        let [club, shop] = &s.wechat.apps[..] else {
            panic!("two apps: {:?}", s.wechat.apps);
        };
        assert_eq!(
            [club, shop].map(|app| app.credentials.appid.as_str()),
            ["wx_club", "wx_shop"]
        );
        assert_ne!(
            club.credentials.secret.expose_secret(),
            shop.credentials.secret.expose_secret()
        );
    }

    #[test]
    fn missing_credentials_name_every_missing_variable() {
        let err = load(&[]).expect_err("must fail").to_string();
        assert!(err.contains("WXLOGIN_APPID"), "{err}");
        assert!(err.contains("WXLOGIN_SECRET"), "{err}");

        let err =
            load(&[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET", "  ")]).expect_err("must fail");
        assert!(err.to_string().contains("WXLOGIN_SECRET"), "{err}");
        assert!(!err.to_string().contains("WXLOGIN_APPID"), "{err}");
    }

    #[test]
    fn development_mode_needs_no_credentials() {
        let s =
            Settings::load(Vec::<(String, String)>::new(), Mode::Development).expect("settings");
        assert_eq!(s.wechat.apps[0].credentials.appid, DEV_APPID);
    }

    #[test]
    fn secret_file_is_read_and_its_trailing_newline_dropped() {
        let (dir, path) = temp_file("secret", "from-file\n");
        let path_str = path.to_str().expect("utf-8 path");

        let s =
            load(&[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_SECRET_FILE", path_str)]).expect("settings");
        assert_eq!(
            s.wechat.apps[0].credentials.secret.expose_secret(),
            "from-file"
        );

        let both = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET", "x"),
            ("WXLOGIN_SECRET_FILE", path_str),
        ]);
        assert!(matches!(both, Err(ConfigError::ConflictingSecret { .. })));

        let missing = load(&[
            ("WXLOGIN_APPID", "wx1"),
            ("WXLOGIN_SECRET_FILE", "/nonexistent/wxlogin"),
        ]);
        assert!(matches!(missing, Err(ConfigError::SecretFile { .. })));
        std::fs::remove_dir_all(&dir).ok();
    }
}
