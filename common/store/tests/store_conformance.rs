//! One behaviour on both backends: every test here runs against a fresh
//! SQLite file, and against a fresh PostgreSQL database when
//! `INTEGRATIONS_TEST_POSTGRES` holds a server URL (CI sets it).

use model::config::{DecryptedConfig, ValidConfig};
use model::scope::{ScopeError, is_granted};
use model::sealing::{OpenError, Sealer};
use model::{AuditEntry, Decision, Identity};
use model::{Integration, IntegrationType, ReauthReason, Scope, Status};
use store::{Claim, LoggedNotification, NewClaim, SidecarStore, ThreadAnchor, ThreadRow};
use store::{
    ImportRow, ImportedIntegration, IntegrationUpdate, NewIntegration, NewProfile, NewSecret,
    SecretUpdate, Store, StoreError,
};
use vault::Keyring;
use zeroize::Zeroizing;

mod support;
use support::{backends, cleanup};

fn keyring() -> Keyring {
    Keyring::parse(&Keyring::generate_entry()).unwrap()
}

fn config(kind: IntegrationType, json: &str) -> ValidConfig {
    DecryptedConfig::validate(kind, Zeroizing::new(json.as_bytes().to_vec())).unwrap()
}

fn teller(enrollment: &str, bank: &str) -> ValidConfig {
    config(
        IntegrationType::Teller,
        &format!(
            r#"{{"enrollment_id":"{enrollment}","access_token":"test_token_{enrollment}","institution_name":"{bank}"}}"#
        ),
    )
}

fn gmail() -> ValidConfig {
    mailbox("a@gmail.com")
}

