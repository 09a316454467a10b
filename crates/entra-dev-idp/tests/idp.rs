//! The development IdP: its key store, its documents over real HTTP, and its tokens.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use entra_dev_idp::keystore::{KeyKind, KeyStore, Settings, DEV_CLIENT_ID, DEV_TENANT, GLOBAL_AUTHORITY};
use entra_dev_idp::mint::{mint, MintOptions, Signing};
use entra_dev_idp::server;
use serde_json::Value;

fn store(name: &str) -> (KeyStore, PathBuf) {
    let dir = std::env::temp_dir().join(format!("entra-dev-idp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = Settings {
        tenant: DEV_TENANT.into(),
        client_id: DEV_CLIENT_ID.into(),
        authority: GLOBAL_AUTHORITY.into(),
    };
    (KeyStore::init(&dir, settings).unwrap(), dir)
}

fn part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn rotation_publishes_the_new_key_and_signs_with_it() {
    let (mut s, dir) = store("rotate");
    let first = s.current().kid.clone();
    let second = s.add_key(KeyKind::Rsa, None, true).unwrap();
    let reopened = KeyStore::open(&dir).unwrap();
    assert_eq!(reopened.current().kid, second);
    let kids: Vec<_> =
        reopened.jwks().unwrap()["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
    assert_eq!(kids, [first.clone(), second.clone()]);
    assert_eq!(part(&mint(&reopened, &MintOptions::default()).unwrap(), 0)["kid"], second.as_str());
    s.remove_key(&first).unwrap();
    assert_eq!(KeyStore::open(&dir).unwrap().keys().len(), 1);
    assert!(s.remove_key(&second).is_err(), "the last key stays");
}

#[test]
fn tokens_look_like_entra_v1_and_v2() {
    let (s, _) = store("shape");
    let v2 = mint(&s, &MintOptions::default()).unwrap();
    let claims = part(&v2, 1);
    assert_eq!(claims["iss"], format!("{GLOBAL_AUTHORITY}/{DEV_TENANT}/v2.0"));
    assert_eq!(claims["aud"], DEV_CLIENT_ID);
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["scp"], "access_as_user");
    let v1 = mint(&s, &MintOptions { version: Some(1), ..Default::default() }).unwrap();
    assert_eq!(part(&v1, 1)["iss"], format!("https://sts.windows.net/{DEV_TENANT}/"));
    assert_eq!(part(&v1, 0)["x5t"], part(&v1, 0)["kid"]);
    let none = mint(&s, &MintOptions { signing: Signing::None, ..Default::default() }).unwrap();
    assert_eq!(part(&none, 0)["alg"], "none");
    assert!(none.ends_with('.'));
    let over = mint(&s, &MintOptions { overage: true, groups: Some(vec!["g".into()]), ..Default::default() })
        .unwrap();
    assert!(part(&over, 1).get("groups").is_none());
    assert_eq!(part(&over, 1)["_claim_names"]["groups"], "src1");
}

#[test]
fn serves_metadata_and_keys_over_http() {
    let (s, dir) = store("serve");
    let listener = server::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || server::serve(dir, listener, None));
    let (status, v2) = get(&addr, &format!("/{DEV_TENANT}/v2.0/.well-known/openid-configuration"));
    assert_eq!(status, 200);
    assert_eq!(v2["issuer"], format!("{GLOBAL_AUTHORITY}/{DEV_TENANT}/v2.0"));
    let (_, v1) = get(&addr, &format!("/{DEV_TENANT}/.well-known/openid-configuration"));
    assert_eq!(v1["issuer"], format!("https://sts.windows.net/{DEV_TENANT}/"));
    let (_, common) = get(&addr, "/common/v2.0/.well-known/openid-configuration");
    assert_eq!(common["issuer"], format!("{GLOBAL_AUTHORITY}/{{tenantid}}/v2.0"));
    let jwks_path = v2["jwks_uri"].as_str().unwrap().trim_start_matches(&format!("http://{addr}")).to_owned();
    let (_, keys) = get(&addr, &jwks_path);
    assert_eq!(keys["keys"][0]["kid"], s.current().kid.as_str());
    assert_eq!(get(&addr, "/nope").0, 404);
    assert!(server::bind("0.0.0.0:0").is_err(), "only loopback");
}

