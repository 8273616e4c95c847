//! The environment handed to each sidecar: identity, non-secret provider
//! settings, and every secret only by reference.

use std::collections::BTreeMap;
use std::path::Path;

/// Non-secret provider settings each sidecar receives when the resolver's own
/// environment sets them. An allowlist: nothing else is copied.
const PASSTHROUGH: &[(&str, &[&str])] = &[
    (
        "teller",
        &[
            "TELLER_API_BASE",
            "TELLER_ENVIRONMENT",
            "TELLER_CERT_PATH",
            "TELLER_KEY_PATH",
            "TELLER_CA_PATH",
            "TELLER_TIMEOUT_MS",
        ],
    ),
    (
        "gmail",
        &[
            "GMAIL_API_BASE",
            "GOOGLE_TOKEN_URL",
            "GOOGLE_REVOKE_URL",
            "GMAIL_CLIENT_ID",
            "GMAIL_TIMEOUT_MS",
        ],
    ),
    (
        "notify",
        &[
            "SLACK_API_BASE",
            "TELEGRAM_API_BASE",
            "RESEND_API_BASE",
            "INTEGRATIONS_WEBHOOK_ALLOW_PRIVATE",
            "NOTIFY_MAX_PER_MINUTE",
            "NOTIFY_TIMEOUT_MS",
            "NOTIFY_DEADLINE_MS",
        ],
    ),
];

/// Secrets a sidecar needs, passed as `${NAME}` for the agent runtime to expand.
const SECRET_REFERENCES: &[(&str, &[&str])] = &[("gmail", &["GMAIL_CLIENT_SECRET"])];

/// What the resolver knows of the environment the sidecars should get.
#[derive(Debug, Clone)]
pub struct SidecarEnv {
    db: String,
    keys_file: Option<String>,
    vars: BTreeMap<String, String>,
}

impl SidecarEnv {
    /// From the resolver's own process environment and the store URL it uses.
    pub fn from_process(db_url: &str) -> Self {
        Self::from_vars(db_url, std::env::vars())
    }

    /// From explicit variables (the process environment, or a test's).
    pub fn from_vars(db_url: &str, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut all: BTreeMap<String, String> =
            vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let keys_file = all.remove("INTEGRATIONS_KEYS_FILE").map(|p| absolute(&p));
        let wanted: Vec<&str> = PASSTHROUGH
            .iter()
            .flat_map(|(_, names)| names.iter().copied())
            .collect();
        all.retain(|k, _| wanted.contains(&k.as_str()));
        Self {
            db: sidecar_db_url(db_url),
            keys_file,
            vars: all,
        }
    }

    /// The environment of the `server` sidecar for this identity.
    pub(crate) fn for_server(
        &self,
        server: &str,
        user_id: &str,
        profile_id: &str,
        session_id: Option<&str>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("INTEGRATIONS_DB".into(), self.db.clone());
        match &self.keys_file {
            Some(path) => env.insert("INTEGRATIONS_KEYS_FILE".into(), path.clone()),
            None => env.insert("INTEGRATIONS_KEYS".into(), "${INTEGRATIONS_KEYS}".into()),
        };
        env.insert("INTEGRATIONS_USER_ID".into(), user_id.into());
        env.insert("INTEGRATIONS_PROFILE_ID".into(), profile_id.into());
        if let Some(session) = session_id {
            env.insert("INTEGRATIONS_SESSION_ID".into(), session.into());
        }
        for (_, names) in PASSTHROUGH.iter().filter(|(s, _)| *s == server) {
            for name in *names {
                if let Some(value) = self.vars.get(*name) {
                    env.insert((*name).into(), value.clone());
                }
            }
        }
        for (_, names) in SECRET_REFERENCES.iter().filter(|(s, _)| *s == server) {
            for name in *names {
                env.insert((*name).into(), format!("${{{name}}}"));
            }
        }
        env
    }
}

