//! The user's Gmail grant as one tool call sees it: which OAuth scopes it
//! holds, and its access token, refreshed and written back encrypted.

use model::config::DecryptedConfig;
use model::{Integration, IntegrationType};
use serde_json::Value;
use zeroize::Zeroizing;

use providers::google::{self as oauth, Grant};

/// What a tool needs the grant to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Send,
    Draft,
}

impl Access {
    /// The short scope names (after `https://www.googleapis.com/auth/`)
    /// that allow this; `mail.google.com` is full access.
    fn scopes(self) -> &'static [&'static str] {
        match self {
            Self::Read => &["gmail.readonly", "gmail.modify", "mail.google.com"],
            Self::Send => &[
                "gmail.send",
                "gmail.compose",
                "gmail.modify",
                "mail.google.com",
            ],
            Self::Draft => &["gmail.compose", "gmail.modify", "mail.google.com"],
        }
    }

    /// What the agent is told when the grant lacks this.
    pub fn missing(self) -> &'static str {
        match self {
            Self::Read => {
                "The user's Gmail connection does not allow reading mail; the user must reconnect Gmail with read access."
            }
            Self::Send => {
                "The user's Gmail connection does not allow sending mail; the user must reconnect Gmail with send access."
            }
            Self::Draft => {
                "The user's Gmail connection does not allow creating drafts; the user must reconnect Gmail with compose access."
            }
        }
    }
}

/// Whether granted `scopes` (full URLs or short names) allow `access`.
/// A grant that recorded no scopes is taken as read-only.
pub fn allows(scopes: Option<&[String]>, access: Access) -> bool {
    let Some(scopes) = scopes else {
        return access == Access::Read;
    };
    scopes.iter().any(|scope| {
        let short = scope
            .trim()
            .trim_start_matches("https://www.googleapis.com/auth/")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        access.scopes().contains(&short)
    })
}

/// The granted Gmail integration of the running profile, opened for one call.
pub struct OpenedGrant {
    pub integration: Integration,
    pub config: DecryptedConfig,
    /// The connected address: the `From` of everything sent.
    pub email: String,
    /// The OAuth scopes recorded with the grant, if any.
    pub scopes: Option<Vec<String>>,
}

impl OpenedGrant {
    /// Reads the clear facts of an opened Gmail config.
    pub fn new(integration: Integration, config: DecryptedConfig) -> Self {
        let shown = config
            .redacted(IntegrationType::Gmail)
            .unwrap_or(Value::Null);
        let email = shown["email"].as_str().unwrap_or_default().to_string();
        let scopes = shown["scopes"].as_array().map(|items| {
            items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        });
        Self {
            integration,
            config,
            email,
            scopes,
        }
    }

    /// Whether the grant allows `access`.
    pub fn allows(&self, access: Access) -> bool {
        allows(self.scopes.as_deref(), access)
    }

    fn field(&self, name: &str) -> Option<Zeroizing<String>> {
        self.config.get(IntegrationType::Gmail, name).ok().flatten()
    }

    /// The stored access token while it has more than a minute left.
    pub fn fresh_token(&self) -> Option<Zeroizing<String>> {
        let expires_at: i64 = self.field("expires_at")?.parse().ok()?;
        oauth::is_fresh(expires_at)
            .then(|| self.field("access_token"))
            .flatten()
    }

    /// The refresh token, the grant itself.
    pub fn refresh_token(&self) -> Option<Zeroizing<String>> {
        self.field("refresh_token")
    }

    /// This config with `grant` as its access token.
    pub fn with_grant(&self, grant: &Grant) -> Option<DecryptedConfig> {
        let updated = self.config.with_fields(
            IntegrationType::Gmail,
            &[
                ("access_token", grant.access_token.as_str().into()),
                ("expires_at", grant.expires_at.into()),
            ],
        );
        match updated {
            Ok(valid) => Some(valid.config),
            Err(e) => {
                tracing::warn!(integration = %self.integration.id, error = %e, "the refreshed token does not fit the stored config; it is not kept");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tool_needs_a_scope_that_allows_it() {
        let full = |s: &str| format!("https://www.googleapis.com/auth/{s}");
        let cases: &[(&[&str], [bool; 3])] = &[
            (&["gmail.readonly"], [true, false, false]),
            (&["gmail.send"], [false, true, false]),
            (&["gmail.compose"], [false, true, true]),
            (&["gmail.readonly", "gmail.send"], [true, true, false]),
            (&["gmail.modify"], [true, true, true]),
            (&["https://mail.google.com/"], [true, true, true]),
            (&["gmail.metadata"], [false, false, false]),
            (&[], [false, false, false]),
        ];
        for (scopes, expected) in cases {
            for short in [true, false] {
                let scopes: Vec<String> = scopes
                    .iter()
                    .map(|s| {
                        if short || s.starts_with("https") {
                            s.to_string()
                        } else {
                            full(s)
                        }
                    })
                    .collect();
                let got =
                    [Access::Read, Access::Send, Access::Draft].map(|a| allows(Some(&scopes), a));
                assert_eq!(&got, expected, "{scopes:?}");
            }
        }
        assert!(allows(None, Access::Read));
        assert!(!allows(None, Access::Send));
    }
}
