//! Telegram webhook updates: arbitrary bytes read by the webhook's own
//! parser (`providers::telegram::Update::parse`, then `command_of` of a
//! private chat's message text, or a tap's action) and routed by
//! `resolver::route`, the routing decision the webhook makes, over a store
//! seeded once with a user's profiles and bots. Reading never panics, and
//! routing lands only on a granted profile of the bot's user.

#![no_main]

use std::sync::LazyLock;

use model::config::DecryptedConfig;
use vault::Keyring;
use model::{IntegrationType, Scope};
use store::{NewIntegration, NewProfile, Store};
use libfuzzer_sys::fuzz_target;
use providers::telegram::{Event, Update, command_of};
use resolver::RouteError;
use zeroize::Zeroizing;

struct Seeded {
    runtime: tokio::runtime::Runtime,
    store: Store,
    /// The integrations a message may arrive on, and one that does not exist.
    rows: Vec<String>,
    _dir: tempfile::TempDir,
}

static SEEDED: LazyLock<Seeded> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fuzz.db").display());
    let (store, rows) = runtime.block_on(async {
        let store = Store::connect(&url).await.expect("the store opens");
        for (id, slug, is_default) in [
            ("prof_fin", "fin", false),
            ("prof_code", "code", true),
            ("prof_home", "home", false),
        ] {
            store
                .add_profile(&NewProfile {
                    id: id.into(),
                    user_id: "u1".into(),
                    slug: slug.into(),
                    name: None,
                    is_default,
                })
                .await
                .expect("a profile");
        }
        let keyring = Keyring::parse(&Keyring::generate_entry()).expect("a keyring");
        let config = |kind, json: &str| {
            DecryptedConfig::validate(kind, Zeroizing::new(json.as_bytes().to_vec()))
                .expect("a valid config")
        };
        let bot = |n: u32| {
            config(
                IntegrationType::Telegram,
                &format!(r#"{{"bot_token":"{n}:AA","bot_user_id":{n},"bot_username":"Bot{n}"}}"#),
            )
        };
        let new = |kind, scope, ids: &[&str], bound: Option<&str>| NewIntegration {
            user_id: "u1".into(),
            kind,
            label: None,
            is_default: false,
            scope,
            profile_ids: ids.iter().map(|s| s.to_string()).collect(),
            bound_profile_id: bound.map(Into::into),
        };
        let telegram = IntegrationType::Telegram;
        let bound = store
            .add_integration(
                &keyring,
                &new(
                    telegram,
                    Scope::Agents,
                    &["prof_fin", "prof_code"],
                    Some("prof_fin"),
                ),
                &bot(1),
            )
            .await
            .expect("a bound bot");
        let shared = store
            .add_integration(
                &keyring,
                &new(telegram, Scope::Agents, &["prof_home"], None),
                &bot(2),
            )
            .await
            .expect("a shared bot");
        let off = store
            .add_integration(&keyring, &new(telegram, Scope::All, &[], None), &bot(3))
            .await
            .expect("a disabled bot");
        store.set_enabled(&off.id, false).await.expect("disabled");
        let teller = store
            .add_integration(
                &keyring,
                &new(IntegrationType::Teller, Scope::All, &[], None),
                &config(
                    IntegrationType::Teller,
                    r#"{"enrollment_id":"enr_1","access_token":"t","institution_name":"PNC"}"#,
                ),
            )
            .await
            .expect("a teller row");
        let rows = vec![bound.id, shared.id, off.id, teller.id, "int_missing".into()];
        (store, rows)
    });
    Seeded {
        runtime,
        store,
        rows,
        _dir: dir,
    }
});

const PROFILES: [(&str, &str); 3] = [
    ("prof_fin", "fin"),
    ("prof_code", "code"),
    ("prof_home", "home"),
];

fuzz_target!(|data: &[u8]| {
    let seeded = &*SEEDED;
    let Some(update) = Update::parse(data) else {
        return;
    };
    let text = match &update.event {
        Event::Tap(tap) => {
            let (action, argument) = tap.action();
            assert!(tap.data.starts_with(action) && tap.data.ends_with(argument));
            return;
        }
        Event::Message { chat, text } => {
            assert_eq!(update.chat, Some(*chat));
            text.as_str()
        }
        Event::Ignored => return,
    };
    // A command's argument is the text's own, trimmed.
    let (command, argument) = command_of(text);
    assert!(command.is_some() || argument == text);
    assert!(text.contains(argument));
    let integration = seeded.rows[text.len() % seeded.rows.len()].as_str();
    let routed = seeded
        .runtime
        .block_on(resolver::route(&seeded.store, integration, text));
    match routed {
        Ok(route) => {
            // The bound bot reaches fin and code; the shared bot home only.
            let granted: &[&str] = if integration == seeded.rows[0] {
                &["prof_fin", "prof_code"]
            } else if integration == seeded.rows[1] {
                &["prof_home"]
            } else {
                panic!("{integration} routed a message: {route:?}")
            };
            assert!(granted.contains(&route.profile_id.as_str()), "{route:?}");
            assert!(text.ends_with(route.text.as_str()), "{route:?}");
            if route.text != text {
                let slug = PROFILES
                    .iter()
                    .find(|(id, _)| *id == route.profile_id)
                    .map(|(_, s)| *s);
                assert!(
                    text.trim_start()
                        .starts_with(&format!("@{}", slug.unwrap_or("?"))),
                    "{route:?}"
                );
            }
        }
        Err(RouteError::Store(e)) => panic!("the store failed: {e}"),
        Err(_) => {}
    }
});
