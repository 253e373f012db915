//! The credentials every signed request carries: an AccessKey pair, with an STS token when
//! the key is temporary. A leaf module: the RPC client signs with it and the credential
//! chain produces it, so neither has to import the other.

use std::fmt;

/// An AccessKey pair, with an STS token when the key is temporary.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: Option<String>,
    /// Where these came from, e.g. "environment (ALIBABA_CLOUD_ACCESS_KEY_ID, …)", so that
    /// an error about them can say what to fix.
    pub source: String,
}

// Never print a secret, even in debug output.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &"<redacted>")
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("source", &self.source)
            .finish()
    }
}
