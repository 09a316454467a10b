//! Makes nginx's build features visible to the module as `cfg(ngx_feature = "...")` and
//! `cfg(ngx_os = "...")`; nginx-sys exports them only to crates that depend on it directly.

use std::env;

fn main() {
    for (var, cfg) in [("DEP_NGINX_FEATURES", "ngx_feature"), ("DEP_NGINX_OS", "ngx_os")] {
        if let Ok(check) = env::var(format!("{var}_CHECK")) {
            println!("cargo::rustc-check-cfg=cfg({cfg}, values({check}))");
        }
        for value in env::var(var).unwrap_or_default().split(',').filter(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}=\"{value}\"");
        }
        println!("cargo::rerun-if-env-changed={var}");
    }
    // nginx keeps a request's `Cookie` lines as an array until 1.22, as a linked list from 1.23.
    println!("cargo::rustc-check-cfg=cfg(ngx_cookie_list)");
    let version: u64 = env::var("DEP_NGINX_VERSION_NUMBER").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if version >= 1_023_000 {
        println!("cargo::rustc-cfg=ngx_cookie_list");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    if env::var_os("CARGO_FEATURE_SIGNATURES_OPENSSL").is_some() {
        check_nginx_links_system_openssl();
    }
    // nginx symbols are resolved when nginx loads the module.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo::rustc-link-arg=-undefined");
        println!("cargo::rustc-link-arg=dynamic_lookup");
    }
}

/// The `signatures-openssl` build links the system's libssl. nginx exports its symbols to modules
/// (`-Wl,-E`), so in an nginx with its own static OpenSSL (`--with-openssl=DIR`) the module's
/// OpenSSL calls would bind to that copy, of another version than the headers the `openssl`
/// crate was built for: refuse such an nginx here rather than crash it later.
fn check_nginx_links_system_openssl() {
    let build_dir = env::var("DEP_NGINX_BUILD_DIR").expect("nginx-sys names nginx's build directory");
    let makefile = std::path::Path::new(&build_dir).join("Makefile");
    println!("cargo::rerun-if-changed={}", makefile.display());
    let text = std::fs::read_to_string(&makefile).unwrap_or_else(|e| {
        panic!("signatures-openssl: cannot read {} to check nginx's OpenSSL: {e}", makefile.display())
    });
    if text.contains("libssl.a") || text.contains("libcrypto.a") {
        panic!(
            "signatures-openssl: the nginx of {} links its own static OpenSSL; the module would \
             call into it with the system's headers. Build without the feature (aws-lc-rs).",
            makefile.display()
        );
    }
}