/// An IdP serving HTTP and HTTPS; returns the two base URLs and the state directory.
fn running(name: &str) -> (String, String, PathBuf) {
    let (_, dir) = store(name);
    let (http, https) = (server::bind("127.0.0.1:0").unwrap(), server::bind("127.0.0.1:0").unwrap());
    let urls = (
        format!("http://{}", http.local_addr().unwrap()),
        format!("https://{}", https.local_addr().unwrap()),
    );
    let state = dir.clone();
    std::thread::spawn(move || server::serve(state, http, Some(https)));
    // The listeners are bound already: this waits for serve() to accept, after it has written
    // the TLS material.
    get_json(&ureq::Agent::new_with_defaults(), &format!("{}/_admin/stats", urls.0))
        .expect("the IdP answers");
    (urls.0, urls.1, dir)
}

fn agent_trusting(dir: &std::path::Path) -> ureq::Agent {
    let pem = std::fs::read(entra_dev_idp::tls::ca_path(dir)).unwrap();
    let ca = ureq::tls::Certificate::from_pem(&pem).unwrap();
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&[ca])).build();
    ureq::Agent::config_builder().tls_config(tls).http_status_as_error(false).build().into()
}

fn get_json(agent: &ureq::Agent, url: &str) -> Result<Value, ureq::Error> {
    let text = agent.get(url).call()?.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn https_is_served_with_the_state_s_test_ca_only() {
    let (_, https, dir) = running("https");
    let trusting = agent_trusting(&dir);
    let keys = get_json(&trusting, &format!("{https}/{DEV_TENANT}/discovery/v2.0/keys")).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    let metadata =
        get_json(&trusting, &format!("{https}/{DEV_TENANT}/v2.0/.well-known/openid-configuration")).unwrap();
    assert_eq!(metadata["jwks_uri"], format!("{https}/{DEV_TENANT}/discovery/v2.0/keys"));
    // A client that trusts only the public roots refuses the test CA.
    assert!(get_json(&ureq::Agent::new_with_defaults(), &format!("{https}/_admin/stats")).is_err());
}

#[test]
fn requests_are_counted_and_modes_change_the_answers() {
    let (http, _, _) = running("modes");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let keys_url = format!("{http}/{DEV_TENANT}/discovery/v2.0/keys");
    get_json(&agent, &keys_url).unwrap();
    get_json(&agent, &format!("{http}/{DEV_TENANT}/v2.0/.well-known/openid-configuration")).unwrap();
    let stats = get_json(&agent, &format!("{http}/_admin/stats")).unwrap();
    assert_eq!((stats["keys"].as_u64(), stats["metadata"].as_u64()), (Some(1), Some(1)));

    get_json(&agent, &format!("{http}/_admin/mode?set=garbage&kind=empty")).unwrap();
    assert_eq!(get_json(&agent, &keys_url).unwrap()["keys"], serde_json::json!([]));
    get_json(&agent, &format!("{http}/_admin/mode?set=garbage&kind=text")).unwrap();
    assert_eq!(get_json(&agent, &keys_url).unwrap(), Value::String("this is not a key set".into()));
    get_json(&agent, &format!("{http}/_admin/mode?set=down")).unwrap();
    assert!(get_json(&agent, &keys_url).is_err(), "down: no answer");
    get_json(&agent, &format!("{http}/_admin/mode?set=slow&ms=300")).unwrap();
    let started = std::time::Instant::now();
    get_json(&agent, &keys_url).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "slow: answers late");

    let rotated = get_json(&agent, &format!("{http}/_admin/rotate")).unwrap();
    get_json(&agent, &format!("{http}/_admin/reset")).unwrap();
    let keys = get_json(&agent, &keys_url).unwrap();
    assert_eq!(keys["keys"][1]["kid"], rotated["kid"], "the rotated key is published");
    let stats = get_json(&agent, &format!("{http}/_admin/stats")).unwrap();
    assert_eq!((stats["keys"].as_u64(), stats["mode"].as_str()), (Some(1), Some("Normal")));
}

