//! Fetching keys and issuers from the development IdP over real HTTP and HTTPS.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use entra_core::discovery::{fetch, Discovery, FetchError};
use entra_dev_idp::keystore::{KeyStore, Settings, DEV_CLIENT_ID, DEV_TENANT};
use entra_dev_idp::{server, tls};

struct Idp {
    http: String,
    https: String,
    dir: PathBuf,
}

fn idp(name: &str) -> Idp {
    let dir = std::env::temp_dir().join(format!("entra-core-discovery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (http, https) = (server::bind("127.0.0.1:0").unwrap(), server::bind("127.0.0.1:0").unwrap());
    let http_url = format!("http://{}", http.local_addr().unwrap());
    let https_url = format!("https://{}", https.local_addr().unwrap());
    // The issuer follows the IdP's own address, as Entra's follows its authority.
    let settings =
        Settings { tenant: DEV_TENANT.into(), client_id: DEV_CLIENT_ID.into(), authority: http_url.clone() };
    KeyStore::init(&dir, settings).unwrap();
    tls::create(&dir).unwrap();
    let state = dir.clone();
    std::thread::spawn(move || server::serve(state, http, Some(https)));
    Idp { http: http_url, https: https_url, dir }
}

fn discovery(base: &str) -> Discovery {
    Discovery::new(base, DEV_TENANT, None, None, Duration::from_secs(2))
}

fn admin(idp: &Idp, what: &str) -> serde_json::Value {
    let text = ureq::get(&format!("{}/_admin/{what}", idp.http))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn metadata_urls_follow_entra() {
    let urls = |metadata: Option<&str>| {
        let d = Discovery::new(
            "https://login.microsoftonline.com",
            "contoso.onmicrosoft.com",
            metadata,
            None,
            Duration::ZERO,
        );
        (d.metadata_url, d.v1_metadata_url)
    };
    let (v2, v1) = urls(None);
    assert_eq!(
        v2,
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration"
    );
    assert_eq!(
        v1.unwrap(),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/.well-known/openid-configuration"
    );
    let custom = "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration?appid=abc";
    let (v2, v1) = urls(Some(custom));
    assert_eq!(v2, custom);
    assert_eq!(v1.unwrap(), "https://login.microsoftonline.com/t/.well-known/openid-configuration?appid=abc");
    assert_eq!(urls(Some("https://idp.example/meta.json")).1, None);
}

#[test]
fn fetches_keys_and_both_issuers_with_one_key_set_request() {
    let idp = idp("plain");
    let fetched = fetch(&discovery(&idp.http)).unwrap();
    assert_eq!(fetched.keys.len(), 1);
    assert_eq!(
        fetched.issuers,
        [format!("{}/{DEV_TENANT}/v2.0", idp.http), format!("https://sts.windows.net/{DEV_TENANT}/")]
    );
    assert_eq!(fetched.metadata_requests, 2);
    let stats = admin(&idp, "stats");
    assert_eq!((stats["keys"].as_u64(), stats["metadata"].as_u64()), (Some(1), Some(2)));
}

#[test]
fn https_needs_the_ca_file() {
    let idp = idp("https");
    let mut d = discovery(&idp.https);
    assert!(matches!(fetch(&d), Err(FetchError::Transport { .. })), "the system does not trust the test CA");
    d.ca_file = Some(tls::ca_path(&idp.dir));
    // The metadata names the IdP's HTTP key set location; over HTTPS it names its HTTPS one.
    assert_eq!(fetch(&d).unwrap().keys.len(), 1);
    d.ca_file = Some(idp.dir.join("idp.json"));
    assert!(matches!(fetch(&d), Err(FetchError::BadCaFile { .. })));
}

#[test]
fn answers_that_are_not_key_sets_are_refused() {
    let idp = idp("garbage");
    let d = discovery(&idp.http);
    for (kind, expected) in
        [("text", "BadKeySet"), ("empty", "BadKeySet"), ("gzip", "BadKeySet"), ("huge", "TooLarge")]
    {
        admin(&idp, &format!("mode?set=garbage&kind={kind}"));
        let err = fetch(&d).unwrap_err();
        assert!(format!("{err:?}").starts_with(expected), "{kind}: {err:?}");
    }
    admin(&idp, "mode?set=normal");
    assert!(fetch(&d).is_ok());
    let missing = Discovery { metadata_url: format!("{}/nope", idp.http), ..d.clone() };
    assert!(matches!(fetch(&missing), Err(FetchError::Status { status: 404, .. })));
}

#[test]
fn documents_of_up_to_one_mebibyte_are_read() {
    let idp = idp("limit");
    let d = discovery(&idp.http);
    let limit = entra_core::discovery::MAX_DOCUMENT_BYTES;
    admin(&idp, &format!("mode?set=padded&bytes={limit}"));
    assert_eq!(fetch(&d).unwrap().keys.len(), 1, "metadata and key set of exactly {limit} bytes");
    admin(&idp, &format!("mode?set=padded&bytes={}", limit + 1));
    let err = fetch(&d).unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "one byte more: {err:?}");
}

#[test]
fn a_down_or_slow_idp_fails_within_the_timeout() {
    let idp = idp("down");
    let mut d = discovery(&idp.http);
    admin(&idp, "mode?set=down");
    assert!(matches!(fetch(&d), Err(FetchError::Transport { .. })));
    admin(&idp, "mode?set=slow&ms=3000");
    d.timeout = Duration::from_millis(300);
    let started = Instant::now();
    assert!(matches!(fetch(&d), Err(FetchError::Transport { .. })));
    assert!(started.elapsed() < Duration::from_secs(2), "gave up after {:?}", started.elapsed());
}
