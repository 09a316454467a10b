//! Writes the fuzz fixtures (`fuzz/data`) and the seed corpora (`fuzz/corpus/<target>/seed-*`):
//! a fresh key set and tokens it signed, a session key and sessions and sign-in attempts sealed
//! with it, all valid at `entra_fuzz::NOW`, and hand-made hostile inputs beside them.
//!
//!   cargo run -p entra-fuzz --example fuzz-seeds

use std::fs;
use std::path::Path;

use entra_core::cookie::Jar;
use entra_core::revocation::{sid_key, Kept, Snapshot};
use entra_core::session::Session;
use entra_core::signin::AttemptKind;
use entra_dev_idp::keystore::{KeyKind, KeyStore, Settings, GLOBAL_AUTHORITY};
use entra_dev_idp::mint::{mint, MintOptions};
use entra_fuzz::{fuzz_dir, sign_in, CLIENT_ID, NOW, TENANT};
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn write_corpus(target: &str, seeds: &[Vec<u8>]) -> Result<()> {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir)?;
    for old in fs::read_dir(&dir)? {
        let old = old?.path();
        if old.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seed-")) {
            fs::remove_file(old)?;
        }
    }
    for (i, seed) in seeds.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:02}")), seed)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let data = fuzz_dir().join("data");
    fs::create_dir_all(&data)?;
    let scratch = std::env::temp_dir().join(format!("entra-fuzz-seeds-{}", std::process::id()));
    let settings =
        Settings { tenant: TENANT.into(), client_id: CLIENT_ID.into(), authority: GLOBAL_AUTHORITY.into() };
    let mut store = KeyStore::init(&scratch, settings)?;
    let ec = store.add_key(KeyKind::P256, None, false)?;
    let jwks = store.jwks()?.to_string();
    fs::write(data.join("jwks.json"), &jwks)?;

    // Tokens valid at NOW.
    let at_now = |mut o: MintOptions| {
        o.claims.extend([
            ("iat".into(), json!(NOW - 60)),
            ("nbf".into(), json!(NOW - 60)),
            ("exp".into(), json!(NOW + 3600)),
        ]);
        mint(&store, &o)
    };
    let tokens = [
        at_now(MintOptions::default())?,
        at_now(MintOptions { version: Some(1), ..Default::default() })?,
        at_now(MintOptions { app: Some("orders-worker".into()), ..Default::default() })?,
        at_now(MintOptions {
            groups: Some(vec!["5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77".into()]),
            ..Default::default()
        })?,
        at_now(MintOptions { key: Some(ec), alg: Some("ES256".into()), ..Default::default() })?,
    ];
    fs::write(data.join("tokens.txt"), tokens.join("\n") + "\n")?;
    let hostile: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"eyJhbGciOiJub25lIn0.eyJleHAiOjE5MDAwMDM2MDB9.".to_vec(),
        format!("{}.extra", tokens[0]).into_bytes(),
        tokens[0].replacen('.', "..", 1).into_bytes(),
    ];
    let token_seeds: Vec<Vec<u8>> = tokens.iter().map(|t| t.clone().into_bytes()).chain(hostile).collect();
    write_corpus("token", &token_seeds)?;
    let headers: Vec<Vec<u8>> = tokens
        .iter()
        .flat_map(|t| [format!("Bearer {t}"), format!("bearer\t{t}  "), format!("Basic {t}")])
        .map(String::into_bytes)
        .collect();
    write_corpus("authorization", &headers)?;

    let key_sets = vec![
        jwks.clone().into_bytes(),
        br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"},{"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"}]}"#
            .to_vec(),
        br#"{"keys":[{"kty":"EC","kid":"e","crv":"P-384","x":"AA","y":"AA"},{"kid":"none"}]}"#.to_vec(),
        br#"[{"keys":[]}]"#.to_vec(),
    ];
    write_corpus("jwks", &key_sets)?;

    let document = |jwks_uri: &str, token: &str| {
        json!({
            "issuer": format!("{GLOBAL_AUTHORITY}/{TENANT}/v2.0"),
            "jwks_uri": jwks_uri,
            "authorization_endpoint": format!("{GLOBAL_AUTHORITY}/{TENANT}/oauth2/v2.0/authorize"),
            "token_endpoint": token,
            "end_session_endpoint": format!("{GLOBAL_AUTHORITY}/{TENANT}/oauth2/v2.0/logout"),
        })
        .to_string()
        .into_bytes()
    };
    let keys_url = format!("{GLOBAL_AUTHORITY}/{TENANT}/discovery/v2.0/keys");
    let metadata_seeds = vec![
        document(&keys_url, &format!("{GLOBAL_AUTHORITY}/{TENANT}/oauth2/v2.0/token")),
        document("http://127.0.0.1:80@evil.example/keys", "http://localhost.evil.example/token"),
        document("http://[::1]:9400/keys", "https://login.example\\@evil.example/token"),
        br#"["issuer","jwks_uri"]"#.to_vec(),
    ];
    write_corpus("metadata", &metadata_seeds)?;

    let urls: Vec<Vec<u8>> = [
        "https://login.microsoftonline.com/",
        "http://127.0.0.1:9400/keys",
        "http://[::1]/",
        "http://localhost:8080/x?y=1",
        "http://127.0.0.1:80@evil.example/keys",
        "http://127.0.0.1\\@evil.example/",
        "http://%31%32%37.0.0.1/",
        "HTTP://LOCALHOST.evil.example/",
        "http://[::ffff:127.0.0.1]/",
        "https://lögin.example/",
    ]
    .iter()
    .map(|u| u.as_bytes().to_vec())
    .collect();
    write_corpus("url", &urls)?;

    // Sessions and attempts sealed with a fresh session key.
    let random = ring::rand::SystemRandom::new();
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&random, &mut key).map_err(|_| "no random bytes")?;
    let key_line = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
    fs::write(data.join("session.keys"), format!("{key_line}\n"))?;
    let sign_in = sign_in(&key_line);
    let session = |groups: usize| Session {
        token_version: 2,
        signed_in: NOW * 1000,
        expires: NOW + 86_400,
        revalidated: NOW,
        last_used: NOW,
        oid: "00000000-0000-4000-8000-000000000001".into(),
        tid: TENANT.into(),
        sub: "fuzz-subject".into(),
        sid: "00000000-0000-4000-9000-000000000001".into(),
        name: "Fuzz User".into(),
        groups: (0..groups).map(|g| format!("0b9f3f6e-4a4c-4c1e-9a63-{g:012x}")).collect(),
        ..Session::default()
    };
    let mut sealed = Vec::new();
    let mut cookie_seeds = Vec::new();
    for groups in [0, 3, 200] {
        let cookies = sign_in.session_cookies(&session(groups), &Jar::default(), false)?;
        let pairs: Vec<&str> = cookies.iter().filter_map(|c| c.split(';').next()).collect();
        let header = pairs.join("; ");
        let jar = Jar::parse([header.as_bytes()]);
        sealed.push(String::from_utf8(
            jar.chunks(sign_in.cookie_name(false)).ok_or("no session cookie")?.joined(),
        )?);
        cookie_seeds.push(format!("other=1; {header}").into_bytes());
        cookie_seeds.push(pairs.join("\n").into_bytes());
    }
    fs::write(data.join("sessions.txt"), sealed.join("\n") + "\n")?;
    write_corpus("session_cookie", &cookie_seeds)?;

    let mut transactions = Vec::new();
    let mut callback_seeds = Vec::new();
    let mut jar_text = String::new();
    for return_url in ["/app", "/app/page?x=1"] {
        let jar = Jar::parse([jar_text.as_bytes()]);
        let start = sign_in.start(
            CLIENT_ID,
            &format!("{GLOBAL_AUTHORITY}/{TENANT}/oauth2/v2.0/authorize"),
            "https://app.example/.entra/callback".into(),
            return_url.into(),
            &jar,
            false,
            AttemptKind::default(),
            NOW,
            &random,
        )?;
        drop(jar);
        let pair = start.cookie.split(';').next().ok_or("no cookie")?.to_owned();
        let (name, value) = pair.split_once('=').ok_or("no cookie value")?;
        let state = start
            .location
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("state="))
            .ok_or("no state in the authorize URL")?
            .to_owned();
        transactions.push(format!("{name} {value} {state}"));
        jar_text = if jar_text.is_empty() { pair.clone() } else { format!("{jar_text}; {pair}") };
        callback_seeds.push(format!("code=fuzz-code&state={state}\n{jar_text}").into_bytes());
        callback_seeds.push(format!("error=access_denied&state={state}\n{pair}").into_bytes());
        callback_seeds.push(format!("code=c&state={state}&state=x\n{pair}\n{pair}").into_bytes());
    }
    fs::write(data.join("transactions.txt"), transactions.join("\n") + "\n")?;
    // The other queries of the sign-in paths: a front-channel logout's, a select_account link's.
    callback_seeds.push(b"sid=0027c5e2-4c19-5a5f-6e19-1f1e7a1b8c2d&select_account=%2Fapp%3Fq%3D1\n".to_vec());
    callback_seeds.push(b"select_account=%2F%2Fevil.example&sid=a&sid=b\n".to_vec());
    write_corpus("callback", &callback_seeds)?;

    let kept = |entries: Vec<Kept>, watermark_ms| Snapshot {
        written_ms: NOW * 1000,
        began_ms: NOW * 1000 - 3_600_000,
        watermark_ms,
        unrecorded: 2,
        unknown: 600,
        entries,
    };
    let entry = |sid: &str, revoked_at_ms| Kept {
        key: sid_key(sid),
        expires_ms: NOW * 1000 + 3_600_000,
        revoked_at_ms,
    };
    write_corpus(
        "session_record",
        &[
            kept(Vec::new(), 0).encode(),
            kept(vec![entry("alice", 0), entry("bob", NOW * 1000 - 60_000)], NOW * 1000 - 1).encode(),
            b"ENTRAREC\x02".to_vec(),
        ],
    )?;
    // Graph's answers: the first byte picks the call (even: groups 0..20, odd: 20..25) and the
    // token endpoint's status.
    let group = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let graph_seeds: Vec<Vec<u8>> = [
        (0u8, format!(r#"{{"value":["{}","{}"]}}"#, group(0), group(19))),
        (1, format!(r#"{{"@odata.context":"x","value":["{}"]}}"#, group(24).to_uppercase())),
        (0, r#"{"value":[]}"#.into()),
        (0, format!(r#"{{"value":["{}"]}}"#, group(24))),
        (1, format!(r#"{{"value":["{}","{}"]}}"#, group(21), group(21))),
        (0, r#"{"value":"nope"}"#.into()),
        (0, "[]".into()),
        (0, r#"{"value":[1,2]}"#.into()),
        (0, r#"{"token_type":"Bearer","expires_in":3599,"access_token":"a.b.c"}"#.into()),
        (2, r#"{"error":"unauthorized_client","error_codes":[700016]}"#.into()),
        (0, r#"{"expires_in":"60","access_token":"x y"}"#.into()),
    ]
    .into_iter()
    .map(|(first, body)| [vec![first], body.into_bytes()].concat())
    .collect();
    write_corpus("graph_answer", &graph_seeds)?;
    fs::remove_dir_all(Path::new(&scratch))?;
    println!("fixtures in fuzz/data, seed corpora in fuzz/corpus/<target>/seed-*");
    Ok(())
}
