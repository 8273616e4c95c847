use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::*;
use crate::IntegrationType::{self, *};

fn valid(kind: IntegrationType, json: &str) -> Result<ValidConfig, ConfigError> {
    DecryptedConfig::validate(kind, Zeroizing::new(json.as_bytes().to_vec()))
}

#[test]
fn every_type_accepts_its_required_fields_and_derives_facts() {
    let cases: &[(IntegrationType, &str, Option<&str>, &str)] = &[
        (
            Slack,
            r#"{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"U1","team_name":"Vox Gateway"}"#,
            Some("T1:U1"),
            "Vox Gateway",
        ),
        (
            Telegram,
            r#"{"bot_token":"1:AA","bot_user_id":777,"bot_username":"VonzioBot"}"#,
            Some("777"),
            "@VonzioBot",
        ),
        (
            Telegram,
            r#"{"bot_token":"1:AA","bot_user_id":" 778 ","bot_username":"@VZFinance_bot"}"#,
            Some("778"),
            "@VZFinance_bot",
        ),
        (
            Gmail,
            r#"{"email":" A.Mouzou@Gmail.com ","refresh_token":"1//r","scopes":["gmail.readonly"]}"#,
            Some("a.mouzou@gmail.com"),
            "A.Mouzou@Gmail.com",
        ),
        (
            Teller,
            r#"{"enrollment_id":"enr_1","access_token":"test_token_1","institution_name":"PNC"}"#,
            Some("enr_1"),
            "PNC",
        ),
        (
            Email,
            r#"{"api_key":"re_1","from_address":"alerts@app.vonz.io","to_address":"me@x.io"}"#,
            None,
            "alerts@app.vonz.io",
        ),
        (
            Webhook,
            r#"{"url":"https://user:pw@Hooks.Zapier.com:443/hooks/catch/123/abc?x=1"}"#,
            None,
            "hooks.zapier.com",
        ),
    ];
    for (kind, json, external, label) in cases {
        let v = valid(*kind, json).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(v.external_id.as_deref(), *external, "{kind}");
        assert_eq!(v.config.identity(*kind), v.external_id, "{kind}");
        assert_eq!(v.default_label, *label, "{kind}");
    }
}