#[test]
fn a_held_path_waits_until_released_and_others_do_not() {
    let (http, _, _) = running("hold");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    get_json(&agent, &format!("{http}/_admin/hold?path=/{DEV_TENANT}/")).unwrap();
    let held_url = format!("{http}/{DEV_TENANT}/discovery/v2.0/keys");
    let held = std::thread::spawn({
        let agent = agent.clone();
        move || get_json(&agent, &held_url).unwrap()
    });
    // The held request has reached the IdP once it is counted; it stays unanswered meanwhile.
    while get_json(&agent, &format!("{http}/_admin/stats")).unwrap()["keys"] != 1 {
        std::thread::yield_now();
    }
    let other =
        get_json(&agent, &format!("{http}/organizations/v2.0/.well-known/openid-configuration")).unwrap();
    assert!(other["issuer"].is_string(), "another path is answered at once");
    assert!(!held.is_finished(), "the held path is not");
    get_json(&agent, &format!("{http}/_admin/release")).unwrap();
    assert_eq!(held.join().unwrap()["keys"].as_array().map(Vec::len), Some(1), "answered once released");
}

/// POSTs `body` (a form, or JSON with a bearer token) to `url`: the status and the JSON answer.
fn post(agent: &ureq::Agent, url: &str, body: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = agent.post(url);
    if let Some(token) = bearer {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.send(body).unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

#[test]
fn graph_answers_app_tokens_with_the_permissions_and_only_the_groups_asked() {
    use entra_dev_idp::keystore::DEV_CLIENT_SECRET;
    let (http, _, _) = running("graph");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let token_url = format!("{http}/{DEV_TENANT}/oauth2/v2.0/token");
    let form = |secret: &str| {
        format!("grant_type=client_credentials&client_id={DEV_CLIENT_ID}&scope={http}/graph/.default&client_secret={secret}")
    };
    let (status, refused) = post(&agent, &token_url, &form("wrong"), None);
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_client")),
        "a wrong secret gets no token"
    );
    let (status, granted) = post(&agent, &token_url, &form(DEV_CLIENT_SECRET), None);
    assert_eq!(status, 200);
    let token = granted["access_token"].as_str().unwrap().to_owned();
    assert_eq!(part(&token, 1)["aud"], format!("{http}/graph"));
    assert_eq!(part(&token, 1)["roles"], serde_json::json!(["GroupMember.Read.All", "User.Read.All"]));

    let dana = entra_dev_idp::mint::guid_for("dana");
    let check = format!("{http}/graph/v1.0/directoryObjects/{dana}/checkMemberGroups");
    let admins = "0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1";
    let asked = format!(r#"{{"groupIds":["{admins}","11111111-1111-1111-1111-111111111111"]}}"#);
    let (status, answer) = post(&agent, &check, &asked, Some(&token));
    assert_eq!(
        (status, answer["value"].clone()),
        (200, serde_json::json!([admins])),
        "the groups asked she is in"
    );
    assert_eq!(post(&agent, &check, &asked, Some("not-a-token")).0, 401, "a token it did not issue");
    let (status, _) =
        post(&agent, &check, &format!(r#"{{"groupIds":[{}]}}"#, vec!["\"g\""; 21].join(",")), Some(&token));
    assert_eq!(status, 400, "more than 20 ids");

    // An app token without the permissions: Graph refuses.
    get_json(&agent, &format!("{http}/_admin/graph?permissions=User.Read.All")).unwrap();
    let (_, lesser) = post(&agent, &token_url, &form(DEV_CLIENT_SECRET), None);
    let lesser = lesser["access_token"].as_str().unwrap().to_owned();
    assert_eq!(post(&agent, &check, &asked, Some(&lesser)).0, 403);
    let stats = get_json(&agent, &format!("{http}/_admin/stats")).unwrap();
    assert_eq!(stats["graph"]["calls"].as_u64(), Some(4));
    assert_eq!(stats["graph"]["app_tokens"][DEV_TENANT].as_u64(), Some(2));
}