/// The store URL as a sidecar should see it: a URL carrying a password
/// becomes the `${INTEGRATIONS_DB}` placeholder; a relative SQLite path is made
/// absolute, since the agent runtime may spawn sidecars elsewhere.
fn sidecar_db_url(url: &str) -> String {
    if carries_password(url) {
        return "${INTEGRATIONS_DB}".into();
    }
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return url.into();
    };
    let (path, query) = rest
        .split_once('?')
        .map_or((rest, None), |(p, q)| (p, Some(q)));
    if path.is_empty() || path == ":memory:" || Path::new(path).is_absolute() {
        return url.into();
    }
    match query {
        Some(q) => format!("sqlite://{}?{q}", absolute(path)),
        None => format!("sqlite://{}", absolute(path)),
    }
}

/// Whether a store URL carries a password (`user:pass@` or `password=`).
fn carries_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let userinfo_has_password = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let query_has_password = rest.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| kv.to_ascii_lowercase().starts_with("password="))
    });
    userinfo_has_password || query_has_password
}

fn absolute(path: &str) -> String {
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_with_passwords_become_a_placeholder() {
        for (url, secret) in [
            ("postgres://app:hunter2@db:5432/integrations", true),
            (
                "postgresql://app:hunter2@db/integrations?sslmode=require",
                true,
            ),
            ("postgres://db/integrations?user=app&password=hunter2", true),
            ("postgres://app@db/integrations", false),
            ("postgres://db/integrations?sslmode=require", false),
            ("sqlite:///var/lib/integrations.db?mode=rwc", false),
        ] {
            assert_eq!(carries_password(url), secret, "{url}");
            let shown = sidecar_db_url(url);
            assert_eq!(shown == "${INTEGRATIONS_DB}", secret, "{url} -> {shown}");
            assert!(!shown.contains("hunter2"));
        }
    }

    #[test]
    fn relative_sqlite_paths_become_absolute() {
        let shown = sidecar_db_url("sqlite://integrations.db?mode=rwc");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            shown,
            format!("sqlite://{}/integrations.db?mode=rwc", cwd.display())
        );
        assert_eq!(sidecar_db_url("sqlite:///abs/x.db"), "sqlite:///abs/x.db");
    }

    #[test]
    fn each_sidecar_gets_only_its_own_settings_and_secrets_by_reference() {
        let vars = [
            ("TELLER_API_BASE", "http://127.0.0.1:1"),
            ("SLACK_API_BASE", "http://127.0.0.1:2"),
            ("GMAIL_CLIENT_ID", "client-id"),
            ("GMAIL_CLIENT_SECRET", "CANARY-secret"),
            ("INTEGRATIONS_KEYS", "k1=CANARYkey"),
            ("DATABASE_URL", "postgres://x:CANARY@h/d"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = SidecarEnv::from_vars("sqlite:///s.db", vars);
        let teller = env.for_server("teller", "u1", "p1", Some("s1"));
        assert_eq!(teller["TELLER_API_BASE"], "http://127.0.0.1:1");
        assert_eq!(teller["INTEGRATIONS_KEYS"], "${INTEGRATIONS_KEYS}");
        assert_eq!(teller["INTEGRATIONS_SESSION_ID"], "s1");
        assert!(!teller.contains_key("SLACK_API_BASE"));
        let gmail = env.for_server("gmail", "u1", "p1", None);
        assert_eq!(gmail["GMAIL_CLIENT_SECRET"], "${GMAIL_CLIENT_SECRET}");
        assert_eq!(gmail["GMAIL_CLIENT_ID"], "client-id");
        assert!(!gmail.contains_key("INTEGRATIONS_SESSION_ID"));
        let all = format!(
            "{teller:?}{gmail:?}{:?}{env:?}",
            env.for_server("notify", "u1", "p1", None)
        );
        assert!(!all.contains("CANARY"), "{all}");
        assert!(!all.contains("HOME"));
    }
}
