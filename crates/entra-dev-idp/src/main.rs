//! `entra-dev-idp`: plays Entra ID on loopback. See `entra-dev-idp help`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use entra_dev_idp::keystore::{
    KeyKind, KeyStore, Settings, DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_TENANT, GLOBAL_AUTHORITY,
};
use entra_dev_idp::mint::{mint, MintOptions, Signing};
use entra_dev_idp::{nginx, server, Error};

const HELP: &str = "\
entra-dev-idp: a development identity provider that speaks Entra ID's protocol on loopback.

Every command takes --state DIR (default: $ENTRA_DEV_IDP_STATE, else ./entra-dev-idp).

  init [--tenant GUID] [--client-id GUID] [--authority URL]
                      create the state with one RSA signing key, the app's client secret,
                      a session key and the key set (files DIR/client-secret, session.keys,
                      jwks.json), and print an entra_provider block for nginx. With
                      --authority (say http://127.0.0.1:9400), nginx discovers the IdP there
                      and browsers can sign in: `authority` in nginx must be exactly this URL
                      and `serve --listen` its address. Without it, tokens only (jwks_file).
  provider [--name NAME]
                      print that entra_provider block again (named NAME, default dev)
  jwks [--out FILE]   print (or write) the public key set
  kids                list key ids, the current one first
  client-secret       print the app's client secret (for client_secret_file)
  client-certificate --cert FILE --key FILE
                      make the app's certificate and RSA key (for client_certificate) and
                      register it: the token endpoint then takes assertions signed with it
  rotate [--kind rsa|ec|ed25519] [--issuer URL]
                      add a key and sign new tokens with it (old keys stay published)
  add-key [--kind rsa|ec|ed25519] [--issuer URL] [--hidden]
                      add a key without making it current (--hidden: unpublished
                      until /_admin/publish, to test rotation)
  remove-key KID      stop publishing a key
  serve [--listen 127.0.0.1:9400] [--https-listen 127.0.0.1:9443]
                      serve metadata documents, the key set and the browser endpoints
                      (authorize with a page to pick a demo user, token, logout), and
                      Microsoft Graph's checkMemberGroups under /graph (app tokens from the
                      token endpoint's client-credentials grant); HTTPS uses a test CA
                      (DIR/ca.pem); /_admin/ controls it for tests
  mint [options]      print an access token (default: user alice, v2, scp access_as_user)
    --count N                       N distinct tokens, one per line
    --user NAME | --app NAME        user (delegated) or app-only token
    --ver 1|2  --tid GUID  --aud AUD
    --groups A,B  --roles A,B  --scp \"a b\"
    --acrs c1,c2                    authentication contexts satisfied (claim acrs)
    --exp SECONDS  --nbf SECONDS    relative to now (negative: in the past)
    --claim NAME=JSON   --unset NAME            (repeatable)
    --header NAME=JSON  --unset-header NAME     (repeatable)
    --key KID  --alg ALG
    --sign key|none|hs256-pubkey|corrupt
    --overage           groups left out as Entra does past 200
    --claim-source URL  the overage token's _claim_sources endpoint base
                        (default https://graph.windows.net, as Entra writes)
    --graph             a Microsoft Graph token (header nonce)

How it maps to Entra: the state is one app registration in one tenant (tenant, client_id);
its client secret is the registration's secret; the key set is Entra's signing keys at
{authority}/{tenant}/discovery/v2.0/keys; the users below stand in for the tenant's users,
their groups for security groups (object ids); `serve` answers what Entra and Microsoft Graph
answer at the same paths.
";

struct Args {
    words: Vec<String>,
}

impl Args {
    /// Takes `--name VALUE` out of the arguments (the last one wins).
    fn take(&mut self, name: &str) -> Result<Option<String>, Error> {
        Ok(self.take_all(name)?.pop())
    }

    fn take_all(&mut self, name: &str) -> Result<Vec<String>, Error> {
        let mut found = Vec::new();
        while let Some(i) = self.words.iter().position(|w| w == name) {
            if i + 1 >= self.words.len() {
                return Err(Error::Usage(format!("{name} needs a value")));
            }
            found.push(self.words.remove(i + 1));
            self.words.remove(i);
        }
        Ok(found)
    }

    fn flag(&mut self, name: &str) -> bool {
        let before = self.words.len();
        self.words.retain(|w| w != name);
        before != self.words.len()
    }

    fn finish(self) -> Result<(), Error> {
        match self.words.first() {
            None => Ok(()),
            Some(w) => Err(Error::Usage(format!("unexpected argument \"{w}\""))),
        }
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<Option<T>, Error> {
    v.map(|s| s.parse().map_err(|_| Error::Usage(format!("{name}: \"{s}\" is not a number")))).transpose()
}

fn pairs(name: &str, items: Vec<String>) -> Result<Vec<(String, serde_json::Value)>, Error> {
    items
        .into_iter()
        .map(|item| {
            let (k, v) =
                item.split_once('=').ok_or_else(|| Error::Usage(format!("{name} wants NAME=JSON")))?;
            let value =
                serde_json::from_str(v).map_err(|_| Error::Usage(format!("{name} {k}: not JSON: {v}")))?;
            Ok((k.to_owned(), value))
        })
        .collect()
}

fn list(v: Option<String>) -> Option<Vec<String>> {
    v.map(|s| s.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect())
}

fn mint_options(a: &mut Args) -> Result<MintOptions, Error> {
    Ok(MintOptions {
        user: a.take("--user")?,
        app: a.take("--app")?,
        tenant: a.take("--tid")?,
        audience: a.take("--aud")?,
        version: parse_num("--ver", a.take("--ver")?)?,
        groups: list(a.take("--groups")?),
        roles: list(a.take("--roles")?),
        scopes: a.take("--scp")?,
        expires_in: parse_num("--exp", a.take("--exp")?)?,
        not_before: parse_num("--nbf", a.take("--nbf")?)?,
        claims: {
            let mut claims = pairs("--claim", a.take_all("--claim")?)?;
            claims.extend(list(a.take("--acrs")?).map(|ids| ("acrs".to_owned(), serde_json::json!(ids))));
            claims
        },
        unset_claims: a.take_all("--unset")?,
        headers: pairs("--header", a.take_all("--header")?)?,
        unset_headers: a.take_all("--unset-header")?,
        key: a.take("--key")?,
        alg: a.take("--alg")?,
        signing: a.take("--sign")?.as_deref().map(Signing::parse).transpose()?.unwrap_or_default(),
        overage: a.flag("--overage"),
        claim_source: a.take("--claim-source")?,
        graph: a.flag("--graph"),
    })
}

fn run(mut a: Args) -> Result<(), Error> {
    if a.words.is_empty() {
        print!("{HELP}\n{}", nginx::users_text());
        return Ok(());
    }
    let command = a.words.remove(0);
    let state = a
        .take("--state")?
        .or_else(|| std::env::var("ENTRA_DEV_IDP_STATE").ok())
        .map_or_else(|| PathBuf::from("entra-dev-idp"), PathBuf::from);
    let kind = |a: &mut Args| -> Result<KeyKind, Error> {
        a.take("--kind")?.as_deref().map_or(Ok(KeyKind::Rsa), KeyKind::parse)
    };
    match command.as_str() {
        "help" | "--help" | "-h" => print!("{HELP}\n{}", nginx::users_text()),
        "init" => {
            let settings = Settings {
                tenant: a.take("--tenant")?.unwrap_or_else(|| DEV_TENANT.into()),
                client_id: a.take("--client-id")?.unwrap_or_else(|| DEV_CLIENT_ID.into()),
                authority: a.take("--authority")?.unwrap_or_else(|| GLOBAL_AUTHORITY.into()),
            };
            a.finish()?;
            let store = KeyStore::init(&state, settings)?;
            nginx::write_app_files(&store)?;
            print!("{}", nginx::provider_block(&store, "dev"));
        }
        "provider" => {
            let name = a.take("--name")?.unwrap_or_else(|| "dev".into());
            a.finish()?;
            print!("{}", nginx::provider_block(&KeyStore::open(&state)?, &name));
        }
        "jwks" => {
            let out = a.take("--out")?;
            a.finish()?;
            let text = serde_json::to_string_pretty(&KeyStore::open(&state)?.jwks()?).expect("JSON");
            match out {
                Some(path) => std::fs::write(&path, text + "\n").map_err(|e| Error::Io(path, e))?,
                None => println!("{text}"),
            }
        }
        "client-certificate" => {
            let (cert, key) = (a.take("--cert")?, a.take("--key")?);
            a.finish()?;
            let (Some(cert), Some(key)) = (cert, key) else {
                return Err(Error::Usage("client-certificate needs --cert FILE and --key FILE".into()));
            };
            KeyStore::open(&state)?;
            entra_dev_idp::client_cert::create(&state, cert.as_ref(), key.as_ref())?;
        }
        "client-secret" => {
            a.finish()?;
            println!("{DEV_CLIENT_SECRET}");
        }
        "kids" => {
            a.finish()?;
            let store = KeyStore::open(&state)?;
            println!("{}", store.current().kid);
            for key in store.keys().iter().filter(|k| k.kid != store.current().kid) {
                println!("{}", key.kid);
            }
        }
        "rotate" | "add-key" => {
            let kind = kind(&mut a)?;
            let issuer = a.take("--issuer")?;
            let hidden = a.flag("--hidden");
            a.finish()?;
            let mut store = KeyStore::open(&state)?;
            let kid = store.add_key(kind, issuer, command == "rotate")?;
            if hidden {
                store.hide(&kid)?;
            }
            println!("{kid}");
        }
        "remove-key" => {
            let kid = (!a.words.is_empty()).then(|| a.words.remove(0));
            a.finish()?;
            let kid = kid.ok_or_else(|| Error::Usage("remove-key KID".into()))?;
            KeyStore::open(&state)?.remove_key(&kid)?;
        }
        "serve" => {
            let listen = a.take("--listen")?.unwrap_or_else(|| "127.0.0.1:9400".into());
            let https = a.take("--https-listen")?;
            a.finish()?;
            KeyStore::open(&state)?;
            let https = https.map(|addr| server::bind(&addr)).transpose()?;
            server::serve(state, server::bind(&listen)?, https)?;
        }
        "mint" => {
            let count: u64 = parse_num("--count", a.take("--count")?)?.unwrap_or(1);
            let mut options = mint_options(&mut a)?;
            a.finish()?;
            let store = KeyStore::open(&state)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for i in 0..count {
                if count > 1 {
                    // Distinct tokens: each its own `uti`, as Entra gives every token.
                    options.claims.push(("uti".into(), serde_json::json!(format!("mint-{i}"))));
                }
                let token = mint(&store, &options)?;
                writeln!(out, "{token}").map_err(|e| Error::Io("stdout".into(), e))?;
                if count > 1 {
                    options.claims.pop();
                }
            }
        }
        other => return Err(Error::Usage(format!("unknown command \"{other}\" (see help)"))),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args { words: std::env::args().skip(1).collect() }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("entra-dev-idp: {e}");
            ExitCode::from(2)
        }
    }
}
