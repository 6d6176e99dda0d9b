//! HMAC-SHA256 request and response signing (the rule is in docs/signing.md).

/// A runner's shared key: 32 random bytes, named by a key id so two keys can be valid
/// during rotation. The secret never appears in Debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub key_id: String,
    pub secret: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}
