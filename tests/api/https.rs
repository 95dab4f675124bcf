//! HTTPS without a gateway: a certificate from the files configured, HTTP/2 or HTTP/1.1
//! through ALPN, a new certificate served once its files change, and a clear start-up
//! error for a bad certificate or key.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::json;
use wxlogin::clock::Clock;
use wxlogin::config::{Mode, Settings};
use wxlogin::startup::Application;

use crate::helpers::*;

/// A CA that the test's client trusts, and that signs the server's certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a key");
        let pem = params.self_signed(&key).expect("a CA").pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for 127.0.0.1 and localhost: (its DER, its PEM, its key's PEM).
    fn leaf(&self) -> (Vec<u8>, String, String) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        (cert.der().to_vec(), cert.pem(), key.serialize_pem())
    }
}

/// A fresh directory of the test's own, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wxlogin-tls-{}-{name}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("a directory");
        Self(dir)
    }

    /// Writes `contents` to `name` in one step, as a secret mount or certbot's rename does.
    fn put(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        let partial = self.0.join(format!(".{name}.new"));
        std::fs::write(&partial, contents).expect("write");
        std::fs::rename(&partial, &path).expect("rename");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(wechat: &str, cert: &Path, key: &Path) -> Settings {
    let env = [
        ("WXLOGIN_APPID", APPID),
        ("WXLOGIN_SECRET", "tls-secret"),
        ("WXLOGIN_WECHAT_BASE_URL", wechat),
        ("WXLOGIN_LISTEN", "127.0.0.1:0"),
        ("WXLOGIN_TLS_CERT_FILE", cert.to_str().expect("a path")),
        ("WXLOGIN_TLS_KEY_FILE", key.to_str().expect("a path")),
        ("WXLOGIN_TLS_RELOAD_CHECK_MS", "20"),
    ];
    Settings::load(env, Mode::Production).expect("settings")
}

/// A client that trusts only `ca`, opens a new connection for every request, and reports
/// the certificate it was shown.
fn client(ca: &Ca, http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("the CA"))
        .tls_info(true)
        .pool_max_idle_per_host(0);
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().expect("a client")
}

fn served_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS information")
        .to_vec()
}

#[tokio::test]
async fn it_serves_https_over_http2_and_http1_and_serves_a_new_certificate_once_its_files_change() {
    let wechat = wiremock::MockServer::start().await;
    wechat_answers(&wechat, success("oOverTls", None)).await;
    let ca = Ca::new();
    let dir = Dir::new("reload");
    let (first_der, first_pem, first_key) = ca.leaf();
    let cert = dir.put("cert.pem", &first_pem);
    let key = dir.put("key.pem", &first_key);
    let app = Application::build(settings(&wechat.uri(), &cert, &key), Clock::System)
        .await
        .expect("an HTTPS app");
    assert!(app.is_https());
    let base = format!("https://{}", app.local_addr().expect("bound"));
    tokio::spawn(app.run_until(std::future::pending()));

    let h2 = client(&ca, false)
        .post(format!("{base}/openid"))
        .json(&json!({ "code": "tls-code" }))
        .send()
        .await
        .expect("an HTTPS answer");
    assert_eq!(h2.version(), reqwest::Version::HTTP_2, "ALPN chose HTTP/2");
    assert_eq!(served_certificate(&h2), first_der);
    let login: serde_json::Value = h2.json().await.expect("JSON");
    let token = login["token"].as_str().expect("a token").to_owned();
    let h1 = client(&ca, true)
        .get(format!("{base}/session"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("an HTTPS answer");
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), 200);

    let (second_der, second_pem, second_key) = ca.leaf();
    dir.put("key.pem", &second_key);
    dir.put("cert.pem", &second_pem);
    eventually("the new certificate is served", || async {
        let response = client(&ca, false)
            .get(format!("{base}/healthz"))
            .send()
            .await;
        response.is_ok_and(|r| served_certificate(&r) == second_der)
    })
    .await;
}

#[tokio::test]
async fn a_bad_certificate_or_key_fails_start_up_saying_which_and_why() {
    let ca = Ca::new();
    let dir = Dir::new("bad");
    let (_, cert_pem, key_pem) = ca.leaf();
    let (_, _, other_key) = ca.leaf();
    let good_cert = dir.put("cert.pem", &cert_pem);
    let good_key = dir.put("key.pem", &key_pem);
    let not_pem = dir.put("garbage.pem", "this is not a certificate\n");
    let wrong_key = dir.put("other-key.pem", &other_key);
    let missing = dir.0.join("missing.pem");

    for (cert, key, says) in [
        (&not_pem, &good_key, "WXLOGIN_TLS_CERT_FILE"),
        (&missing, &good_key, "WXLOGIN_TLS_CERT_FILE"),
        (&good_cert, &not_pem, "WXLOGIN_TLS_KEY_FILE"),
        (&good_cert, &wrong_key, "does not fit"),
    ] {
        let built =
            Application::build(settings("http://127.0.0.1:9", cert, key), Clock::System).await;
        let err = built.err().expect("start-up fails").to_string();
        assert!(err.contains(says), "{err}");
        assert!(
            !err.contains("PRIVATE KEY"),
            "no key material in the message: {err}"
        );
    }
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sighup_makes_the_binary_serve_the_new_certificate() {
    let ca = Ca::new();
    let dir = Dir::new("sighup");
    let (_, first_pem, first_key) = ca.leaf();
    let cert = dir.put("cert.pem", &first_pem);
    let key = dir.put("key.pem", &first_key);
    let port = crate::tools::free_port();
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_wxlogin"))
            .arg("--dev")
            .env_clear()
            .env("WXLOGIN_LISTEN", format!("127.0.0.1:{port}"))
            .env("WXLOGIN_TLS_CERT_FILE", &cert)
            .env("WXLOGIN_TLS_KEY_FILE", &key)
            // Only the signal can make it read the files again within the test.
            .env("WXLOGIN_TLS_RELOAD_CHECK_MS", "3600000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("wxlogin starts"),
    );
    let healthz = format!("https://127.0.0.1:{port}/healthz");
    eventually("wxlogin serves HTTPS", || async {
        client(&ca, false).get(&healthz).send().await.is_ok()
    })
    .await;

    let (second_der, second_pem, second_key) = ca.leaf();
    dir.put("key.pem", &second_key);
    dir.put("cert.pem", &second_pem);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hup.success());

    eventually("the new certificate is served after SIGHUP", || async {
        let response = client(&ca, false).get(&healthz).send().await;
        response.is_ok_and(|r| served_certificate(&r) == second_der)
    })
    .await;
}