fn mailbox(email: &str) -> ValidConfig {
    config(
        IntegrationType::Gmail,
        &format!(r#"{{"email":"{email}","refresh_token":"1//rt"}}"#),
    )
}

fn new(user: &str, kind: IntegrationType) -> NewIntegration {
    NewIntegration {
        user_id: user.into(),
        kind,
        label: None,
        is_default: false,
        scope: Scope::All,
        profile_ids: vec![],
        bound_profile_id: None,
    }
}

fn scoped(user: &str, kind: IntegrationType, ids: &[&str]) -> NewIntegration {
    NewIntegration {
        scope: Scope::Agents,
        profile_ids: ids.iter().map(|s| s.to_string()).collect(),
        ..new(user, kind)
    }
}

async fn profile(store: &Store, user: &str, id: &str, slug: &str) {
    store
        .add_profile(&NewProfile {
            id: id.into(),
            user_id: user.into(),
            slug: slug.into(),
            name: None,
            is_default: false,
        })
        .await
        .unwrap();
}

async fn ids_of(store: &Store, user: &str) -> Vec<String> {
    store
        .integrations(user, None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

#[tokio::test]
async fn rows_round_trip_and_configs_open_only_with_the_keyring() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_vzfin", "vzfin").await;
        let created = s
            .add_integration(
                &k,
                &scoped("u1", IntegrationType::Teller, &["prof_vzfin"]),
                &teller("enr_pnc", "PNC"),
            )
            .await
            .unwrap();
        let read = s.integration(&created.id).await.unwrap().unwrap();
        assert_eq!(read, created, "{}", b.name);
        assert_eq!(read.label, "PNC");
        assert_eq!(read.external_id.as_deref(), Some("enr_pnc"));
        assert_eq!(read.profile_ids, vec!["prof_vzfin"]);
        let shown = k.open_config(&read).unwrap().redacted(read.kind).unwrap();
        assert_eq!(shown["enrollment_id"], "enr_pnc");
        assert_eq!(shown["access_token"], model::config::MASK);
        assert!(matches!(
            keyring().open_config(&read),
            Err(OpenError::UnknownKey { .. })
        ));
        assert_eq!(
            s.integrations("u1", Some(IntegrationType::Gmail))
                .await
                .unwrap(),
            vec![]
        );
        assert_eq!(s.integrations("u2", None).await.unwrap(), vec![]);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn uniqueness_rules_refuse_and_write_nothing() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        s.add_integration(&k, &new("u1", IntegrationType::Gmail), &gmail())
            .await
            .unwrap();
        let err = s
            .add_integration(&k, &new("u1", IntegrationType::Gmail), &gmail())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(ref m) if m.contains("already has a gmail")),
            "{}: {err}",
            b.name
        );
        // Another user may have their own, not the same one.
        let err = s
            .add_integration(
                &k,
                &new("u2", IntegrationType::Gmail),
                &mailbox("A@Gmail.COM"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{}: {err}", b.name);
        s.add_integration(
            &k,
            &new("u2", IntegrationType::Gmail),
            &mailbox("b@gmail.com"),
        )
        .await
        .unwrap();
        // Several teller enrollments per user, but each enrollment once.
        s.add_integration(
            &k,
            &new("u1", IntegrationType::Teller),
            &teller("enr_1", "PNC"),
        )
        .await
        .unwrap();
        s.add_integration(
            &k,
            &new("u1", IntegrationType::Teller),
            &teller("enr_2", "Chase"),
        )
        .await
        .unwrap();
        let err = s
            .add_integration(
                &k,
                &new("u2", IntegrationType::Teller),
                &teller("enr_1", "PNC"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{}: {err}", b.name);
        assert_eq!(ids_of(s, "u1").await.len(), 3);
        assert_eq!(ids_of(s, "u2").await.len(), 1);
        assert_eq!(s.sealed_count().await.unwrap(), 4);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn scope_changes_follow_the_rules_and_refusals_change_nothing() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_a", "a").await;
        profile(s, "u1", "prof_b", "b").await;
        profile(s, "u2", "prof_x", "x").await;
        let i = s
            .add_integration(
                &k,
                &new("u1", IntegrationType::Teller),
                &teller("enr_s", "PNC"),
            )
            .await
            .unwrap();

        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let changed = s
            .set_scope(&i.id, Scope::Agents, &ids(&["prof_b", "prof_a", "prof_b"]))
            .await
            .unwrap();
        assert_eq!(
            changed.profile_ids,
            ids(&["prof_b", "prof_a"]),
            "{}",
            b.name
        );
        assert_eq!(
            s.integration(&i.id).await.unwrap().unwrap().profile_ids,
            ids(&["prof_b", "prof_a"])
        );

        for (bad, expected) in [
            (
                ids(&["prof_a", "prof_x"]),
                ScopeError::ProfileNotFound("prof_x".into()),
            ),
            (
                ids(&["prof_nope"]),
                ScopeError::ProfileNotFound("prof_nope".into()),
            ),
            (vec![], ScopeError::NoProfiles),
        ] {
            let err = s.set_scope(&i.id, Scope::Agents, &bad).await.unwrap_err();
            assert!(
                matches!(err, StoreError::Scope(ref e) if *e == expected),
                "{}: {err}",
                b.name
            );
            let still = s.integration(&i.id).await.unwrap().unwrap();
            assert_eq!(
                (still.scope, still.profile_ids),
                (Scope::Agents, ids(&["prof_b", "prof_a"]))
            );
        }
        let err = s
            .add_integration(
                &k,
                &scoped("u1", IntegrationType::Teller, &["prof_x"]),
                &teller("enr_t", "Chase"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Scope(_)), "{err}");
        assert_eq!(ids_of(s, "u1").await.len(), 1);

        let all = s
            .set_scope(&i.id, Scope::All, &ids(&["prof_a"]))
            .await
            .unwrap();
        assert_eq!((all.scope, all.profile_ids.len()), (Scope::All, 0));
        let err = s
            .set_scope("int_missing", Scope::All, &[])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn removing_a_profile_strips_it_and_an_emptied_scope_grants_nothing() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_a", "a").await;
        profile(s, "u1", "prof_b", "b").await;
        let only_a = s
            .add_integration(
                &k,
                &scoped("u1", IntegrationType::Teller, &["prof_a"]),
                &teller("enr_a", "PNC"),
            )
            .await
            .unwrap();
        let both = s
            .add_integration(
                &k,
                &scoped("u1", IntegrationType::Teller, &["prof_a", "prof_b"]),
                &teller("enr_ab", "Chase"),
            )
            .await
            .unwrap();
        assert_eq!(
            s.remove_profile("u1", "prof_a").await.unwrap(),
            2,
            "{}",
            b.name
        );
        let only_a = s.integration(&only_a.id).await.unwrap().unwrap();
        let both = s.integration(&both.id).await.unwrap().unwrap();
        assert_eq!(only_a.profile_ids, Vec::<String>::new());
        assert_eq!(both.profile_ids, vec!["prof_b"]);
        let prof_b = s.profile("prof_b").await.unwrap();
        assert!(!is_granted(&only_a, prof_b.as_ref()));
        assert!(is_granted(&both, prof_b.as_ref()));
        // The deleted profile grants nothing, whatever it was granted before.
        assert!(!is_granted(
            &both,
            s.profile("prof_a").await.unwrap().as_ref()
        ));
        assert!(matches!(
            s.remove_profile("u1", "prof_a").await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            s.remove_profile("u2", "prof_b").await,
            Err(StoreError::NotFound { .. })
        ));
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn profile_ids_and_slugs_are_unique() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        profile(s, "u1", "prof_a", "a").await;
        for (id, user, slug) in [("prof_a", "u2", "z"), ("prof_c", "u1", "a")] {
            let err = s
                .add_profile(&NewProfile {
                    id: id.into(),
                    user_id: user.into(),
                    slug: slug.into(),
                    name: None,
                    is_default: false,
                })
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{}: {err}", b.name);
        }
        profile(s, "u2", "prof_b", "a").await;
        let first_default = NewProfile {
            id: "prof_d1".into(),
            user_id: "u1".into(),
            slug: "d1".into(),
            name: Some("D1".into()),
            is_default: true,
        };
        s.add_profile(&first_default).await.unwrap();
        s.add_profile(&NewProfile {
            id: "prof_d2".into(),
            slug: "d2".into(),
            ..first_default.clone()
        })
        .await
        .unwrap();
        let defaults: Vec<String> = s
            .profiles("u1")
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.is_default)
            .map(|p| p.id)
            .collect();
        assert_eq!(defaults, vec!["prof_d2"]);
    }
    cleanup(backends).await;
}

fn bot(n: u32) -> ValidConfig {
    config(
        IntegrationType::Telegram,
        &format!(r#"{{"bot_token":"{n}:AA","bot_user_id":{n},"bot_username":"bot{n}"}}"#),
    )
}

#[tokio::test]
async fn default_enable_disable_and_delete() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        let first = NewIntegration {
            is_default: true,
            ..new("u1", IntegrationType::Telegram)
        };
        let a = s.add_integration(&k, &first, &bot(1)).await.unwrap();
        let c = s
            .add_integration(&k, &new("u1", IntegrationType::Telegram), &bot(2))
            .await
            .unwrap();
        let other = s
            .add_integration(
                &k,
                &NewIntegration {
                    user_id: "u2".into(),
                    ..first.clone()
                },
                &bot(3),
            )
            .await
            .unwrap();
        s.set_default(&c.id).await.unwrap();
        let defaults: Vec<(String, bool)> = s
            .integrations("u1", None)
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.id, i.is_default))
            .collect();
        assert_eq!(
            defaults,
            vec![(a.id.clone(), false), (c.id.clone(), true)],
            "{}",
            b.name
        );
        assert!(
            s.integration(&other.id).await.unwrap().unwrap().is_default,
            "another user's default is theirs"
        );

        let bank = s
            .add_integration(
                &k,
                &new("u1", IntegrationType::Teller),
                &teller("enr_1", "PNC"),
            )
            .await
            .unwrap();
        let err = s.set_default(&bank.id).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid(ref m) if m.contains("cannot be the default")),
            "{err}"
        );
        let err = s
            .add_integration(
                &k,
                &NewIntegration {
                    is_default: true,
                    ..new("u1", IntegrationType::Teller)
                },
                &teller("enr_2", "Chase"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");

        s.set_enabled(&a.id, false).await.unwrap();
        assert!(!s.integration(&a.id).await.unwrap().unwrap().enabled);
        s.set_enabled(&a.id, true).await.unwrap();
        assert!(s.integration(&a.id).await.unwrap().unwrap().enabled);
        s.delete_integration(&a.id).await.unwrap();
        assert_eq!(s.integration(&a.id).await.unwrap(), None);
        for err in [
            s.delete_integration(&a.id).await.unwrap_err(),
            s.set_enabled(&a.id, true).await.unwrap_err(),
            s.set_default(&a.id).await.unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        }
    }
    cleanup(backends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_of_one_user_leave_one_default_and_no_deleted_profile_in_scope() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        let mut bots = Vec::new();
        for n in 0..6 {
            bots.push(
                s.add_integration(&k, &new("u1", IntegrationType::Telegram), &bot(n))
                    .await
                    .unwrap()
                    .id,
            );
        }
        for round in 0..10 {
            let racers: Vec<_> = bots
                .iter()
                .map(|id| {
                    let (s, id) = (s.clone(), id.clone());
                    tokio::spawn(async move { s.set_default(&id).await.unwrap() })
                })
                .collect();
            for r in racers {
                r.await.unwrap();
            }
            let defaults = s
                .integrations("u1", None)
                .await
                .unwrap()
                .into_iter()
                .filter(|i| i.is_default)
                .count();
            assert_eq!(defaults, 1, "{} round {round}", b.name);
        }

        let mut banks = Vec::new();
        for n in 0..4 {
            let config = teller(&format!("enr_race_{n}"), "PNC");
            let row = s
                .add_integration(&k, &new("u1", IntegrationType::Teller), &config)
                .await
                .unwrap();
            banks.push(row.id);
        }
        for round in 0..8 {
            let (gone, kept) = (format!("prof_a{round}"), format!("prof_b{round}"));
            profile(s, "u1", &gone, &format!("a{round}")).await;
            profile(s, "u1", &kept, &format!("b{round}")).await;
            let mut racers: Vec<tokio::task::JoinHandle<()>> = banks
                .iter()
                .map(|id| {
                    let (s, id, ids) = (s.clone(), id.clone(), vec![gone.clone(), kept.clone()]);
                    tokio::spawn(async move {
                        // Refused once the profile is gone: that is the point.
                        let _ = s.set_scope(&id, Scope::Agents, &ids).await;
                    })
                })
                .collect();
            let (s2, gone2) = (s.clone(), gone.clone());
            racers.push(tokio::spawn(async move {
                s2.remove_profile("u1", &gone2).await.unwrap();
            }));
            for r in racers {
                r.await.unwrap();
            }
            for id in &banks {
                let row = s.integration(id).await.unwrap().unwrap();
                assert!(
                    !row.profile_ids.contains(&gone),
                    "{} round {round}: {:?}",
                    b.name,
                    row.profile_ids
                );
            }
        }
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn rotation_reseals_every_sealed_column_under_the_first_key_and_reports_what_it_cannot_open()
{
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let old_entry = Keyring::generate_entry();
        let old = Keyring::parse(&old_entry).unwrap();
        let mut rows: Vec<Integration> = Vec::new();
        for n in 0..300 {
            let user = format!("u{}", n % 7);
            rows.push(
                s.add_integration(
                    &old,
                    &new(&user, IntegrationType::Teller),
                    &teller(&format!("enr_{n}"), "PNC"),
                )
                .await
                .unwrap(),
            );
        }
        profile(s, "u1", "prof_a", "a").await;
        for n in 0..260 {
            let name = format!("SECRET_{n}");
            s.add_secret(
                &old,
                &new_secret("u1", &name, &format!("v{n}"), Scope::All, &[]),
            )
            .await
            .unwrap();
        }
        let stray = keyring();
        let lost = s
            .add_integration(&stray, &new("u9", IntegrationType::Gmail), &gmail())
            .await
            .unwrap();
        let lost_secret = s
            .add_secret(&stray, &new_secret("u9", "LOST", "x", Scope::All, &[]))
            .await
            .unwrap();
        // A Google flow in progress: its PKCE verifier is sealed too; a
        // Telegram link code keeps a clear integration id in the same column.
        use store::{Purpose, SpentState};
        let minute = std::time::Duration::from_secs(60);
        let state = s
            .issue_oauth_state(
                &old,
                "u1",
                Purpose::GmailState,
                "cookie",
                Some("VERIFIER"),
                minute,
            )
            .await
            .unwrap();
        s.issue_connect_key("u1", Purpose::TelegramLink, Some("int_link"), minute)
            .await
            .unwrap();
        assert_eq!(s.sealed_count().await.unwrap(), 563, "{}", b.name);

        let new_entry = Keyring::generate_entry();
        let both = Keyring::parse(&format!("{},{}", *new_entry, *old_entry)).unwrap();
        let mut seen = Vec::new();
        let report = s
            .rotate_keys(&both, |noun, n| seen.push((noun.to_string(), n)))
            .await
            .unwrap();
        let summary: Vec<_> = report
            .columns
            .iter()
            .map(|c| (c.column.as_str(), c.total, c.rotated, c.failed.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "user_integrations.encrypted_config",
                    301,
                    300,
                    vec![OpenError::UnknownKey {
                        id: lost.id.clone(),
                        kid: stray.primary_kid().into()
                    }]
                ),
                (
                    "user_secrets.encrypted_value",
                    261,
                    260,
                    vec![OpenError::UnknownKey {
                        id: lost_secret.id.clone(),
                        kid: stray.primary_kid().into()
                    }]
                ),
                ("connect_keys.verifier", 1, 1, vec![]),
            ],
            "{}",
            b.name
        );
        assert_eq!(seen.len(), 563);
        assert_eq!(
            seen.last().unwrap(),
            &("connect flow verifier(s)".to_string(), 563)
        );

        let only_new = Keyring::parse(&new_entry).unwrap();
        for row in &rows {
            let current = s.integration(&row.id).await.unwrap().unwrap();
            assert_eq!(current.sealed.kid(), Some(only_new.primary_kid()));
            only_new.open_config(&current).unwrap();
        }
        let granted = granted(s, &only_new, "u1", "prof_a").await;
        assert_eq!(granted.len(), 260, "{}", b.name);
        assert!(granted.contains(&("SECRET_7".to_string(), "v7".to_string())));
        let spent = s
            .spend_oauth_state(&only_new, &state, Purpose::GmailState, Some("cookie"))
            .await
            .unwrap();
        assert!(
            matches!(&spent, SpentState::Spent { verifier: Some(v), .. } if v.as_str() == "VERIFIER"),
            "{}: {spent:?}",
            b.name
        );
        assert_eq!(
            count(
                &b.url,
                "SELECT count(*) FROM connect_keys WHERE verifier = 'int_link'"
            )
            .await,
            1,
            "{}: a link code's clear integration id is left alone",
            b.name
        );
        // Running it again has nothing left to do.
        let again = s.rotate_keys(&both, |_, _| {}).await.unwrap();
        let summary: Vec<_> = again
            .columns
            .iter()
            .map(|c| (c.total, c.rotated, c.failed.len()))
            .collect();
        assert_eq!(summary, vec![(301, 0, 1), (261, 0, 1), (0, 0, 0)]);
    }
    cleanup(backends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    let backends = backends().await;
    for b in &backends {
        let k = std::sync::Arc::new(keyring());
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let (s, k) = (b.store.clone(), k.clone());
                tokio::spawn(async move {
                    for n in 0..10 {
                        s.add_integration(
                            &*k,
                            &new("u1", IntegrationType::Teller),
                            &teller(&format!("enr_{t}_{n}"), "PNC"),
                        )
                        .await
                        .unwrap();
                        s.integrations("u1", None).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(ids_of(&b.store, "u1").await.len(), 160, "{}", b.name);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_snapshot_reads_the_same_rows_as_the_single_reads() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_a", "a").await;
        profile(s, "u1", "prof_b", "b").await;
        profile(s, "u2", "prof_x", "x").await;
        s.add_integration(
            &k,
            &scoped("u1", IntegrationType::Teller, &["prof_a", "prof_b"]),
            &teller("enr_1", "PNC"),
        )
        .await
        .unwrap();
        s.add_integration(&k, &new("u1", IntegrationType::Gmail), &gmail())
            .await
            .unwrap();
        let mut off = new("u1", IntegrationType::Telegram);
        off.bound_profile_id = Some("prof_b".into());
        let bot = s.add_integration(&k, &off, &bot(9)).await.unwrap();
        s.set_enabled(&bot.id, false).await.unwrap();
        s.add_integration(
            &k,
            &new("u2", IntegrationType::Gmail),
            &mailbox("b@gmail.com"),
        )
        .await
        .unwrap();

        let snap = s.snapshot("u1", None).await.unwrap();
        assert_eq!(snap.profiles, s.profiles("u1").await.unwrap(), "{}", b.name);
        assert_eq!(
            snap.integrations,
            s.integrations("u1", None).await.unwrap(),
            "{}",
            b.name
        );
        assert_eq!(snap.integrations.len(), 3);
        assert!(
            snap.profile("prof_x").is_none(),
            "another user's profile is not in the snapshot"
        );
        let only = s
            .snapshot("u1", Some(IntegrationType::Teller))
            .await
            .unwrap();
        assert_eq!(
            only.integrations,
            s.integrations("u1", Some(IntegrationType::Teller))
                .await
                .unwrap()
        );
        assert_eq!(only.profiles.len(), 2);
        // The sealed config survives the round trip and still opens.
        k.open_config(&only.integrations[0]).unwrap();
        let nobody = s.snapshot("u_nobody", None).await.unwrap();
        assert_eq!((nobody.profiles.len(), nobody.integrations.len()), (0, 0));
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_pooled_connection_the_server_ended_while_idle_is_replaced_before_use() {
    let backends = backends().await;
    for b in backends.iter().filter(|b| b.name == "postgres") {
        profile(&b.store, "u1", "prof_a", "a").await;
        use sqlx::Row;
        let ended: i64 = sqlx::raw_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_one(&own_pg(&b.url).await)
        .await
        .unwrap()
        .get(0);
        assert!(ended >= 1, "the store held no connection");
        // Idle for longer than a connection is used unchecked: the pool
        // finds it dead before the statement does.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(b.store.profiles("u1").await.unwrap().len(), 1);
    }
    cleanup(backends).await;
}

/// The rows `sql` counts, read with a connection of the test's own.
async fn count(url: &str, sql: &str) -> i64 {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        use sqlx::Row;
        let row = sqlx::raw_sql(sql).fetch_one(&own_pg(url).await).await;
        row.unwrap().get(0)
    }
}

/// A PostgreSQL pool of the test's own, for simple queries: with no
/// startup parameter PgBouncer refuses, so that they run through it too.
async fn own_pg(url: &str) -> sqlx::PgPool {
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    sqlx::PgPool::connect_with(options.extra_float_digits(None))
        .await
        .unwrap()
}

fn who(profile: &str) -> Identity {
    Identity {
        user_id: "u1".into(),
        profile_id: profile.into(),
        session_id: Some("sess_1".into()),
    }
}

#[tokio::test]
async fn a_sidecar_reads_grants_and_writes_its_rows_the_same_on_both_backends() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_vzfin", "vzfin").await;
        profile(s, "u1", "prof_coding", "coding").await;
        let pnc = s
            .add_integration(
                &k,
                &scoped("u1", IntegrationType::Teller, &["prof_vzfin"]),
                &teller("enr_pnc", "PNC"),
            )
            .await
            .unwrap();
        s.add_integration(
            &k,
            &scoped("u1", IntegrationType::Teller, &["prof_coding"]),
            &teller("enr_chase", "Chase"),
        )
        .await
        .unwrap();
        let sidecar = SidecarStore::open(&b.url, 1).unwrap();

        let granted = sidecar
            .granted(&who("prof_vzfin"), IntegrationType::Teller)
            .await
            .unwrap();
        assert_eq!(granted, vec![pnc.clone()], "{}", b.name);
        let (found, config) = sidecar
            .open_granted(&k, &who("prof_vzfin"), IntegrationType::Teller, |i| {
                i.id == pnc.id
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, pnc.id);
        assert_eq!(
            config
                .get(IntegrationType::Teller, "access_token")
                .unwrap()
                .unwrap()
                .as_str(),
            "test_token_enr_pnc"
        );
        let elsewhere = sidecar
            .open_granted(&k, &who("prof_coding"), IntegrationType::Teller, |i| {
                i.id == pnc.id
            })
            .await
            .unwrap();
        assert!(elsewhere.is_none(), "{}", b.name);

        sidecar
            .mark_needs_reauth(
                &pnc.id,
                &pnc.sealed,
                ReauthReason::ProviderRefused,
                "refused",
            )
            .await
            .unwrap();
        assert_eq!(
            s.integration(&pnc.id).await.unwrap().unwrap().status,
            Status::NeedsReauth
        );

        let identity = who("prof_vzfin");
        let entry = AuditEntry {
            identity: &identity,
            server: "teller",
            tool: "teller_list_accounts",
            integration_id: Some(&pnc.id),
            decision: Decision::Allow,
            detail: None,
            duration: std::time::Duration::from_micros(1234),
        };
        sidecar.audit(&entry).await.unwrap();
        sidecar.audit(&entry).await.unwrap();
        assert_eq!(
            count(&b.url, "SELECT count(*) FROM audit_log WHERE session_id = 'sess_1' AND duration_us = 1234 AND decision = 'allow'").await,
            2,
            "{}",
            b.name
        );
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_sidecar_writes_back_a_config_only_over_the_one_it_read() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_vzfin", "vzfin").await;
        let row = s
            .add_integration(
                &k,
                &scoped("u1", IntegrationType::Gmail, &["prof_vzfin"]),
                &gmail(),
            )
            .await
            .unwrap();
        let sidecar = SidecarStore::open(&b.url, 1).unwrap();
        let with_token = |token: &str| {
            let opened = k.open_config(&row).unwrap();
            let updated = opened
                .with_fields(IntegrationType::Gmail, &[("access_token", token.into())])
                .unwrap();
            k.seal_config(
                &row.id,
                &row.user_id,
                IntegrationType::Gmail,
                &updated.config,
            )
        };
        let first = with_token("ya29.first");
        assert!(
            sidecar
                .swap_config(&row.id, &row.sealed, &first)
                .await
                .unwrap(),
            "{}",
            b.name
        );
        // A second writer that read the old row loses, and changes nothing.
        let second = with_token("ya29.second");
        assert!(
            !sidecar
                .swap_config(&row.id, &row.sealed, &second)
                .await
                .unwrap(),
            "{}",
            b.name
        );
        let stored = s.integration(&row.id).await.unwrap().unwrap();
        let token = k
            .open_config(&stored)
            .unwrap()
            .get(IntegrationType::Gmail, "access_token")
            .unwrap()
            .unwrap();
        assert_eq!(token.as_str(), "ya29.first", "{}", b.name);
        assert!(
            !sidecar
                .swap_config("int_missing", &row.sealed, &second)
                .await
                .unwrap()
        );
    }
    cleanup(backends).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_sidecar_waits_for_another_writer_without_stalling_its_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    drop(Store::connect(&url).await.unwrap());
    let sidecar = SidecarStore::open(&url, 1).unwrap();
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();

    let identity = who("prof_a");
    let entry = AuditEntry {
        identity: &identity,
        server: "notify",
        tool: "notify_user",
        integration_id: None,
        decision: Decision::Deny,
        detail: Some("no channel"),
        duration: std::time::Duration::from_micros(10),
    };
    // The audit insert finds the database locked; this same thread must stay
    // free to end the other writer's transaction, or the insert never lands.
    let (written, ()) = tokio::join!(sidecar.audit(&entry), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        writer.execute_batch("COMMIT").unwrap();
    });
    written.unwrap();
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM audit_log WHERE tool = 'notify_user'"
        )
        .await,
        1
    );
}

#[test]
fn a_sidecar_opening_a_store_held_by_another_process_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    // Created and migrated by a runtime that is gone, with its connections.
    runtime().block_on(async { drop(Store::connect(&url).await.unwrap()) });
    // As while another process recovers the WAL: nobody else can even read.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    let released = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        holder.execute_batch("COMMIT").unwrap();
        drop(holder);
    });
    let sidecar = SidecarStore::open(&url, 1).expect("opening waits instead of failing");
    released.join().unwrap();
    let snapshot = runtime().block_on(sidecar.snapshot("u1", None)).unwrap();
    assert!(snapshot.integrations.is_empty());
}