#[test]
fn bad_configs_are_refused_naming_the_field_never_the_value() {
    let cases: &[(IntegrationType, &str, &str)] = &[
        (Slack, "not json SECRETVALUE", "JSON object"),
        (Slack, r#""SECRETVALUE""#, "JSON object"),
        (Slack, r#"{"bot_token":"SECRETVALUE""#, "not valid"),
        (
            Slack,
            r#"{"bot_token":"SECRETVALUE","team_id":"T"}"#,
            "'authed_user_id'",
        ),
        (
            Gmail,
            r#"{"email":"a@b","refresh_token":12345678}"#,
            "'refresh_token' must be a non-empty string",
        ),
        (
            Gmail,
            r#"{"email":"a@b","refresh_token":"  "}"#,
            "'refresh_token' must be a non-empty string",
        ),
        (
            Gmail,
            r#"{"email":"a@b","refresh_token":"SECRETVALUE","scopes":"x"}"#,
            "'scopes' must be an array",
        ),
        (
            Teller,
            r#"{"enrollment_id":"","access_token":"SECRETVALUE","institution_name":"P"}"#,
            "'enrollment_id' must be a non-empty string",
        ),
        (
            Telegram,
            r#"{"bot_token":"SECRETVALUE","bot_user_id":1.5,"bot_username":"b"}"#,
            "'bot_user_id'",
        ),
        (
            Email,
            r#"{"api_key":"SECRETVALUE","from_address":"a","to_address":"b","SECRETVALUE":"x"}"#,
            "not one of provider, api_key, smtp_host, smtp_port, smtp_security, smtp_username, smtp_password, from_address, to_address",
        ),
        (
            Email,
            r#"{"provider":"smtp","smtp_host":"mail.example.com","smtp_username":"u","from_address":"a","to_address":"b"}"#,
            "missing the required field 'smtp_password' (required: smtp_host, smtp_username, smtp_password, from_address, to_address)",
        ),
        (
            Email,
            r#"{"provider":"smtp","api_key":"SECRETVALUE","smtp_host":"h","smtp_username":"u","smtp_password":"SECRETVALUE","from_address":"a","to_address":"b"}"#,
            "field 'api_key' is for provider 'resend', not 'smtp'",
        ),
        (
            Email,
            r#"{"smtp_host":"h","smtp_username":"u","smtp_password":"SECRETVALUE","from_address":"a","to_address":"b"}"#,
            "field 'smtp_host' is for provider 'smtp', not 'resend'",
        ),
        (
            Email,
            r#"{"provider":"smtp","smtp_host":"h","smtp_port":70000,"smtp_username":"u","smtp_password":"SECRETVALUE","from_address":"a","to_address":"b"}"#,
            "'smtp_port' must be an integer from 1 to 65535",
        ),
        (
            Email,
            r#"{"provider":"smtp","smtp_host":"h","smtp_security":"none","smtp_username":"u","smtp_password":"SECRETVALUE","from_address":"a","to_address":"b"}"#,
            "'smtp_security' must be one of starttls, tls",
        ),
        (
            Email,
            r#"{"provider":"sendgrid","api_key":"SECRETVALUE","from_address":"a","to_address":"b"}"#,
            "'provider' must be one of resend, smtp",
        ),
        (
            Email,
            r#"{"api_key":"SECRETVALUE","api_key":"SECRETVALUE2","from_address":"a","to_address":"b"}"#,
            "appears twice",
        ),
        (Webhook, r#"{"url":"ftp://SECRETVALUE"}"#, "http(s) URL"),
        (Webhook, r#"{"url":"https://"}"#, "http(s) URL"),
        (Webhook, r#"{"url":"https://h.io/x"} trailing"#, "not valid"),
    ];
    for (kind, json, needle) in cases {
        let err = valid(*kind, json).expect_err(json).to_string();
        assert!(err.contains(needle), "{json}: {err}");
        assert!(!err.contains("SECRETVALUE"), "{json}: {err}");
        assert!(!err.contains("12345678"), "{json}: {err}");
    }
}

#[test]
fn redacted_view_is_an_allowlist() {
    let v = valid(
        Telegram,
        r#"{"bot_token":"123:SECRET","bot_user_id":"123","bot_username":"b","owner_chat_id":42}"#,
    )
    .unwrap();
    let shown = v.config.redacted(Telegram).unwrap();
    assert_eq!(
        shown,
        serde_json::json!({"bot_token": MASK, "bot_user_id": "123", "bot_username": "b", "owner_chat_id": 42})
    );
    // A stored field the allowlist does not know is never shown.
    let legacy = DecryptedConfig::from_trusted(Zeroizing::new(
        br#"{"url":"https://h.io/SECRET","signing_key":"SECRET2","extra":{"a":"SECRET3"}}"#
            .to_vec(),
    ));
    let shown = legacy.redacted(Webhook).unwrap();
    assert_eq!(shown, serde_json::json!({"url": MASK}));
    assert_eq!(format!("{legacy:?}"), "DecryptedConfig(<redacted>)");
}

#[test]
fn with_fields_replaces_and_adds_and_keeps_the_rest() {
    let v = valid(
        Gmail,
        r#"{"email":"a@gmail.com","refresh_token":"1//R","access_token":"ya29.OLD","scopes":["gmail.readonly"]}"#,
    )
    .unwrap();
    let updated = v
        .config
        .with_fields(
            Gmail,
            &[
                ("access_token", "ya29.NEW".into()),
                ("expires_at", 1_900_000_000i64.into()),
            ],
        )
        .unwrap();
    let get = |name| {
        updated
            .config
            .get(Gmail, name)
            .unwrap()
            .map(|t| t.to_string())
    };
    assert_eq!(get("refresh_token").as_deref(), Some("1//R"));
    assert_eq!(get("access_token").as_deref(), Some("ya29.NEW"));
    assert_eq!(get("expires_at").as_deref(), Some("1900000000"));
    assert_eq!(
        updated.config.redacted(Gmail).unwrap(),
        serde_json::json!({"email": "a@gmail.com", "refresh_token": MASK, "scopes": ["gmail.readonly"], "access_token": MASK, "expires_at": 1_900_000_000})
    );
    let refused = v.config.with_fields(Gmail, &[("password", "x".into())]);
    assert!(refused.is_err());
}

#[test]
fn a_request_config_becomes_a_config_without_showing_its_secrets() {
    let input: ConfigInput = serde_json::from_str(
        r#"{"api_key":"re_SECRETVALUE","from_address":"a@x.io","to_address":"b@x.io"}"#,
    )
    .unwrap();
    assert_eq!(format!("{input:?}"), "ConfigInput(<redacted>)");
    let v = DecryptedConfig::from_input(Email, &input).unwrap();
    assert_eq!(
        v.config
            .get(Email, "api_key")
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("re_SECRETVALUE")
    );
    assert_eq!(v.default_label, "a@x.io");
    for (json, needle) in [
        (
            r#"{"api_key":12345678,"from_address":"a","to_address":"b"}"#,
            "'api_key'",
        ),
        (
            r#"{"api_key":"SECRETVALUE","from_address":"a"}"#,
            "'to_address'",
        ),
        (
            r#"{"SECRETVALUE":"x","api_key":"k","from_address":"a","to_address":"b"}"#,
            "not one of",
        ),
    ] {
        let input: ConfigInput = serde_json::from_str(json).unwrap();
        let err = DecryptedConfig::from_input(Email, &input)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
        assert!(
            !err.contains("SECRETVALUE") && !err.contains("12345678"),
            "{err}"
        );
    }
}

#[test]
fn two_different_slack_users_never_make_one_identity() {
    let pairs = [("T1:U", "2"), ("T1", ":U2"), ("T1%3AU", "2"), ("T1", "U2")];
    let made: std::collections::HashSet<_> = pairs
        .iter()
        .map(|(team, user)| identity_value(Slack, &[team, user]).unwrap())
        .collect();
    assert_eq!(made.len(), pairs.len(), "{made:?}");
    assert_eq!(identity_value(Slack, &["T1", "U2"]).unwrap(), "T1:U2");
    assert_eq!(
        identity_value(Gmail, &["Ann@Example.com"]).unwrap(),
        "ann@example.com"
    );
}

#[test]
fn a_change_naming_an_identity_field_is_refused() {
    let cases: &[(IntegrationType, &str, &str, &str)] = &[
        (
            Slack,
            r#"{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"U1"}"#,
            "team_id",
            "connecting Slack again",
        ),
        (
            Slack,
            r#"{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"U1"}"#,
            "authed_user_id",
            "connecting Slack again",
        ),
        (
            Gmail,
            r#"{"email":"a@gmail.com","refresh_token":"1//r"}"#,
            "email",
            "connecting Gmail again",
        ),
        (
            Telegram,
            r#"{"bot_token":"7:AA","bot_user_id":7,"bot_username":"b"}"#,
            "bot_user_id",
            "another bot",
        ),
        (
            Teller,
            r#"{"enrollment_id":"enr_1","access_token":"t","institution_name":"P"}"#,
            "enrollment_id",
            "Teller Connect",
        ),
    ];
    for (kind, json, name, why) in cases {
        let v = valid(*kind, json).unwrap();
        // Even to the value it has.
        let current = v.config.get(*kind, name).unwrap().unwrap();
        for value in [Value::String("OTHER".into()), current.as_str().into()] {
            let changes = Map::from_iter([(name.to_string(), value)]);
            let err = v.config.merged(*kind, &changes).unwrap_err().to_string();
            assert!(
                err.contains(&format!("'{name}'")) && err.contains(why),
                "{err}"
            );
            assert!(!err.contains("OTHER"), "{err}");
        }
        assert!(
            !config_schema(*kind)["properties"]
                .as_object()
                .unwrap()
                .contains_key(*name)
        );
    }
}

#[test]
fn merged_replaces_adds_removes_and_names_fields_only() {
    let v = valid(
        Gmail,
        r#"{"email":"a@gmail.com","refresh_token":"1//R","access_token":"ya29.OLD","scopes":["gmail.readonly"]}"#,
    )
    .unwrap();
    let changes = |json: serde_json::Value| json.as_object().unwrap().clone();
    let updated = v
        .config
        .merged(
            Gmail,
            &changes(serde_json::json!({"refresh_token": "1//NEW", "access_token": null, "expires_at": 5})),
        )
        .unwrap();
    let get = |name| {
        updated
            .config
            .get(Gmail, name)
            .unwrap()
            .map(|t| t.to_string())
    };
    assert_eq!(get("refresh_token").as_deref(), Some("1//NEW"));
    assert_eq!(get("access_token"), None);
    assert_eq!(get("expires_at").as_deref(), Some("5"));
    assert_eq!(get("email").as_deref(), Some("a@gmail.com"));
    for (bad, needle) in [
        (
            serde_json::json!({"refresh_token": null}),
            "'refresh_token'",
        ),
        (
            serde_json::json!({"refresh_token": 12345678}),
            "'refresh_token'",
        ),
        (serde_json::json!({"SECRETVALUE": "x"}), "not one of"),
        (serde_json::json!({"scopes": "SECRETVALUE"}), "'scopes'"),
    ] {
        let err = v
            .config
            .merged(Gmail, &changes(bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
        assert!(
            !err.contains("SECRETVALUE") && !err.contains("12345678"),
            "{err}"
        );
    }
}

#[test]
fn an_email_config_is_resend_by_default_or_smtp_when_it_says_so() {
    let resend = valid(
        Email,
        r#"{"api_key":"re_SECRET","from_address":"alerts@app.example","to_address":"me@example.com"}"#,
    )
    .unwrap();
    assert_eq!(resend.default_label, "alerts@app.example");
    let smtp = valid(
        Email,
        r#"{"provider":"smtp","smtp_host":"smtp.fastmail.com","smtp_port":465,"smtp_security":"tls","smtp_username":"me@fastmail.com","smtp_password":"SECRET-app-password","from_address":"me@fastmail.com","to_address":"me@fastmail.com"}"#,
    )
    .unwrap();
    assert_eq!(smtp.default_label, "me@fastmail.com");
    assert_eq!(resend.external_id, None, "a Resend key names no login");
    assert_eq!(
        smtp.external_id.as_deref(),
        Some("smtp.fastmail.com:me@fastmail.com"),
        "the SMTP login"
    );
    let shown = smtp.config.redacted(Email).unwrap();
    assert_eq!(
        shown,
        serde_json::json!({"provider": "smtp", "smtp_host": "smtp.fastmail.com", "smtp_port": 465, "smtp_security": "tls", "smtp_username": "me@fastmail.com", "smtp_password": MASK, "from_address": "me@fastmail.com", "to_address": "me@fastmail.com"})
    );
    // The login is the row's identity: no change names it.
    let moved = smtp.config.merged(
        Email,
        serde_json::json!({"smtp_username": "other@fastmail.com"})
            .as_object()
            .unwrap(),
    );
    assert!(
        moved
            .unwrap_err()
            .to_string()
            .contains("names the SMTP login")
    );
    let password = smtp.config.merged(
        Email,
        serde_json::json!({"smtp_password": "new-app-password", "smtp_port": null})
            .as_object()
            .unwrap(),
    );
    assert!(password.is_ok(), "{password:?}");
    let half = resend.config.merged(
        Email,
        serde_json::json!({"provider": "smtp"}).as_object().unwrap(),
    );
    assert!(
        half.unwrap_err()
            .to_string()
            .contains("'api_key' is for provider 'resend'")
    );
}

#[test]
fn the_email_schema_is_one_of_its_providers() {
    let schema = config_schema(Email);
    let variants = schema["oneOf"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    assert_eq!(
        variants[0]["properties"]["provider"]["enum"],
        serde_json::json!(["resend"])
    );
    assert!(
        !variants[0]["required"]
            .as_array()
            .unwrap()
            .contains(&"provider".into())
    );
    assert!(variants[0]["properties"].get("smtp_host").is_none());
    assert_eq!(
        variants[1]["properties"]["provider"]["enum"],
        serde_json::json!(["smtp"])
    );
    assert!(
        variants[1]["required"]
            .as_array()
            .unwrap()
            .contains(&"provider".into())
    );
    assert!(variants[1]["properties"].get("api_key").is_none());
    assert!(
        variants[1]["required"]
            .as_array()
            .unwrap()
            .contains(&"smtp_host".into()),
        "a create sets the login"
    );
    assert_eq!(
        variants[1]["properties"]["smtp_port"]["anyOf"][0]["maximum"],
        65535
    );
}
