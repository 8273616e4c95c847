//! Identifiers: generated ids and tokens, and the rules for ids and slugs
//! that come from the platform.

use serde_json::{Value, json};
use zeroize::Zeroizing;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// Fills `buf` from the operating system's random source.
///
/// # Panics
/// Only when the OS has no random source at all, where nothing secure can run.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::getrandom(buf).expect("the operating system random source is unavailable");
}

/// `len` random URL-safe characters (6 bits of entropy each).
pub fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    random_bytes(&mut bytes);
    bytes.iter().copied().map(url_safe).collect()
}

/// `prefix` and `len` random URL-safe characters, built in a zeroizing
/// buffer: for credentials, which must not linger in freed memory.
pub fn random_secret(prefix: &str, len: usize) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    random_bytes(&mut bytes);
    let mut out = Zeroizing::new(String::with_capacity(prefix.len() + len));
    out.push_str(prefix);
    out.extend(bytes.iter().copied().map(url_safe));
    out
}

/// One URL-safe character from a random byte. 256 is a multiple of 64, so
/// masking keeps the distribution uniform.
fn url_safe(b: u8) -> char {
    ALPHABET[(b & 63) as usize] as char
}

/// A new integration id: `int_` followed by 21 random URL-safe characters.
pub fn new_integration_id() -> String {
    format!("int_{}", random_token(21))
}

/// A new API token id: `tok_` followed by 21 random URL-safe characters.
pub fn new_token_id() -> String {
    format!("tok_{}", random_token(21))
}

/// A new user secret id: `sec_` followed by 21 random URL-safe characters.
pub fn new_secret_id() -> String {
    format!("sec_{}", random_token(21))
}

/// The longest user or profile id.
pub const MAX_IDENT: usize = 128;
/// What an id may hold besides ASCII letters and digits (`-` last, so that
/// the list reads literally inside a regex character class).
const IDENT_PUNCT: &str = "_.:@-";
/// The longest profile slug.
pub const MAX_SLUG: usize = 64;
/// What a slug may hold after its first character, besides lowercase
/// letters and digits.
const SLUG_PUNCT: &str = "_-";

/// Checks a user or profile id coming from the platform: 1 to 128 characters
/// of `A-Z a-z 0-9 _ - . : @`.
pub fn validate_ident(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_IDENT
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || IDENT_PUNCT.as_bytes().contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} '{}': use 1 to 128 characters of letters, digits and _ - . : @",
            value.escape_debug()
        ))
    }
}

/// Checks a profile slug: lowercase letters, digits, `_` and `-`, starting
/// with a letter or digit, at most 64 characters (it is typed as `@slug`).
pub fn validate_slug(value: &str) -> Result<(), String> {
    let mut bytes = value.bytes();
    let ok = value.len() <= MAX_SLUG
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || SLUG_PUNCT.as_bytes().contains(&b)
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid slug '{}': use lowercase letters, digits, _ and -, starting with a letter or digit, at most 64 characters",
            value.escape_debug()
        ))
    }
}

/// The JSON Schema of what [`validate_ident`] accepts.
pub fn ident_schema() -> Value {
    json!({
        "type": "string",
        "pattern": format!("^[A-Za-z0-9{IDENT_PUNCT}]{{1,{MAX_IDENT}}}$"),
    })
}

/// The JSON Schema of what [`validate_slug`] accepts.
pub fn slug_schema() -> Value {
    json!({
        "type": "string",
        "pattern": format!("^[a-z0-9][a-z0-9{SLUG_PUNCT}]{{0,{}}}$", MAX_SLUG - 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_ids_have_the_documented_shape_and_differ() {
        let a = new_integration_id();
        let b = new_integration_id();
        assert_eq!(a.len(), 25);
        assert!(a.starts_with("int_"));
        assert!(a[4..].bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a, b);
        for id in [new_token_id(), new_secret_id()] {
            assert_eq!(id.len(), 25);
            assert!(id[4..].bytes().all(|c| ALPHABET.contains(&c)));
        }
        assert!(new_token_id().starts_with("tok_"));
        assert!(new_secret_id().starts_with("sec_"));
        let token = random_secret("itk_", 32);
        assert_eq!(token.len(), 36);
        assert!(token.starts_with("itk_"));
        assert!(token[4..].bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(*token, *random_secret("itk_", 32));
    }

    #[test]
    fn idents_and_slugs_follow_their_rules() {
        assert!(validate_ident("profile id", "prof_vzfin").is_ok());
        assert!(validate_ident("user id", "user@example.com").is_ok());
        assert!(validate_ident("profile id", "").is_err());
        assert!(validate_ident("profile id", "a b").is_err());
        assert!(validate_ident("profile id", &"x".repeat(129)).is_err());
        assert!(validate_slug("vzfin").is_ok());
        assert!(validate_slug("coding-2").is_ok());
        assert!(validate_slug("").is_err());
        assert!(validate_slug("-x").is_err());
        assert!(validate_slug("VZ").is_err());
        assert!(validate_slug("a:b").is_err());
    }
}