#[test]
fn a_sidecar_never_creates_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("absent.db").display()
    );
    assert!(SidecarStore::open(&url, 1).is_err());
    assert!(!dir.path().join("absent.db").exists());
    assert!(SidecarStore::open("sqlite::memory:", 1).is_err());
}

#[tokio::test]
async fn notification_rows_read_back_the_same_on_both_backends() {
    let backends = backends().await;
    for b in &backends {
        let sidecar = SidecarStore::open(&b.url, 1).unwrap();
        let row = |n: usize, key: Option<&str>, status: &str, profile: &str| LoggedNotification {
            notification_id: format!("ntf_{n}"),
            user_id: "u1".into(),
            profile_id: Some(profile.into()),
            session_id: Some("sess_1".into()),
            integration_id: Some("int_x".into()),
            channel: "slack".into(),
            urgency: "normal".into(),
            source: "agent".into(),
            status: status.into(),
            error: None,
            attempts: 2,
            idempotency_key: key.map(str::to_string),
            message: "hello".into(),
            provider_message_id: Some(format!("ts_{n}")),
        };
        sidecar
            .log_notification(&row(1, Some("k"), "failed", "prof_a"))
            .await
            .unwrap();
        assert_eq!(
            sidecar
                .sent_with_key("u1", "prof_a", "k", "agent")
                .await
                .unwrap(),
            None,
            "{}: a failure is no result",
            b.name
        );
        sidecar
            .log_notification(&row(2, Some("k"), "sent", "prof_a"))
            .await
            .unwrap();
        sidecar
            .log_notification(&row(3, None, "sent", "prof_b"))
            .await
            .unwrap();
        assert_eq!(
            sidecar
                .sent_with_key("u1", "prof_a", "k", "agent")
                .await
                .unwrap(),
            Some(row(2, Some("k"), "sent", "prof_a")),
            "{}",
            b.name
        );
        assert_eq!(
            sidecar
                .sent_with_key("u2", "prof_a", "k", "agent")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            sidecar
                .sent_with_key("u1", "prof_b", "k", "agent")
                .await
                .unwrap(),
            None,
            "keys are per profile"
        );
        assert_eq!(
            sidecar
                .sent_with_key("u1", "prof_a", "k", "platform")
                .await
                .unwrap(),
            None,
            "an agent's key never answers for the platform"
        );
        let thread = ThreadRow {
            notification_id: "ntf_2".into(),
            integration_id: "int_bot".into(),
            chat_id: "424242".into(),
            anchor: ThreadAnchor::Telegram(101),
            session_id: "sess_1".into(),
            profile_id: "prof_a".into(),
            label: Some("taxes".into()),
        };
        sidecar.add_thread(&thread).await.unwrap();
        assert!(
            sidecar.add_thread(&thread).await.is_err(),
            "{}: one row per message",
            b.name
        );
        assert_eq!(count(&b.url, "SELECT count(*) FROM telegram_threads WHERE message_id = 101 AND notification_id = 'ntf_2' AND claimed_at IS NULL").await, 1);
    }
    cleanup(backends).await;
}

fn claim(n: usize, profile: &str, key: Option<&str>) -> NewClaim {
    NewClaim {
        notification_id: format!("ntf_{n}"),
        user_id: "u1".into(),
        profile_id: profile.into(),
        source: "agent".into(),
        idempotency_key: key.map(str::to_string),
        limit: Some((3, std::time::Duration::from_secs(60))),
    }
}

/// The log row that ends claim `n`.
fn logged(n: usize, key: Option<&str>, status: &str) -> LoggedNotification {
    LoggedNotification {
        notification_id: format!("ntf_{n}"),
        user_id: "u1".into(),
        profile_id: Some("prof_a".into()),
        session_id: None,
        integration_id: Some("int_x".into()),
        channel: "slack".into(),
        urgency: "normal".into(),
        source: "agent".into(),
        status: status.into(),
        error: None,
        attempts: 1,
        idempotency_key: key.map(str::to_string),
        message: "hello".into(),
        provider_message_id: None,
    }
}

