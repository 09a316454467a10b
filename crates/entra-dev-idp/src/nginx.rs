//! What nginx is told about the development IdP: the files an `entra_provider` block names
//! (client secret, session keys, key set), written into the state directory, and the block
//! itself, ready to paste; the demo users as the README lists them.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand_core::{OsRng, RngCore};

use crate::directory::{big_user_groups, USERS};
use crate::keystore::{KeyStore, DEV_CLIENT_SECRET, GLOBAL_AUTHORITY};
use crate::mint::guid_for;
use crate::Error;

/// The files of the state directory an `entra_provider` block names.
pub struct AppFiles {
    pub client_secret: PathBuf,
    pub session_keys: PathBuf,
    pub jwks: PathBuf,
}

impl AppFiles {
    pub fn of(dir: &Path) -> AppFiles {
        // nginx resolves relative paths from its configuration directory: the block names these
        // files by absolute path.
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        AppFiles {
            client_secret: dir.join("client-secret"),
            session_keys: dir.join("session.keys"),
            jwks: dir.join("jwks.json"),
        }
    }
}

/// Writes `path` readable by its owner only (nginx refuses secrets others can read).
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    let io = |e| Error::Io(path.display().to_string(), e);
    let mut file =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

/// Writes the client secret, a new session key and the key set into the state directory.
pub fn write_app_files(store: &KeyStore) -> Result<AppFiles, Error> {
    let files = AppFiles::of(store.dir());
    write_private(&files.client_secret, &format!("{DEV_CLIENT_SECRET}\n"))?;
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    write_private(&files.session_keys, &format!("{}\n", STANDARD.encode(key)))?;
    let jwks = serde_json::to_string_pretty(&store.jwks()?).map_err(|e| Error::State(e.to_string()))?;
    fs::write(&files.jwks, jwks + "\n").map_err(|e| Error::Io(files.jwks.display().to_string(), e))?;
    Ok(files)
}

/// The `entra_provider NAME { ... }` block for this state: an IdP served at its authority (init
/// --authority) is discovered there, with browser sign-in; one left at Entra's global authority
/// can only mint tokens, so nginx reads its key set from the file.
pub fn provider_block(store: &KeyStore, name: &str) -> String {
    let settings = store.settings();
    let files = AppFiles::of(store.dir());
    let mut out = String::new();
    let _ = writeln!(out, "# The development IdP's app (state {}).", store.dir().display());
    let _ = writeln!(out, "entra_provider {name} {{");
    let _ = writeln!(out, "    tenant             {};", settings.tenant);
    let _ = writeln!(out, "    client_id          {};", settings.client_id);
    if settings.authority == GLOBAL_AUTHORITY {
        let _ = writeln!(
            out,
            "    # Bearer tokens only: this IdP was made without --authority, so it serves no metadata\n    \
             # nginx could discover. (After a rotate: entra-dev-idp jwks --out {})",
            files.jwks.display()
        );
        let _ = writeln!(out, "    jwks_file          {};", files.jwks.display());
    } else {
        let _ = writeln!(
            out,
            "    # Exactly as given to init --authority; serve the IdP there (entra-dev-idp serve --listen HOST:PORT).",
        );
        let _ = writeln!(out, "    authority          {};", settings.authority);
        let _ =
            writeln!(out, "    # Browser sign-in (entra_auth {name} session): files init wrote, mode 0600.");
        let _ = writeln!(out, "    client_secret_file {};", files.client_secret.display());
        let _ = writeln!(out, "    session_key_file   {};", files.session_keys.display());
    }
    let _ = writeln!(out, "}}");
    out
}

/// The demo users: name, oid, display name and groups (those of the user in 250 groups
/// counted, not listed: Graph answers for them).
pub fn users_text() -> String {
    let mut out = String::from(
        "Demo users (sign in as one on the authorize page; mint --user NAME for a token; oids are the same in\n\
         every state). App roles: none by default; mint --roles A,B adds them to a token.\n",
    );
    for (name, display, groups) in USERS {
        let groups = if groups.is_empty() {
            format!("{} groups, none in its tokens (group overage: Graph answers)", big_user_groups().len())
        } else {
            groups.join(", ")
        };
        let _ = writeln!(out, "  {name:<6} oid {}  {display}\n         groups: {groups}", guid_for(name));
    }
    out
}
