//! What a `server { }` needs of the module: the providers that sign browsers in on it, whose
//! callback and front-channel logout paths it answers in its server-rewrite phase.

use std::sync::Arc;

use entra_core::Provider;

use super::ext::{ConfError, Origin};

/// One provider used in a session mode by some location of the server.
pub struct SignInUse {
    pub provider: usize,
    /// The first `entra_auth` line that uses it here.
    pub origin: Origin,
}

#[derive(Default)]
pub struct ServerConf {
    pub sign_in: Vec<SignInUse>,
}

impl ServerConf {
    /// Records that a location of this server signs in with `providers[index]`; two providers
    /// cannot share a callback path, a front-channel logout path or a cookie name on one server.
    pub fn add(
        &mut self,
        providers: &[Arc<Provider>],
        index: usize,
        origin: &Origin,
    ) -> Result<(), ConfError> {
        if self.sign_in.iter().any(|u| u.provider == index) {
            return Ok(());
        }
        let new = &providers[index].sign_in;
        for other in &self.sign_in {
            let them = &providers[other.provider].sign_in;
            let clash = [
                ("redirect_uri", new.redirect_uri.path() == them.redirect_uri.path()),
                ("frontchannel_logout_uri", new.frontchannel_logout_uri == them.frontchannel_logout_uri),
                ("session_cookie", new.cookie_name(true) == them.cookie_name(true)),
            ]
            .into_iter()
            .find(|(_, same)| *same);
            if let Some((directive, _)) = clash {
                return Err(ConfError::Rule(format!(
                    "entra_providers \"{}\" ({}) and \"{}\" ({}) sign in on one server with the same {directive}",
                    providers[other.provider].name, other.origin, providers[index].name, origin
                )));
            }
        }
        self.sign_in.push(SignInUse { provider: index, origin: origin.clone() });
        Ok(())
    }
}