#[tokio::test]
async fn claims_hold_a_key_until_it_fails_and_count_the_minute_on_both_backends() {
    let backends = backends().await;
    for b in &backends {
        let s = SidecarStore::open(&b.url, 1).unwrap();
        let k = Some("k");
        assert_eq!(
            s.claim(&claim(1, "prof_a", k)).await.unwrap(),
            Claim::Granted
        );
        assert_eq!(
            s.claim(&claim(2, "prof_a", k)).await.unwrap(),
            Claim::Pending,
            "{}",
            b.name
        );
        s.log_notification(&logged(1, k, "failed")).await.unwrap();
        assert_eq!(
            s.claim(&claim(3, "prof_a", k)).await.unwrap(),
            Claim::Granted,
            "a failure frees the key"
        );
        s.log_notification(&logged(3, k, "sent")).await.unwrap();
        assert_eq!(s.claim(&claim(4, "prof_a", k)).await.unwrap(), Claim::Sent);
        assert_eq!(
            s.sent_with_key("u1", "prof_a", "k", "agent")
                .await
                .unwrap()
                .unwrap()
                .notification_id,
            "ntf_3"
        );
        // Two claims count (the failed one too); the limit is three.
        assert_eq!(
            s.claim(&claim(5, "prof_a", None)).await.unwrap(),
            Claim::Granted
        );
        let Claim::Limited(counted) = s.claim(&claim(6, "prof_a", None)).await.unwrap() else {
            panic!("{}: the fourth claim of the minute passed", b.name)
        };
        assert_eq!(counted.len(), 3);
        s.release_claim("ntf_5").await.unwrap();
        assert_eq!(
            s.claim(&claim(7, "prof_a", None)).await.unwrap(),
            Claim::Granted,
            "a released claim does not count"
        );
        assert_eq!(
            s.claim(&claim(8, "prof_b", k)).await.unwrap(),
            Claim::Granted,
            "keys and counts are per profile"
        );
    }
    cleanup(backends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_racing_for_one_key_or_the_last_place_of_the_minute_get_one_claim() {
    let backends = backends().await;
    for b in &backends {
        let one = std::sync::Arc::new(SidecarStore::open(&b.url, 1).unwrap());
        let two = std::sync::Arc::new(SidecarStore::open(&b.url, 1).unwrap());
        for round in 0..10 {
            let key = format!("key-{round}");
            let racing = [(&one, 2 * round), (&two, 2 * round + 1)].map(|(store, n)| {
                let (store, mut claim) = (store.clone(), claim(100 + n, "prof_race", Some(&key)));
                claim.limit = None;
                tokio::spawn(async move { store.claim(&claim).await.unwrap() })
            });
            let mut won = 0;
            for task in racing {
                won += usize::from(task.await.unwrap() == Claim::Granted);
            }
            assert_eq!(won, 1, "{}: key {key}", b.name);
        }
        let racing = (0..6).map(|n| {
            let (store, claim) = (
                if n % 2 == 0 { &one } else { &two }.clone(),
                claim(200 + n, "prof_count", None),
            );
            tokio::spawn(async move { store.claim(&claim).await.unwrap() })
        });
        let mut won = 0;
        for task in racing.collect::<Vec<_>>() {
            won += usize::from(task.await.unwrap() == Claim::Granted);
        }
        assert_eq!(won, 3, "{}: the limit is three a minute", b.name);
    }
    cleanup(backends).await;
}

/// Runs `sql` with a connection of the test's own.
async fn exec(url: &str, sql: &str) {
    try_exec(url, sql).await.unwrap();
}

/// [`exec`], which may fail.
async fn try_exec(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        sqlx::query(sql).execute(&pool).await?;
    } else {
        sqlx::raw_sql(sql).execute(&own_pg(url).await).await?;
    }
    Ok(())
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn api_tokens_are_shown_once_stored_hashed_and_revoked_only_by_their_user() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let (row, token) = s.create_api_token("u1", " ci deploy ").await.unwrap();
        assert!(token.starts_with("itk_") && token.len() == 36, "{}", b.name);
        assert!(row.id.starts_with("tok_"));
        assert_eq!(
            (row.name.as_str(), row.last_used_at.as_deref()),
            ("ci deploy", None)
        );
        assert_eq!(
            s.user_for_token(&token)
                .await
                .unwrap()
                .map(|owner| (owner.id, owner.user_id)),
            Some((row.id.clone(), "u1".to_string())),
            "{}",
            b.name
        );

        // Only the hash is stored; nothing listed carries the token or it.
        let listed = s.api_tokens("u1").await.unwrap();
        assert_eq!(listed.len(), 1);
        let used = listed[0]
            .last_used_at
            .clone()
            .expect("touched by the lookup");
        let shown = format!("{listed:?} {}", serde_json::to_string(&listed).unwrap());
        assert!(!shown.contains(&token[4..]), "{shown}");
        let hashed = format!(
            "SELECT count(*) FROM api_tokens WHERE length(token_sha256) = 64 AND token_sha256 <> '{}'",
            *token
        );
        assert_eq!(count(&b.url, &hashed).await, 1);
        assert!(!shown.contains("token_sha256"));

        // Touched at most once a minute.
        s.user_for_token(&token).await.unwrap();
        let again = s.api_tokens("u1").await.unwrap();
        assert_eq!(again[0].last_used_at.as_deref(), Some(used.as_str()));

        let mut wrong = token.to_string();
        wrong.replace_range(35.., if token.ends_with('A') { "B" } else { "A" });
        for bad in [wrong.as_str(), "", "itk_", &token[..35], "Bearer x"] {
            assert_eq!(s.user_for_token(bad).await.unwrap(), None, "{bad:?}");
        }
        assert!(matches!(
            s.create_api_token("u1", "  ").await,
            Err(StoreError::Invalid(_))
        ));

        let err = s.revoke_api_token("u2", &row.id).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { .. }),
            "{}: {err}",
            b.name
        );
        assert!(s.user_for_token(&token).await.unwrap().is_some());
        assert_eq!(s.api_tokens("u2").await.unwrap(), vec![]);
        s.revoke_api_token("u1", &row.id).await.unwrap();
        assert_eq!(s.user_for_token(&token).await.unwrap(), None, "{}", b.name);
        assert!(matches!(
            s.revoke_api_token("u1", &row.id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(s.api_tokens("u1").await.unwrap(), vec![]);
    }
    cleanup(backends).await;
}

fn new_secret(user: &str, name: &str, value: &str, scope: Scope, ids: &[&str]) -> NewSecret {
    NewSecret {
        user_id: user.into(),
        name: name.into(),
        value: Zeroizing::new(value.into()),
        scope,
        profile_ids: strings(ids),
    }
}

/// The names and values granted to `profile`, as plain strings.
async fn granted(s: &Store, k: &Keyring, user: &str, profile: &str) -> Vec<(String, String)> {
    s.granted_secrets(k, user, profile)
        .await
        .unwrap()
        .into_iter()
        .map(|(name, value)| (name, value.to_string()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn secrets_are_sealed_unique_by_name_and_granted_by_scope() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_a", "a").await;
        profile(s, "u1", "prof_b", "b").await;
        profile(s, "u2", "prof_x", "x").await;
        let openai = s
            .add_secret(
                &k,
                &new_secret("u1", "OPENAI_API_KEY", "sk-CANARY", Scope::All, &["prof_a"]),
            )
            .await
            .unwrap();
        assert!(openai.id.starts_with("sec_"));
        assert_eq!((openai.scope, openai.profile_ids.len()), (Scope::All, 0));
        let listed = s.secrets("u1").await.unwrap();
        assert_eq!(listed, vec![openai.clone()], "{}", b.name);
        let shown = format!("{listed:?} {}", serde_json::to_string(&listed).unwrap());
        assert!(
            !shown.contains("CANARY") && !shown.contains("v1."),
            "{shown}"
        );
        assert_eq!(
            count(&b.url, "SELECT count(*) FROM user_secrets WHERE encrypted_value LIKE 'v1.%' AND encrypted_value NOT LIKE '%CANARY%'").await,
            1
        );

        let err = s
            .add_secret(
                &k,
                &new_secret("u1", "OPENAI_API_KEY", "x", Scope::All, &[]),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{}: {err}", b.name);
        s.add_secret(
            &k,
            &new_secret("u2", "OPENAI_API_KEY", "theirs", Scope::All, &[]),
        )
        .await
        .unwrap();
        let too_big = "x".repeat(8 * 1024 + 1);
        for (name, value) in [
            ("lower", "v"),
            ("1ABC", "v"),
            ("", "v"),
            ("A-B", "v"),
            ("OK_NAME", too_big.as_str()),
            ("OK_NAME", "a\0b"),
        ] {
            let err = s
                .add_secret(&k, &new_secret("u1", name, value, Scope::All, &[]))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{name}: {err}");
        }
        // The limit counts characters, as the API's document says.
        let longest = "é".repeat(8 * 1024);
        s.add_secret(&k, &new_secret("u3", "LONGEST", &longest, Scope::All, &[]))
            .await
            .unwrap();
        for (ids, expected) in [
            (
                &["prof_a", "prof_x"][..],
                ScopeError::ProfileNotFound("prof_x".into()),
            ),
            (&[][..], ScopeError::NoProfiles),
        ] {
            let err = s
                .add_secret(&k, &new_secret("u1", "SCOPED", "v", Scope::Agents, ids))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Scope(ref e) if *e == expected),
                "{}: {err}",
                b.name
            );
        }
        assert_eq!(s.secrets("u1").await.unwrap().len(), 1, "nothing written");

        let github = s
            .add_secret(
                &k,
                &new_secret(
                    "u1",
                    "GITHUB_TOKEN",
                    "ghp_1",
                    Scope::Agents,
                    &["prof_a", "prof_a"],
                ),
            )
            .await
            .unwrap();
        assert_eq!(github.profile_ids, strings(&["prof_a"]));
        assert_eq!(
            granted(s, &k, "u1", "prof_a").await,
            pairs(&[("GITHUB_TOKEN", "ghp_1"), ("OPENAI_API_KEY", "sk-CANARY")]),
            "{}",
            b.name
        );
        assert_eq!(
            granted(s, &k, "u1", "prof_b").await,
            pairs(&[("OPENAI_API_KEY", "sk-CANARY")])
        );
        // Another user's profile, or none at all, is granted nothing.
        assert_eq!(granted(s, &k, "u1", "prof_x").await, vec![]);
        assert_eq!(granted(s, &k, "u1", "prof_nope").await, vec![]);
        assert_eq!(
            granted(s, &k, "u2", "prof_x").await,
            pairs(&[("OPENAI_API_KEY", "theirs")])
        );

        assert_eq!(
            s.secret("u1", &github.id).await.unwrap(),
            Some(github.clone())
        );
        assert_eq!(s.secret("u2", &github.id).await.unwrap(), None);
        assert_eq!(s.secret("u1", "sec_missing").await.unwrap(), None);
        let err = s.delete_secret("u2", &github.id).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        s.delete_secret("u1", &github.id).await.unwrap();
        assert_eq!(s.secret("u1", &github.id).await.unwrap(), None);
        assert!(matches!(
            s.delete_secret("u1", &github.id).await,
            Err(StoreError::NotFound { .. })
        ));
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_partial_secret_update_merges_and_a_refused_one_writes_nothing() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_a", "a").await;
        profile(s, "u1", "prof_b", "b").await;
        profile(s, "u2", "prof_x", "x").await;
        let sec = s
            .add_secret(&k, &new_secret("u1", "TOKEN", "one", Scope::All, &[]))
            .await
            .unwrap();
        let other = s
            .add_secret(&k, &new_secret("u1", "OTHER", "two", Scope::All, &[]))
            .await
            .unwrap();
        let update = |f: fn(&mut SecretUpdate)| {
            let mut u = SecretUpdate::default();
            f(&mut u);
            u
        };

        // Ids alone switch an `all` row to `agents`.
        let changed = s
            .update_secret(
                &k,
                "u1",
                &sec.id,
                &update(|u| u.profile_ids = Some(strings(&["prof_b", "prof_b"]))),
            )
            .await
            .unwrap();
        assert_eq!(
            (changed.scope, changed.profile_ids.clone()),
            (Scope::Agents, strings(&["prof_b"])),
            "{}",
            b.name
        );
        assert_eq!(
            s.secret("u1", &sec.id).await.unwrap(),
            Some(changed.clone())
        );
        // Scope alone keeps the ids; `all` clears them.
        let same = s
            .update_secret(
                &k,
                "u1",
                &sec.id,
                &update(|u| u.scope = Some(Scope::Agents)),
            )
            .await
            .unwrap();
        assert_eq!(same.profile_ids, strings(&["prof_b"]));
        let all = s
            .update_secret(&k, "u1", &sec.id, &update(|u| u.scope = Some(Scope::All)))
            .await
            .unwrap();
        assert_eq!((all.scope, all.profile_ids.len()), (Scope::All, 0));
        let err = s
            .update_secret(
                &k,
                "u1",
                &sec.id,
                &update(|u| u.scope = Some(Scope::Agents)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Scope(ScopeError::NoProfiles)),
            "{}: {err}",
            b.name
        );

        // Refused: a profile of another user, a taken name, a bad name; the
        // value given beside them is not written either.
        let refused: [(SecretUpdate, &str); 3] = [
            (
                SecretUpdate {
                    value: Some(Zeroizing::new("LEAKED".into())),
                    profile_ids: Some(strings(&["prof_a", "prof_x"])),
                    ..SecretUpdate::default()
                },
                "prof_x",
            ),
            (
                SecretUpdate {
                    value: Some(Zeroizing::new("LEAKED".into())),
                    name: Some("OTHER".into()),
                    ..SecretUpdate::default()
                },
                "OTHER",
            ),
            (
                SecretUpdate {
                    value: Some(Zeroizing::new("LEAKED".into())),
                    name: Some("bad name".into()),
                    ..SecretUpdate::default()
                },
                "invalid secret name",
            ),
        ];
        for (u, needle) in &refused {
            let err = s.update_secret(&k, "u1", &sec.id, u).await.unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(needle) && !text.contains("LEAKED"),
                "{}: {text}",
                b.name
            );
            assert_eq!(s.secret("u1", &sec.id).await.unwrap(), Some(all.clone()));
        }
        assert!(matches!(
            s.update_secret(&k, "u1", &sec.id, &refused[0].0).await,
            Err(StoreError::Scope(ScopeError::ProfileNotFound(ref id))) if id == "prof_x"
        ));
        assert!(matches!(
            s.update_secret(&k, "u1", &sec.id, &refused[1].0).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            granted(s, &k, "u1", "prof_a").await,
            pairs(&[("OTHER", "two"), ("TOKEN", "one")])
        );

        let renamed = s
            .update_secret(
                &k,
                "u1",
                &sec.id,
                &SecretUpdate {
                    name: Some("RENAMED".into()),
                    value: Some(Zeroizing::new("three".into())),
                    ..SecretUpdate::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (renamed.name.as_str(), renamed.scope),
            ("RENAMED", Scope::All)
        );
        assert_eq!(
            granted(s, &k, "u1", "prof_a").await,
            pairs(&[("OTHER", "two"), ("RENAMED", "three")]),
            "{}",
            b.name
        );
        for (user, id) in [("u2", sec.id.as_str()), ("u1", "sec_missing")] {
            let err = s
                .update_secret(&k, user, id, &update(|u| u.scope = Some(Scope::All)))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        }
        assert_eq!(s.secret("u1", &other.id).await.unwrap(), Some(other));
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn removing_a_profile_strips_it_from_secrets_and_a_moved_value_does_not_open() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_a", "a").await;
        profile(s, "u1", "prof_b", "b").await;
        let only_a = s
            .add_secret(
                &k,
                &new_secret("u1", "ONLY_A", "1", Scope::Agents, &["prof_a"]),
            )
            .await
            .unwrap();
        let both = s
            .add_secret(
                &k,
                &new_secret("u1", "BOTH", "2", Scope::Agents, &["prof_a", "prof_b"]),
            )
            .await
            .unwrap();
        let bank = s
            .add_integration(
                &k,
                &scoped("u1", IntegrationType::Teller, &["prof_a"]),
                &teller("enr_a", "PNC"),
            )
            .await
            .unwrap();
        assert_eq!(
            s.remove_profile("u1", "prof_a").await.unwrap(),
            1,
            "{}",
            b.name
        );
        let ids = |id: &str| {
            let id = id.to_string();
            async move { s.secret("u1", &id).await.unwrap().unwrap().profile_ids }
        };
        assert_eq!(ids(&only_a.id).await, Vec::<String>::new(), "{}", b.name);
        assert_eq!(ids(&both.id).await, strings(&["prof_b"]));
        assert_eq!(
            s.integration(&bank.id).await.unwrap().unwrap().profile_ids,
            Vec::<String>::new()
        );
        assert_eq!(
            granted(s, &k, "u1", "prof_b").await,
            pairs(&[("BOTH", "2")])
        );
        assert_eq!(granted(s, &k, "u1", "prof_a").await, vec![]);

        // A ciphertext copied into another row is refused, naming that row.
        exec(
            &b.url,
            &format!(
                "UPDATE user_secrets SET encrypted_value = (SELECT encrypted_value FROM user_secrets WHERE id = '{}') WHERE id = '{}'",
                only_a.id, both.id
            ),
        )
        .await;
        let err = s.granted_secrets(&k, "u1", "prof_b").await.unwrap_err();
        assert!(
            matches!(err, StoreError::Open(OpenError::Rejected { ref id }) if *id == both.id),
            "{}: {err}",
            b.name
        );
        assert!(
            err.to_string().starts_with(&format!("secret {}", both.id)),
            "{err}"
        );
    }
    cleanup(backends).await;
}

fn change(f: impl FnOnce(&mut IntegrationUpdate)) -> IntegrationUpdate {
    let mut u = IntegrationUpdate::default();
    f(&mut u);
    u
}

fn config_changes(json: serde_json::Value) -> Option<serde_json::Map<String, serde_json::Value>> {
    Some(json.as_object().unwrap().clone())
}

#[tokio::test]
async fn update_integration_applies_each_field_and_merges_the_scope() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_a", "a").await;
        profile(s, "u1", "prof_b", "b").await;
        profile(s, "u2", "prof_x", "x").await;
        let first = s
            .add_integration(
                &k,
                &NewIntegration {
                    is_default: true,
                    ..new("u1", IntegrationType::Telegram)
                },
                &bot(1),
            )
            .await
            .unwrap();
        let bot2 = s
            .add_integration(&k, &new("u1", IntegrationType::Telegram), &bot(2))
            .await
            .unwrap();
        let bank = s
            .add_integration(
                &k,
                &new("u1", IntegrationType::Teller),
                &teller("enr_1", "PNC"),
            )
            .await
            .unwrap();
        let up = |id: &str, u: IntegrationUpdate| {
            let (k, id) = (&k, id.to_string());
            async move { s.update_integration(k, "u1", &id, &u).await }
        };
        let stored = |id: &str| {
            let id = id.to_string();
            async move { s.integration(&id).await.unwrap().unwrap() }
        };

        let off = up(&bot2.id, change(|u| u.enabled = Some(false)))
            .await
            .unwrap();
        assert!(!off.enabled, "{}", b.name);
        assert_eq!(stored(&bot2.id).await, off);
        let labelled = up(&bot2.id, change(|u| u.label = Some("  Ops bot ".into())))
            .await
            .unwrap();
        assert_eq!(labelled.label, "Ops bot");
        assert!(matches!(
            up(&bot2.id, change(|u| u.label = Some(" ".into()))).await,
            Err(StoreError::Invalid(_))
        ));

        // Ids alone switch `all` to `agents`; scope alone keeps the ids.
        let scoped = up(
            &bot2.id,
            change(|u| u.profile_ids = Some(strings(&["prof_a"]))),
        )
        .await
        .unwrap();
        assert_eq!(
            (scoped.scope, scoped.profile_ids.clone()),
            (Scope::Agents, strings(&["prof_a"])),
            "{}",
            b.name
        );
        let kept = up(&bot2.id, change(|u| u.scope = Some(Scope::Agents)))
            .await
            .unwrap();
        assert_eq!(kept.profile_ids, strings(&["prof_a"]));
        let all = up(&bot2.id, change(|u| u.scope = Some(Scope::All)))
            .await
            .unwrap();
        assert_eq!((all.scope, all.profile_ids.len()), (Scope::All, 0));
        assert!(matches!(
            up(&bot2.id, change(|u| u.scope = Some(Scope::Agents))).await,
            Err(StoreError::Scope(ScopeError::NoProfiles))
        ));
        let err = up(
            &bot2.id,
            change(|u| u.profile_ids = Some(strings(&["prof_a", "prof_x"]))),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, StoreError::Scope(ScopeError::ProfileNotFound(ref id)) if id == "prof_x"),
            "{}: {err}",
            b.name
        );

        // Binding: telegram only, to a profile of the user, kept in scope.
        let bound = up(
            &bot2.id,
            change(|u| u.bound_profile_id = Some(Some("prof_b".into()))),
        )
        .await
        .unwrap();
        assert_eq!(bound.bound_profile_id.as_deref(), Some("prof_b"));
        let err = up(
            &bot2.id,
            change(|u| u.profile_ids = Some(strings(&["prof_a"]))),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid(ref m) if m.contains("bound to profile 'prof_b'")),
            "{err}"
        );
        let err = up(
            &bot2.id,
            change(|u| u.bound_profile_id = Some(Some("prof_x".into()))),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, StoreError::Scope(ScopeError::ProfileNotFound(ref id)) if id == "prof_x"),
            "{err}"
        );
        let err = up(
            &bank.id,
            change(|u| u.bound_profile_id = Some(Some("prof_a".into()))),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        let unbound = up(&bot2.id, change(|u| u.bound_profile_id = Some(None)))
            .await
            .unwrap();
        assert_eq!(unbound.bound_profile_id, None);
        assert_eq!(stored(&bot2.id).await, unbound);

        // Default: moves from the other bot; channels only; false clears it.
        let default = up(&bot2.id, change(|u| u.is_default = Some(true)))
            .await
            .unwrap();
        assert!(default.is_default);
        assert!(!stored(&first.id).await.is_default, "{}", b.name);
        let err = up(&bank.id, change(|u| u.is_default = Some(true)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid(ref m) if m.contains("cannot be the default")),
            "{err}"
        );
        let cleared = up(&bot2.id, change(|u| u.is_default = Some(false)))
            .await
            .unwrap();
        assert!(!cleared.is_default);
        assert!(!stored(&first.id).await.is_default);

        // Another user's row is as missing as a missing one.
        for (user, id) in [("u2", bot2.id.as_str()), ("u1", "int_missing")] {
            let err = s
                .update_integration(&k, user, id, &change(|u| u.enabled = Some(true)))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        }
        assert_eq!(stored(&bot2.id).await, cleared);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn update_integration_reseals_a_merged_config_and_guards_the_external_id() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_a", "a").await;
        let tg = s
            .add_integration(
                &k,
                &NewIntegration {
                    is_default: true,
                    ..new("u1", IntegrationType::Telegram)
                },
                &bot(7),
            )
            .await
            .unwrap();
        let bank = s
            .add_integration(
                &k,
                &new("u1", IntegrationType::Teller),
                &teller("enr_1", "PNC"),
            )
            .await
            .unwrap();
        let field = |i: &Integration, name: &str| {
            k.open_config(i)
                .unwrap()
                .get(i.kind, name)
                .unwrap()
                .map(|v| v.to_string())
        };

        let merged = s
            .update_integration(
                &k,
                "u1",
                &tg.id,
                &change(|u| {
                    u.config = config_changes(
                        serde_json::json!({"bot_token": "7:CANARY", "bot_username": "bot7b"}),
                    )
                }),
            )
            .await
            .unwrap();
        assert_ne!(merged.sealed, tg.sealed, "{}", b.name);
        assert!(!format!("{merged:?}").contains("CANARY"));
        let stored = s.integration(&tg.id).await.unwrap().unwrap();
        assert_eq!(stored, merged);
        assert_eq!(field(&stored, "bot_token").as_deref(), Some("7:CANARY"));
        assert_eq!(field(&stored, "bot_username").as_deref(), Some("bot7b"));
        assert_eq!(stored.external_id.as_deref(), Some("7"));
        // A pairing is the server's to write, set or cleared.
        for pairing in [
            serde_json::json!({"owner_chat_id": 42}),
            serde_json::json!({"owner_chat_id": null}),
        ] {
            let refused = s
                .update_integration(
                    &k,
                    "u1",
                    &tg.id,
                    &change(|u| u.config = config_changes(pairing.clone())),
                )
                .await
                .unwrap_err()
                .to_string();
            assert!(refused.contains("'owner_chat_id'"), "{}: {refused}", b.name);
        }
        assert_eq!(
            field(
                &s.integration(&tg.id).await.unwrap().unwrap(),
                "owner_chat_id"
            ),
            None
        );

        // Refused: another bot or enrollment, a removed required field, an
        // unknown field; with other fields beside them, nothing is written.
        let refusals: [(&Integration, serde_json::Value, &str); 5] = [
            (&tg, serde_json::json!({"bot_user_id": 8}), "'bot_user_id'"),
            (
                &bank,
                serde_json::json!({"enrollment_id": "enr_2"}),
                "'enrollment_id'",
            ),
            // A Teller token proves its enrollment only through Teller Connect.
            (
                &bank,
                serde_json::json!({"access_token": "test_token_CANARY"}),
                "through Teller Connect",
            ),
            (&tg, serde_json::json!({"bot_token": null}), "'bot_token'"),
            (
                &tg,
                serde_json::json!({"SECRET_NAME": "SECRETVALUE"}),
                "not one of",
            ),
        ];
        for (row, json, needle) in refusals {
            let before = s.integration(&row.id).await.unwrap().unwrap();
            let err = s
                .update_integration(
                    &k,
                    "u1",
                    &row.id,
                    &IntegrationUpdate {
                        config: config_changes(json),
                        enabled: Some(false),
                        label: Some("changed".into()),
                        is_default: Some(false),
                        profile_ids: Some(strings(&["prof_a"])),
                        ..IntegrationUpdate::default()
                    },
                )
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, StoreError::Invalid(_)), "{}: {text}", b.name);
            assert!(text.contains(needle), "{text}");
            assert!(
                !text.contains("SECRET") && !text.contains("CANARY"),
                "{text}"
            );
            assert_eq!(s.integration(&row.id).await.unwrap().unwrap(), before);
        }
        // A refusal after the default was cleared in the same change keeps it.
        let err = s
            .update_integration(
                &k,
                "u1",
                &bank.id,
                &IntegrationUpdate {
                    is_default: Some(true),
                    ..IntegrationUpdate::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert!(s.integration(&tg.id).await.unwrap().unwrap().is_default);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn put_profile_creates_then_updates_and_refuses_what_is_not_the_users() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let put = |id: &str, user: &str, slug: &str, is_default: bool| NewProfile {
            id: id.into(),
            user_id: user.into(),
            slug: slug.into(),
            name: None,
            is_default,
        };
        let (created, is_new) = s
            .put_profile(&put("prof_a", "u1", "a", true))
            .await
            .unwrap();
        assert!(is_new, "{}", b.name);
        assert_eq!((created.name.as_str(), created.is_default), ("a", true));
        let (updated, is_new) = s
            .put_profile(&NewProfile {
                name: Some("Finance".into()),
                ..put("prof_a", "u1", "fin", false)
            })
            .await
            .unwrap();
        assert!(!is_new);
        assert_eq!(
            (
                updated.slug.as_str(),
                updated.name.as_str(),
                updated.is_default
            ),
            ("fin", "Finance", false)
        );
        assert_eq!(updated.created_at, created.created_at);
        assert_eq!(
            s.profiles("u1").await.unwrap(),
            vec![updated.clone()],
            "{}",
            b.name
        );

        let (c, _) = s
            .put_profile(&put("prof_c", "u1", "c", true))
            .await
            .unwrap();
        s.put_profile(&put("prof_a", "u1", "fin", true))
            .await
            .unwrap();
        let defaults: Vec<String> = s
            .profiles("u1")
            .await
            .unwrap()
            .into_iter()
            .filter(|p| p.is_default)
            .map(|p| p.id)
            .collect();
        assert_eq!(defaults, vec!["prof_a"], "{}", b.name);

        for refused in [
            put("prof_a", "u2", "z", false),
            put("prof_c", "u1", "fin", false),
        ] {
            let err = s.put_profile(&refused).await.unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{}: {err}", b.name);
        }
        assert_eq!(s.profile("prof_c").await.unwrap().unwrap().slug, c.slug);
        assert_eq!(s.profiles("u2").await.unwrap(), vec![]);
        assert!(matches!(
            s.put_profile(&put("prof d", "u1", "d", false)).await,
            Err(StoreError::Invalid(_))
        ));
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn telegram_pairing_threads_and_the_inbound_outbox_work_the_same_on_both_backends() {
    use store::{NewInbound, Origin, Purpose};
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let entry = Keyring::generate_entry();
        let k = Keyring::parse(&entry).unwrap();
        profile(s, "u1", "prof_vzfin", "vzfin").await;
        let bot = config(
            IntegrationType::Telegram,
            r#"{"bot_token":"7:AAsecret","bot_user_id":7,"bot_username":"bot7"}"#,
        );
        let row = s
            .add_integration(&k, &new("u1", IntegrationType::Telegram), &bot)
            .await
            .unwrap();
        let mut platform = config(
            IntegrationType::Telegram,
            r#"{"bot_token":"9:AAplatform","bot_user_id":9,"bot_username":"shared","owner":"platform"}"#,
        );
        platform.external_id = Some("9:u1".into());
        let shared = s
            .add_integration(&k, &new("u1", IntegrationType::Telegram), &platform)
            .await
            .unwrap();
        assert_eq!(
            s.telegram_own_bot("7").await.unwrap().map(|r| r.id),
            Some(row.id.clone()),
            "{}",
            b.name
        );
        assert!(s.telegram_own_bot("9").await.unwrap().is_none());
        assert!(s.telegram_bot_in_use("7").await.unwrap());
        assert!(s.telegram_bot_in_use("9").await.unwrap());
        assert!(!s.telegram_bot_in_use("8").await.unwrap());

        // A link code spends once, and only for its own bot.
        let code = s
            .issue_connect_key(
                "u1",
                Purpose::TelegramLink,
                Some(&row.id),
                std::time::Duration::from_secs(60),
            )
            .await
            .unwrap();
        let spent = |bot: &'static str| {
            let code = code.clone();
            async move { s.spend_link_code(&code, bot).await.unwrap().map(|r| r.id) }
        };
        assert_eq!(spent("9").await, None, "another bot's code");
        assert_eq!(spent("7").await, Some(row.id.clone()));
        assert_eq!(spent("7").await, None, "{}", b.name);
        // A paired chat is found by its keyed hash, for its own bot only;
        // the clear column does not hold the chat id.
        assert!(s.telegram_chat(&k, "7", 4242).await.unwrap().is_none());
        assert!(s.link_telegram_chat(&k, &row, 4242).await.unwrap());
        assert_eq!(
            s.telegram_chat(&k, "7", 4242).await.unwrap().map(|r| r.id),
            Some(row.id.clone()),
            "{}",
            b.name
        );
        assert!(s.telegram_chat(&k, "9", 4242).await.unwrap().is_none());
        assert!(s.telegram_chat(&k, "7", 4243).await.unwrap().is_none());
        assert_eq!(
            count(
                &b.url,
                "SELECT count(*) FROM user_integrations WHERE chat_hash LIKE '%4242%'"
            )
            .await,
            0
        );
        let shared_paired = s.integration(&shared.id).await.unwrap().unwrap();
        assert!(
            s.link_telegram_chat(&k, &shared_paired, 5151)
                .await
                .unwrap()
        );
        assert_eq!(
            s.telegram_chat(&k, "9", 5151).await.unwrap().map(|r| r.id),
            Some(shared.id.clone())
        );
        // Under a new first key, the server's start re-hashes the pairings.
        let rotated = Keyring::parse(&format!(
            "{},{}",
            Keyring::generate_entry().as_str(),
            entry.as_str()
        ))
        .unwrap();
        assert!(
            s.telegram_chat(&rotated, "7", 4242)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(s.rehash_chats(&rotated).await.unwrap(), 2, "{}", b.name);
        assert_eq!(s.rehash_chats(&rotated).await.unwrap(), 0);
        assert_eq!(
            s.telegram_chat(&rotated, "7", 4242)
                .await
                .unwrap()
                .map(|r| r.id),
            Some(row.id.clone())
        );
        assert!(
            s.telegram_chat(&rotated, "7", 5151)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !s.link_telegram_chat(&k, &row, 5151).await.unwrap(),
            "a stale row does not pair"
        );
        let paired = s.integration(&row.id).await.unwrap().unwrap();
        let chat = k
            .open_config(&paired)
            .unwrap()
            .get(IntegrationType::Telegram, "owner_chat_id")
            .unwrap();
        assert_eq!(chat.as_deref().map(|c| c.as_str()), Some("4242"));

        // Threads: claimed once, dismissed once, the newest open one by a reply.
        let sidecar = SidecarStore::open(&b.url, 1).unwrap();
        for (n, label) in [(1, "Taxes"), (2, "Rent"), (3, "Trips")] {
            let thread = ThreadRow {
                notification_id: format!("ntf_{n}"),
                integration_id: row.id.clone(),
                chat_id: "4242".into(),
                anchor: ThreadAnchor::Telegram(100 + n),
                session_id: format!("sess_{n}"),
                profile_id: if n == 3 { "prof_coding" } else { "prof_vzfin" }.into(),
                label: Some(label.into()),
            };
            sidecar.add_thread(&thread).await.unwrap();
        }
        assert!(
            s.claim_thread(&row.id, "ntf_1", "prof_coding")
                .await
                .unwrap()
                .is_none(),
            "another profile's claim"
        );
        assert_eq!(
            s.thread_profile(&row.id, "ntf_1").await.unwrap().as_deref(),
            Some("prof_vzfin")
        );
        let claimed = s
            .claim_thread(&row.id, "ntf_1", "prof_vzfin")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (claimed.session_id.as_str(), claimed.message_id),
            ("sess_1", 101)
        );
        assert!(
            s.claim_thread(&row.id, "ntf_1", "prof_vzfin")
                .await
                .unwrap()
                .is_none(),
            "{}",
            b.name
        );
        assert!(s.dismiss_thread(&row.id, "ntf_2").await.unwrap().is_some());
        assert!(
            s.claim_thread(&row.id, "ntf_2", "prof_vzfin")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            s.claim_thread(&shared.id, "ntf_3", "prof_coding")
                .await
                .unwrap()
                .is_none(),
            "another bot's row"
        );

        // The outbox pages by its cursor, per user; an update is written
        // once; a reply claims the newest open thread of its own profile.
        let inbound = |user: &str, update_id: i64, text: &str, continue_thread: bool| NewInbound {
            user_id: user.into(),
            profile_id: "prof_vzfin".into(),
            integration_id: row.id.clone(),
            chat_id: "4242".into(),
            text: text.into(),
            command: None,
            origin: Origin::Telegram {
                bot_id: "7".into(),
                update_id,
                continue_thread,
            },
        };
        for (user, update, text) in [("u1", 1, "one"), ("u2", 2, "theirs"), ("u1", 3, "two")] {
            assert!(
                s.add_inbound(&inbound(user, update, text, false))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        // ntf_3 is prof_coding's: a prof_vzfin reply does not join it.
        let reply = s
            .add_inbound(&inbound("u1", 4, "three", true))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (reply.text.as_str(), reply.claimed_session_id),
            ("three", None),
            "{}",
            b.name
        );
        assert!(
            s.add_inbound(&inbound("u1", 4, "three again", true))
                .await
                .unwrap()
                .is_none(),
            "{}: a redelivered update",
            b.name
        );
        let open_for_vzfin = ThreadRow {
            notification_id: "ntf_4".into(),
            integration_id: row.id.clone(),
            chat_id: "4242".into(),
            anchor: ThreadAnchor::Telegram(104),
            session_id: "sess_4".into(),
            profile_id: "prof_vzfin".into(),
            label: Some("Bills".into()),
        };
        sidecar.add_thread(&open_for_vzfin).await.unwrap();
        assert!(
            s.add_inbound(&inbound("u1", 3, "two again", true))
                .await
                .unwrap()
                .is_none(),
            "a redelivered reply claims nothing"
        );
        let joined = s
            .add_inbound(&inbound("u1", 5, "paid", true))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (joined.text.as_str(), joined.claimed_session_id.as_deref()),
            ("[Switched to Bills thread] paid", Some("sess_4")),
            "{}",
            b.name
        );
        assert_eq!(
            count(&b.url, "SELECT count(*) FROM telegram_threads WHERE notification_id = 'ntf_3' AND claimed_at IS NULL").await,
            1
        );
        let first = s.inbound("u1", 0, 2).await.unwrap();
        assert_eq!(
            first.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["one", "two"],
            "{}",
            b.name
        );
        let rest = s.inbound("u1", first[1].seq, 10).await.unwrap();
        assert_eq!(
            rest.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["three", "[Switched to Bills thread] paid"]
        );

        // Deleting the bot takes its threads and link codes along.
        s.issue_connect_key(
            "u1",
            Purpose::TelegramLink,
            Some(&row.id),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
        s.delete_integration(&row.id).await.unwrap();
        assert_eq!(
            count(&b.url, "SELECT count(*) FROM telegram_threads").await,
            0,
            "{}",
            b.name
        );
        assert_eq!(
            count(
                &b.url,
                "SELECT count(*) FROM connect_keys WHERE purpose = 'telegram_link'"
            )
            .await,
            0
        );
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_provider_verdict_does_not_undo_a_reconnect_on_both_backends() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        let (row, _) = s
            .connect_integration(&k, "u1", IntegrationType::Teller, &teller("enr_pnc", "PNC"))
            .await
            .unwrap();
        let sidecar = SidecarStore::open(&b.url, 1).unwrap();
        let status = async || s.integration(&row.id).await.unwrap().unwrap().status;

        // A sidecar read `row`, the provider refused its token; meanwhile the
        // user connected the bank again: the verdict on the old grant is dropped.
        let before_failure = std::time::SystemTime::now();
        let (again, created) = s
            .connect_integration(&k, "u1", IntegrationType::Teller, &teller("enr_pnc", "PNC"))
            .await
            .unwrap();
        assert!(!created);
        let marked = sidecar
            .mark_needs_reauth(
                &row.id,
                &row.sealed,
                ReauthReason::ProviderRefused,
                "refused",
            )
            .await
            .unwrap();
        assert!(!marked, "{}", b.name);
        assert_eq!(status().await, Status::Active, "{}", b.name);
        // Teller's webhook of an event from before the reconnect: dropped too.
        let marked = s
            .mark_enrollment_disconnected("enr_pnc", before_failure)
            .await
            .unwrap();
        assert!(!marked, "{}", b.name);
        assert_eq!(status().await, Status::Active, "{}", b.name);

        // A verdict on the grant the row holds lands; so does a later event.
        assert!(
            sidecar
                .mark_needs_reauth(
                    &row.id,
                    &again.sealed,
                    ReauthReason::ProviderRefused,
                    "refused"
                )
                .await
                .unwrap(),
            "{}",
            b.name
        );
        assert_eq!(status().await, Status::NeedsReauth);
        s.connect_integration(&k, "u1", IntegrationType::Teller, &teller("enr_pnc", "PNC"))
            .await
            .unwrap();
        assert_eq!(status().await, Status::Active);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        assert!(
            s.mark_enrollment_disconnected("enr_pnc", later)
                .await
                .unwrap()
        );
        assert_eq!(status().await, Status::NeedsReauth, "{}", b.name);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn an_oauth_state_spends_once_and_only_for_the_browser_that_holds_its_cookie() {
    use store::{Purpose, SpentState};
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        let ttl = std::time::Duration::from_secs(60);
        let issue = async || {
            s.issue_oauth_state(
                &k,
                "u1",
                Purpose::GmailState,
                "cookie-1",
                Some("VERIFIER_CANARY"),
                ttl,
            )
            .await
            .unwrap()
        };

        // Sealed, and the cookie kept only as its hash.
        let state = issue().await;
        assert_eq!(
            count(&b.url, "SELECT count(*) FROM connect_keys WHERE verifier LIKE '%VERIFIER_CANARY%' OR binding_sha256 = 'cookie-1'").await,
            0,
            "{}",
            b.name
        );
        // Not spendable as a plain connect key, nor for another purpose.
        assert!(
            s.spend_connect_key(&state, Purpose::GmailState)
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            s.spend_oauth_state(&k, &state, Purpose::SlackState, Some("cookie-1"))
                .await
                .unwrap(),
            SpentState::Unknown
        ));
        let spent = s
            .spend_oauth_state(&k, &state, Purpose::GmailState, Some("cookie-1"))
            .await
            .unwrap();
        let SpentState::Spent { user_id, verifier } = spent else {
            panic!("{}: {spent:?}", b.name);
        };
        assert_eq!(
            (user_id.as_str(), verifier.as_deref().map(String::as_str)),
            ("u1", Some("VERIFIER_CANARY"))
        );
        assert!(matches!(
            s.spend_oauth_state(&k, &state, Purpose::GmailState, Some("cookie-1"))
                .await
                .unwrap(),
            SpentState::Unknown
        ));

        // Another browser (another cookie, or none) is refused, and the state is spent.
        for cookie in [Some("cookie-2"), None] {
            let state = issue().await;
            assert!(
                matches!(
                    s.spend_oauth_state(&k, &state, Purpose::GmailState, cookie)
                        .await
                        .unwrap(),
                    SpentState::OtherBrowser
                ),
                "{}",
                b.name
            );
            assert!(matches!(
                s.spend_oauth_state(&k, &state, Purpose::GmailState, Some("cookie-1"))
                    .await
                    .unwrap(),
                SpentState::Unknown
            ));
        }
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_slack_user_is_found_by_team_and_user_and_a_reply_joins_only_its_profiles_thread() {
    use store::{NewInbound, Origin};
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        profile(s, "u1", "prof_vzfin", "vzfin").await;
        profile(s, "u1", "prof_coding", "coding").await;
        let slack = |team: &str, user: &str| {
            config(
                IntegrationType::Slack,
                &format!(
                    r#"{{"bot_token":"xoxb-1","team_id":"{team}","authed_user_id":"{user}"}}"#
                ),
            )
        };
        let row = s
            .add_integration(&k, &new("u1", IntegrationType::Slack), &slack("T1", "U1"))
            .await
            .unwrap();
        let found =
            async |team: &str, user: &str| s.slack_user(team, user).await.unwrap().map(|r| r.id);
        assert_eq!(found("T1", "U1").await, Some(row.id.clone()), "{}", b.name);
        assert_eq!(found("T1", "U2").await, None);
        assert_eq!(found("T2", "U1").await, None);
        // A config change cannot move it; connecting again in place does.
        for field in ["authed_user_id", "team_id"] {
            let mut changes = serde_json::Map::new();
            changes.insert(field.into(), "X2".into());
            let update = IntegrationUpdate {
                config: Some(changes),
                ..IntegrationUpdate::default()
            };
            let err = s
                .update_integration(&k, "u1", &row.id, &update)
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Invalid(ref m) if m.contains(field) && m.contains("connecting Slack again")),
                "{}: {err}",
                b.name
            );
        }
        assert_eq!(found("T1", "U1").await, Some(row.id.clone()));
        let (again, created) = s
            .connect_integration(&k, "u1", IntegrationType::Slack, &slack("T1", "U2"))
            .await
            .unwrap();
        assert_eq!((again.id.as_str(), created), (row.id.as_str(), false));
        assert_eq!(found("T1", "U1").await, None, "{}", b.name);
        assert_eq!(found("T1", "U2").await, Some(row.id.clone()));
        s.connect_integration(&k, "u1", IntegrationType::Slack, &slack("T1", "U1"))
            .await
            .unwrap();
        assert_eq!(found("T1", "U1").await, Some(row.id.clone()), "{}", b.name);

        // A reply in a notification's thread carries its session when it
        // is routed to the thread's profile, every time; an event is
        // written once.
        let sidecar = SidecarStore::open(&b.url, 1).unwrap();
        let parent = "1700000000.000001";
        sidecar
            .add_thread(&ThreadRow {
                notification_id: "ntf_1".into(),
                integration_id: row.id.clone(),
                chat_id: "D1".into(),
                anchor: ThreadAnchor::Slack(parent.into()),
                session_id: "sess_1".into(),
                profile_id: "prof_vzfin".into(),
                label: Some("Taxes".into()),
            })
            .await
            .unwrap();
        let message = |event: &str, profile: &str, thread: Option<&str>| NewInbound {
            user_id: "u1".into(),
            profile_id: profile.into(),
            integration_id: row.id.clone(),
            chat_id: "D1".into(),
            text: format!("text of {event}"),
            command: None,
            origin: Origin::Slack {
                event_id: event.into(),
                ts: format!("1700000100.{:0>6}", event.len()),
                thread_ts: thread.map(Into::into),
            },
        };
        let add = async |event: &str, profile: &str, thread: Option<&str>| {
            s.add_inbound(&message(event, profile, thread))
                .await
                .unwrap()
        };
        let joined = add("Ev1", "prof_vzfin", Some(parent)).await.unwrap();
        assert_eq!(
            (
                joined.claimed_session_id.as_deref(),
                joined.text.as_str(),
                joined.chat_id.as_str(),
                joined.channel.as_deref(),
                joined.thread_ts.as_deref()
            ),
            (
                Some("sess_1"),
                "text of Ev1",
                "D1",
                Some("D1"),
                Some(parent)
            ),
            "{}",
            b.name
        );
        assert!(joined.ts.is_some());
        assert!(
            add("Ev1", "prof_vzfin", Some(parent)).await.is_none(),
            "{}: redelivered",
            b.name
        );
        let again = add("Ev2", "prof_vzfin", Some(parent)).await.unwrap();
        assert_eq!(again.claimed_session_id.as_deref(), Some("sess_1"));
        for (event, profile, thread) in [
            ("Ev3", "prof_coding", Some(parent)),
            ("Ev4", "prof_vzfin", None),
            ("Ev5", "prof_vzfin", Some("1700000000.000002")),
        ] {
            let written = add(event, profile, thread).await.unwrap();
            assert_eq!(written.claimed_session_id, None, "{}: {event}", b.name);
        }
        // A thread older than the window is not joined.
        exec(
            &b.url,
            "UPDATE slack_threads SET sent_at = '2020-01-01T00:00:00.000000Z'",
        )
        .await;
        let late = add("Ev6", "prof_vzfin", Some(parent)).await.unwrap();
        assert_eq!(late.claimed_session_id, None);
        let page = s.inbound("u1", 0, 100).await.unwrap();
        assert_eq!(page.len(), 6, "{}", b.name);
        assert!(page.iter().all(|m| m.channel.as_deref() == Some("D1")));

        s.delete_integration(&row.id).await.unwrap();
        assert_eq!(
            count(&b.url, "SELECT count(*) FROM slack_threads").await,
            0,
            "{}",
            b.name
        );
    }
    cleanup(backends).await;
}

