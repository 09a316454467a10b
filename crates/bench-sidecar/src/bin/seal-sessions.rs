//! Seals browser sessions the way the module does, for the benchmark: prints one `Cookie` header
//! value per line (the session cookie and its chunk). With `--record FILE`, also writes the
//! provider's record of sessions as `entra_keys_cache_path` keeps it, holding the sealed
//! sessions' keys and others up to `--record-entries` (so that a start finds it that full).
//!
//!   seal-sessions --keys session.keys --provider NAME [--cookie entra] [--groups 200] [--count 1]
//!                 [--record FILE --record-entries N]

use entra_core::revocation::{session_key, Kept, Snapshot};
use entra_core::seal::SealKeys;
use entra_core::session::Session;
use entra_core::signin::SignInConfig;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let need = |name: &str| arg(&args, name).ok_or(format!("{name} is required"));
    let number = |name: &str, default: usize| {
        arg(&args, name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("{name}: not a number")))
    };
    let keys = std::fs::read_to_string(need("--keys")?).map_err(|e| e.to_string())?;
    let provider = need("--provider")?;
    let sign_in = SignInConfig {
        keys: Some(SealKeys::parse(&keys).map_err(|e| e.to_string())?),
        cookie: arg(&args, "--cookie"),
        ..SignInConfig::default()
    }
    .build(&provider, 0);
    let (groups, count) = (number("--groups", 200)?, number("--count", 1)?);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    let now_ms = now.as_millis() as u64;
    let mut record = Vec::new();
    for n in 0..count {
        let session = Session {
            token_version: 2,
            signed_in: now_ms,
            expires: now.as_secs() + 86_400,
            revalidated: now.as_secs(),
            last_used: now.as_secs(),
            oid: format!("00000000-0000-4000-8000-{n:012x}"),
            tid: "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93".into(),
            sub: format!("bench-subject-{n}"),
            sid: format!("00000000-0000-4000-9000-{n:012x}"),
            login_hint: format!("bench-hint-{n}"),
            name: format!("Bench User {n}"),
            username: format!("user{n}@contoso.example"),
            email: format!("user{n}@contoso.example"),
            groups: (0..groups).map(|g| format!("0b9f3f6e-4a4c-4c1e-9a63-{g:012x}")).collect(),
            roles: vec!["Orders.Read".into()],
            ..Session::default()
        };
        record.push(session_key(&session.sid, &session.oid, &session.tid, session.signed_in));
        let cookies =
            sign_in.session_cookies(&session, &Default::default(), false).map_err(|e| e.to_string())?;
        let pairs: Vec<&str> = cookies.iter().filter_map(|c| c.split(';').next()).collect();
        println!("{}", pairs.join("; "));
    }
    if let Some(file) = arg(&args, "--record") {
        let entries = number("--record-entries", count)?;
        record.truncate(entries);
        // The other sessions the record holds: keys no cookie names.
        let others = (record.len()..entries).map(|n| session_key(&format!("other-{n}"), "", "", 0));
        record.extend(others);
        let snapshot = Snapshot {
            written_ms: now_ms,
            began_ms: now_ms - 60_000,
            watermark_ms: 0,
            unrecorded: 0,
            unknown: 0,
            entries: record
                .into_iter()
                .map(|key| Kept { key, expires_ms: now_ms + 86_400_000, revoked_at_ms: 0 })
                .collect(),
        };
        std::fs::write(&file, snapshot.encode()).map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(())
}
