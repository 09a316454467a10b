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
    // nginx symbols are resolved when nginx loads the module.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        println!("cargo::rustc-link-arg=-undefined");
        println!("cargo::rustc-link-arg=dynamic_lookup");
    }
}