/// A config of each type with an identity, another config of the same type
/// with another identity, and the fields that make it.
fn identities() -> [(
    IntegrationType,
    ValidConfig,
    ValidConfig,
    &'static [&'static str],
); 4] {
    let slack = |user: &str| {
        config(
            IntegrationType::Slack,
            &format!(r#"{{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"{user}"}}"#),
        )
    };
    [
        (
            IntegrationType::Slack,
            slack("U1"),
            slack("U2"),
            &["team_id", "authed_user_id"],
        ),
        (
            IntegrationType::Gmail,
            mailbox("Owner@Gmail.com"),
            mailbox("other@gmail.com"),
            &["email"],
        ),
        (
            IntegrationType::Telegram,
            bot(77),
            bot(78),
            &["bot_user_id"],
        ),
        (
            IntegrationType::Teller,
            teller("enr_77", "PNC"),
            teller("enr_78", "PNC"),
            &["enrollment_id"],
        ),
    ]
}

/// A row of `user` brought in by an import, back-dated.
fn imported(id: &str, user: &str, kind: IntegrationType, config: ValidConfig) -> ImportRow {
    ImportRow::Integration(Box::new(ImportedIntegration {
        id: id.into(),
        user_id: user.into(),
        kind,
        label: "imported".into(),
        enabled: true,
        is_default: false,
        scope: Scope::All,
        profile_ids: vec![],
        bound_profile_id: None,
        created_at: "2001-01-01T00:00:00.000000Z".into(),
        updated_at: "2001-01-01T00:00:00.000000Z".into(),
        config,
    }))
}

#[tokio::test]
async fn an_external_identity_belongs_to_one_user_and_only_its_provider_flow_sets_it() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        for (kind, held, other, fields) in identities() {
            let case = format!("{}: {kind}", b.name);
            let identity = held.external_id.clone().unwrap();
            let (owned, created) = s.connect_integration(&k, "u1", kind, &held).await.unwrap();
            assert!(created, "{case}");
            // The same user connecting it again: in place.
            let (again, created) = s.connect_integration(&k, "u1", kind, &held).await.unwrap();
            assert_eq!(
                (again.id.as_str(), created),
                (owned.id.as_str(), false),
                "{case}"
            );
            // Another user cannot connect it, add it, or import it (even
            // back-dated), told so without a word of whose it is.
            let mine = s
                .add_integration(&k, &new("u2", kind), &other)
                .await
                .unwrap();
            let refusals = [
                s.connect_integration(&k, "u2", kind, &held)
                    .await
                    .map(|_| ()),
                s.add_integration(&k, &new("u3", kind), &held)
                    .await
                    .map(|_| ()),
            ];
            for refused in refusals {
                let err = refused.unwrap_err();
                let text = err.to_string();
                assert!(matches!(err, StoreError::Conflict(_)), "{case}: {text}");
                assert!(text.contains("already connected"), "{case}: {text}");
                assert!(
                    !text.contains("u1") && !text.contains(&owned.id),
                    "{case}: {text}"
                );
            }
            let outcomes = s
                .import_user(
                    &k,
                    "u3",
                    &[&imported("int_hostile", "u3", kind, held)],
                    false,
                )
                .await
                .unwrap();
            let store::ImportOutcome::Skipped(why) = &outcomes[0] else {
                panic!("{case}: {outcomes:?}");
            };
            assert!(why.contains("already connected"), "{case}: {why}");
            assert!(
                !why.contains("u1") && !why.contains(&owned.id),
                "{case}: {why}"
            );
            assert!(
                s.integration("int_hostile").await.unwrap().is_none(),
                "{case}"
            );
            // Nor patch it into a row of theirs: the fields are server-managed.
            for name in fields {
                let value = k
                    .open_config(&owned)
                    .unwrap()
                    .get(kind, name)
                    .unwrap()
                    .unwrap();
                let mut changes = serde_json::Map::new();
                changes.insert(name.to_string(), value.as_str().into());
                let err = s
                    .update_integration(&k, "u2", &mine.id, &change(|u| u.config = Some(changes)))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, StoreError::Invalid(_)),
                    "{case}: {name}: {err}"
                );
                assert!(
                    err.to_string().contains(&format!("'{name}'")),
                    "{case}: {err}"
                );
            }
            let theirs = s.integration(&mine.id).await.unwrap().unwrap();
            assert_eq!(theirs.external_id, other.external_id, "{case}");
            // And the database itself holds one row per identity.
            let sql = format!(
                "UPDATE user_integrations SET external_id = '{identity}' WHERE id = '{}'",
                mine.id
            );
            let err = try_exec(&b.url, &sql).await.unwrap_err();
            assert!(
                err.as_database_error()
                    .is_some_and(|e| e.is_unique_violation()),
                "{case}: {err}"
            );
        }
        // Two users connecting one identity at the same moment: one row.
        for n in 0..8 {
            let slack = config(
                IntegrationType::Slack,
                &format!(r#"{{"bot_token":"xoxb-1","team_id":"T9","authed_user_id":"U{n}"}}"#),
            );
            let (first, second) = (format!("ua{n}"), format!("uc{n}"));
            let (a, c) = tokio::join!(
                s.connect_integration(&k, &first, IntegrationType::Slack, &slack),
                s.connect_integration(&k, &second, IntegrationType::Slack, &slack),
            );
            assert_eq!(
                [a.is_ok(), c.is_ok()].iter().filter(|ok| **ok).count(),
                1,
                "{}",
                b.name
            );
            for lost in [a.err(), c.err()].into_iter().flatten() {
                assert!(
                    matches!(lost, StoreError::Conflict(_)),
                    "{}: {lost}",
                    b.name
                );
            }
            let held = count(
                &b.url,
                &format!("SELECT count(*) FROM user_integrations WHERE external_id = 'T9:U{n}'"),
            )
            .await;
            assert_eq!(held, 1, "{}", b.name);
        }
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn rows_from_before_identities_take_theirs_and_an_identity_two_rows_name_is_nobodys() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        let slack = |user: &str| {
            config(
                IntegrationType::Slack,
                &format!(r#"{{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"{user}"}}"#),
            )
        };
        // As a store from before: rows without their identity, two of them
        // (an attacker's older one, patched, and its victim's) naming one
        // Slack user, and one naming an address another row holds now.
        let attacker = s
            .add_integration(&k, &new("u_attacker", IntegrationType::Slack), &slack("U1"))
            .await
            .unwrap();
        exec(&b.url, "UPDATE user_integrations SET external_id = NULL").await;
        let victim = s
            .add_integration(&k, &new("u_victim", IntegrationType::Slack), &slack("U1"))
            .await
            .unwrap();
        let alone = s
            .add_integration(
                &k,
                &new("u3", IntegrationType::Gmail),
                &mailbox("u3@gmail.com"),
            )
            .await
            .unwrap();
        let late = s
            .add_integration(
                &k,
                &new("u4", IntegrationType::Gmail),
                &mailbox("X@gmail.com"),
            )
            .await
            .unwrap();
        exec(&b.url, "UPDATE user_integrations SET external_id = NULL").await;
        s.add_integration(
            &k,
            &new("u5", IntegrationType::Gmail),
            &mailbox("x@gmail.com"),
        )
        .await
        .unwrap();
        assert_eq!(s.slack_user("T1", "U1").await.unwrap(), None, "{}", b.name);

        let claims = s.claim_identities(&k).await.unwrap();
        assert_eq!((claims.claimed, claims.refused), (1, 3), "{}", b.name);
        assert_eq!(s.claim_identities(&k).await.unwrap(), Default::default());
        let row = async |id: &str| s.integration(id).await.unwrap().unwrap();
        assert_eq!(
            row(&alone.id).await.external_id.as_deref(),
            Some("u3@gmail.com")
        );
        for lost in [&attacker.id, &victim.id, &late.id] {
            let lost = row(lost).await;
            assert_eq!(
                (lost.external_id, lost.status),
                (None, Status::NeedsReauth),
                "{}",
                b.name
            );
        }
        // Neither Slack row routes the user's messages...
        assert_eq!(s.slack_user("T1", "U1").await.unwrap(), None, "{}", b.name);
        // ...until Slack's own flow proves whose it is.
        let (back, created) = s
            .connect_integration(&k, "u_victim", IntegrationType::Slack, &slack("U1"))
            .await
            .unwrap();
        assert_eq!(
            (back.id.as_str(), created, back.status),
            (victim.id.as_str(), false, Status::Active)
        );
        assert_eq!(
            s.slack_user("T1", "U1").await.unwrap().map(|r| r.id),
            Some(victim.id.clone()),
            "{}",
            b.name
        );
        let err = s
            .connect_integration(&k, "u_attacker", IntegrationType::Slack, &slack("U1"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{}: {err}", b.name);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_telegram_chat_two_rows_pair_is_routed_to_neither_and_is_not_imported_again() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = keyring();
        // Pairings of the platform's bot (9) by two users.
        let pairing = |user: &str| {
            let mut platform = bot(9);
            platform.external_id = Some(format!("9:{user}"));
            platform
        };
        let mut rows = Vec::new();
        for user in ["u1", "u2"] {
            let row = s
                .add_integration(&k, &new(user, IntegrationType::Telegram), &pairing(user))
                .await
                .unwrap();
            rows.push(row);
        }
        assert!(s.link_telegram_chat(&k, &rows[1], 4242).await.unwrap());
        let routed = async || s.telegram_chat(&k, "9", 4242).await.unwrap().map(|r| r.id);
        assert_eq!(routed().await, Some(rows[1].id.clone()), "{}", b.name);
        // An import pairing the same chat with the same bot is skipped...
        let paired = k
            .open_config(&s.integration(&rows[1].id).await.unwrap().unwrap())
            .unwrap()
            .with_fields(IntegrationType::Telegram, &[("owner", "platform".into())])
            .unwrap();
        let mut hostile = paired;
        hostile.external_id = Some("9:u3".into());
        let outcomes = s
            .import_user(
                &k,
                "u3",
                &[&imported(
                    "int_hostile",
                    "u3",
                    IntegrationType::Telegram,
                    hostile,
                )],
                false,
            )
            .await
            .unwrap();
        let store::ImportOutcome::Skipped(why) = &outcomes[0] else {
            panic!("{}: {outcomes:?}", b.name);
        };
        assert!(why.contains("paired with this bot already"), "{why}");
        assert!(!why.contains("u2") && !why.contains(&rows[1].id), "{why}");
        // ...and a chat two rows name (however it came about) goes to
        // neither, not to the older one.
        assert!(s.link_telegram_chat(&k, &rows[0], 4242).await.unwrap());
        assert_eq!(routed().await, None, "{}", b.name);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_user_past_max_profiles_per_user_is_refused_and_others_are_not() {
    let max = store::DEFAULT_MAX_PROFILES_PER_USER;
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        for n in 0..max {
            profile(s, "u1", &format!("prof_{n}"), &format!("p{n}")).await;
        }
        let one_more = NewProfile {
            id: "prof_more".into(),
            user_id: "u1".into(),
            slug: "more".into(),
            name: None,
            is_default: false,
        };
        for refused in [
            s.add_profile(&one_more).await.unwrap_err(),
            s.put_profile(&one_more).await.unwrap_err(),
        ] {
            let StoreError::Conflict(message) = refused else {
                panic!("{}: {refused}", b.name);
            };
            assert!(
                message.contains("MAX_PROFILES_PER_USER is 100"),
                "{}: {message}",
                b.name
            );
        }
        // One of them may still change, and another user add theirs.
        let renamed = NewProfile {
            id: "prof_0".into(),
            name: Some("Renamed".into()),
            slug: "p0".into(),
            ..one_more.clone()
        };
        assert!(!s.put_profile(&renamed).await.unwrap().1);
        profile(s, "u2", "prof_theirs", "theirs").await;
        s.remove_profile("u1", "prof_0").await.unwrap();
        s.add_profile(&one_more).await.unwrap();
        assert_eq!(s.profiles("u1").await.unwrap().len() as i64, max);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_revoked_or_expired_token_counts_no_call_and_reads_no_rows() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        profile(s, "u1", "prof_vzfin", "vzfin").await;
        let sidecar = SidecarStore::open(&b.url, 1).unwrap();
        let mint = |session: &'static str| async move {
            let ttl = std::time::Duration::from_secs(3600);
            s.mint_capability(
                "u1",
                "prof_vzfin",
                session,
                &["teller"],
                ttl,
                store::Minter::Cli,
            )
            .await
            .unwrap()
            .token
        };
        let (live, revoked, expired) = (
            mint("s_live").await,
            mint("s_rev").await,
            mint("s_exp").await,
        );
        s.revoke_session(Some("u1"), "s_rev").await.unwrap();
        exec(
            &b.url,
            "UPDATE capability_tokens SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE session_id = 's_exp'",
        )
        .await;
        let (calls, snapshot) = sidecar
            .count_call_with_snapshot(&live, 1, "u1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(calls, 1, "{}", b.name);
        assert_eq!(snapshot.profiles.len(), 1, "{}", b.name);
        for token in [&revoked, &expired] {
            let counted = sidecar.count_call_with_snapshot(token, 1, "u1").await;
            assert!(counted.unwrap().is_none(), "{}", b.name);
        }
        let sql = "SELECT COUNT(*) FROM capability_tokens WHERE session_id <> 's_live' AND calls_in_minute > 0";
        assert_eq!(count(&b.url, sql).await, 0, "{}", b.name);
    }
    cleanup(backends).await;
}
