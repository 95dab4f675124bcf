//! wxlogin behind a real nginx, as docs/production.md shows it: `auth_request` asks `GET /auth`,
//! and only requests it lets through reach the backend, carrying the user's openid.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use axum::Router;
use axum::http::HeaderMap;
use tokio::sync::mpsc;

use crate::helpers::{Reply, Requests, spawn_app, spawn_apps, success, wechat_answers};
use crate::tools::{self, free_port};

const NGINX: &str = "nginx";

/// nginx on a free loopback port, in a directory of its own, stopped when dropped.
struct Nginx {
    url: String,
    dir: PathBuf,
    process: Child,
}

impl Nginx {
    fn start(wxlogin: &str, backend: &str) -> Option<Self> {
        if !tools::available(NGINX, &["-v"], "apt-get install -y nginx") {
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("wxlogin-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for nginx");
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port, wxlogin, backend)).expect("write nginx.conf");
        let mut process = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        // The master binds the port before it starts its worker, and says so.
        let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
        let started = lines
            .by_ref()
            .map_while(Result::ok)
            .inspect(|line| eprintln!("nginx: {line}"))
            .any(|line| line.contains("start worker process"));
        assert!(started, "nginx exited before it started a worker");
        std::thread::spawn(move || lines.for_each(drop));
        Some(Self {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            process,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops its worker too; SIGKILL would orphan it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The snippet of docs/production.md, in a whole config that needs nothing outside `dir`.
fn config(dir: &std::path::Path, port: u16, wxlogin: &str, backend: &str) -> String {
    let dir = dir.display();
    format!(
        r#"
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # A common "cache GETs for a minute" set-up, keyed on the URI alone: it serves a stored
    # answer to anyone who asks for the same URI, whatever their Authorization.
    proxy_cache_path {dir}/cache keys_zone=gets:1m;

    server {{
        listen 127.0.0.1:{port};

        location / {{
            auth_request /_wxlogin_auth;
            auth_request_set $wx_openid  $upstream_http_x_wxlogin_openid;
            auth_request_set $wx_unionid $upstream_http_x_wxlogin_unionid;
            proxy_set_header X-WxLogin-OpenId  $wx_openid;
            proxy_set_header X-WxLogin-UnionId $wx_unionid;
            proxy_set_header Authorization "";
            proxy_pass {backend};
        }}

        location /cached/ {{
            proxy_pass {wxlogin}/;
            proxy_cache gets;
            proxy_cache_key $request_uri;
            proxy_cache_valid 200 1m;
            add_header X-Cache-Status $upstream_cache_status always;
        }}

        # One app's backend, open to that app's users only.
        location /shop/ {{
            auth_request /_wxlogin_auth_shop;
            proxy_set_header Authorization "";
            proxy_pass {backend};
        }}
        location = /_wxlogin_auth_shop {{
            internal;
            proxy_pass {wxlogin}/apps/shop/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location /club/ {{
            auth_request /_wxlogin_auth_club;
            proxy_set_header Authorization "";
            proxy_pass {backend};
        }}
        location = /_wxlogin_auth_club {{
            internal;
            proxy_pass {wxlogin}/apps/club/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}

        location = /_wxlogin_auth {{
            internal;
            proxy_pass {wxlogin}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
    }}
}}
"#
    )
}

/// A business backend that reports the headers of every request it gets.
async fn backend() -> (String, mpsc::UnboundedReceiver<HeaderMap>) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let app = Router::new().fallback(move |headers: HeaderMap| async move {
        seen_tx.send(headers).ok();
        "orders for you"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn nginx_lets_a_logged_in_user_through_with_the_openid_and_stops_anonymous_ones() {
    let app = spawn_app().await;
    let (backend_url, mut seen) = backend().await;
    let Some(nginx) = Nginx::start(&app.address, &backend_url) else {
        return;
    };
    let token = app.login_as("c1", "oThroughNginx").await;
    let orders = format!("{}/orders", nginx.url);

    let anonymous = app.send(app.http.get(&orders)).await;
    let forged = app
        .send(app.http.get(&orders).bearer_auth("A".repeat(43)))
        .await;
    let user = app
        .send(
            app.http
                .get(&orders)
                .bearer_auth(&token)
                // A client cannot name itself: the gateway overwrites this.
                .header("x-wxlogin-openid", "oSomeoneElse"),
        )
        .await;

    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    assert_eq!(forged.status, 401, "{}", forged.text);
    assert_eq!(user.status, 200, "{}", user.text);
    assert_eq!(user.text, "orders for you");
    let headers = seen
        .recv()
        .await
        .expect("the user's request reached the backend");
    assert_eq!(
        headers
            .get("x-wxlogin-openid")
            .and_then(|v| v.to_str().ok()),
        Some("oThroughNginx")
    );
    assert!(
        headers.get("authorization").is_none(),
        "the backend never sees the token"
    );
    // Only the one request was let through: the 401s were stopped at nginx.
    assert!(
        seen.try_recv().is_err(),
        "an anonymous request reached the backend"
    );
}

#[tokio::test]
async fn a_caching_nginx_keeps_nothing_personal_to_serve_to_someone_else() {
    let app = spawn_app().await;
    let (backend_url, _seen) = backend().await;
    let Some(nginx) = Nginx::start(&app.address, &backend_url) else {
        return;
    };
    let alice = app.login_as("c-alice", "oAliceCached").await;
    let bob = app.login_as("c-bob", "oBobCached").await;
    let session = format!("{}/cached/session", nginx.url);

    let as_alice = app.send(app.http.get(&session).bearer_auth(&alice)).await;
    let as_bob = app.send(app.http.get(&session).bearer_auth(&bob)).await;
    let as_nobody = app.send(app.http.get(&session)).await;

    assert_eq!(as_alice.status, 200, "{}", as_alice.text);
    assert_eq!(as_alice.json()["openid"], "oAliceCached");
    assert_eq!(
        as_bob.json()["openid"],
        "oBobCached",
        "bob was served alice's session"
    );
    assert_eq!(as_nobody.status, 401, "{}", as_nobody.text);

    // The same login URI twice, as a retried GET would send it: each client gets its own
    // token, never the one cached from the first.
    wechat_answers(&app.wechat, success("oCachedLogin", None)).await;
    let login = format!("{}/cached/wechat/applet_login?code=same-code", nginx.url);
    let first = app.send(app.http.get(&login)).await;
    let second = app.send(app.http.get(&login)).await;

    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(second.status, 200, "{}", second.text);
    assert_ne!(first.json()["token"], second.json()["token"]);
    for reply in [&as_alice, &as_bob, &as_nobody, &first, &second] {
        assert_ne!(reply.header("x-cache-status"), Some("HIT"));
    }
}

#[tokio::test]
async fn behind_nginx_each_apps_backend_lets_in_only_that_apps_users() {
    let app = spawn_apps(&[("shop", "wx_shop_appid"), ("club", "wx_club_appid")], &[]).await;
    let (backend_url, _seen) = backend().await;
    let Some(nginx) = Nginx::start(&app.address, &backend_url) else {
        return;
    };
    wechat_answers(&app.wechat, success("oSomeUser", None)).await;
    let token = |route: &'static str, code: &'static str| {
        let request = app
            .http
            .post(format!("{}{route}", app.address))
            .json(&serde_json::json!({ "code": code }));
        async move {
            let reply = Reply::read(request.send().await.expect("answered")).await;
            reply.json()["token"].as_str().expect("a token").to_owned()
        }
    };
    let shop = token("/apps/shop/openid", "c1").await;
    let club = token("/apps/club/openid", "c2").await;
    let get = |location: &str, token: &str| {
        let request = app
            .http
            .get(format!("{}{location}orders", nginx.url))
            .bearer_auth(token);
        async move {
            request
                .send()
                .await
                .expect("nginx answers")
                .status()
                .as_u16()
        }
    };

    assert_eq!(get("/shop/", &shop).await, 200);
    assert_eq!(get("/club/", &club).await, 200);
    assert_eq!(
        get("/shop/", &club).await,
        401,
        "a club token kept out of the shop"
    );
    assert_eq!(
        get("/club/", &shop).await,
        401,
        "a shop token kept out of the club"
    );
}
