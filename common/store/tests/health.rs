//! The store's side of connection health (issue 27), the same on both
//! backends: a change to a row writes its event in the same transaction
//! whoever makes it, a provider's verdict carries its reason and words, a
//! change that is not an event writes none; one holder at a time has a
//! lease; a reconnect link works once, for the user it was issued to.

use std::time::{Duration, SystemTime};

use model::config::{DecryptedConfig, ValidConfig};
use model::{IntegrationType, ReauthReason, Scope, Status};
use serde_json::{Value, json};
use store::{
    IntegrationUpdate, NewIntegration, NewProfile, PendingEvent, Purpose, SidecarStore, Store,
};
use vault::Keyring;
use zeroize::Zeroizing;

mod support;
use support::{backends, cleanup};

fn teller(enrollment: &str) -> ValidConfig {
    let json = format!(
        r#"{{"enrollment_id":"{enrollment}","access_token":"test_token_{enrollment}","institution_name":"PNC"}}"#
    );
    DecryptedConfig::validate(IntegrationType::Teller, Zeroizing::new(json.into_bytes())).unwrap()
}

/// A Teller row of `user`, granted to every profile.
fn teller_row(user: &str) -> NewIntegration {
    NewIntegration {
        user_id: user.into(),
        kind: IntegrationType::Teller,
        label: None,
        is_default: false,
        scope: Scope::All,
        profile_ids: vec![],
        bound_profile_id: None,
    }
}

/// The undelivered events' types and data, in outbox order.
async fn events(store: &Store) -> Vec<(String, Value)> {
    store
        .undelivered_events(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, serde_json::from_str(&e.data).unwrap()))
        .collect()
}

/// Delivers everything there is, so that the next check sees only new events.
async fn deliver_all(store: &Store) -> Vec<PendingEvent> {
    let pending = store.undelivered_events(100).await.unwrap();
    for event in &pending {
        store.event_delivered(event.seq).await.unwrap();
    }
    pending
}

#[tokio::test]
async fn every_change_to_a_connection_writes_its_one_event_whoever_makes_it() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = Keyring::parse(&Keyring::generate_entry()).unwrap();
        s.add_profile(&NewProfile {
            id: "prof_fin".into(),
            user_id: "u1".into(),
            slug: "fin".into(),
            name: None,
            is_default: false,
        })
        .await
        .unwrap();
        let row = s
            .add_integration(&k, &teller_row("u1"), &teller("enr_1"))
            .await
            .unwrap();
        let connected = deliver_all(s).await;
        assert_eq!(connected.len(), 1, "{}", b.name);
        let event = &connected[0];
        assert_eq!(
            (
                event.kind.as_str(),
                event.integration_id.as_str(),
                event.integration_type.as_str(),
                event.user_id.as_str()
            ),
            ("integration.connected", row.id.as_str(), "teller", "u1"),
            "{}",
            b.name
        );
        assert!(event.id.starts_with("evt_") && event.id.len() > 20);
        assert_eq!(
            serde_json::from_str::<Value>(&event.data).unwrap(),
            json!({"label": "PNC", "scope": "all", "profile_ids": []})
        );

        // A label is no event; a scope is.
        let label = IntegrationUpdate {
            label: Some("My PNC".into()),
            ..Default::default()
        };
        s.update_integration(&k, "u1", &row.id, &label)
            .await
            .unwrap();
        assert_eq!(events(s).await, [], "{}", b.name);
        let scope = IntegrationUpdate {
            profile_ids: Some(vec!["prof_fin".into()]),
            ..Default::default()
        };
        s.update_integration(&k, "u1", &row.id, &scope)
            .await
            .unwrap();
        assert_eq!(
            events(s).await,
            [(
                "integration.scope_changed".to_string(),
                json!({"label": "My PNC", "scope": "agents", "profile_ids": ["prof_fin"]})
            )],
            "{}",
            b.name
        );
        deliver_all(s).await;

        // A provider's verdict, through the sidecar's own connection: the
        // reason and its words on the row and in the event, once.
        let sidecar = SidecarStore::open(&b.url, 1).unwrap();
        for _ in 0..2 {
            sidecar
                .mark_needs_reauth(
                    &row.id,
                    &row.sealed,
                    ReauthReason::ProviderRefused,
                    "Teller refused the access token (401)",
                )
                .await
                .unwrap();
        }
        assert_eq!(
            events(s).await,
            [(
                "integration.needs_reauth".to_string(),
                json!({"label": "My PNC", "reason": "provider_refused",
                       "message": "Teller refused the access token (401)"})
            )],
            "{}",
            b.name
        );
        let marked = s.integration(&row.id).await.unwrap().unwrap();
        assert_eq!(marked.status, Status::NeedsReauth);
        deliver_all(s).await;

        // Connected again through the provider's flow.
        let (again, created) = s
            .connect_integration(&k, "u1", IntegrationType::Teller, &teller("enr_1"))
            .await
            .unwrap();
        assert!(!created && again.status == Status::Active);
        assert_eq!(
            events(s).await,
            [(
                "integration.reconnected".to_string(),
                json!({"label": "My PNC"})
            )],
            "{}",
            b.name
        );
        deliver_all(s).await;

        // Teller's webhook marks it with its own reason.
        assert!(
            s.mark_enrollment_disconnected("enr_1", SystemTime::now())
                .await
                .unwrap()
        );
        let reasons: Vec<Value> = events(s).await.into_iter().map(|(_, d)| d).collect();
        assert_eq!(reasons.len(), 1, "{}", b.name);
        assert_eq!(reasons[0]["reason"], "enrollment_disconnected");

        s.delete_integration(&row.id).await.unwrap();
        let kinds: Vec<String> = events(s).await.into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            ["integration.needs_reauth", "integration.disconnected"],
            "{}",
            b.name
        );
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn a_failed_attempt_waits_and_old_events_are_purged() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let k = Keyring::parse(&Keyring::generate_entry()).unwrap();
        let first = s
            .add_integration(&k, &teller_row("u1"), &teller("enr_1"))
            .await
            .unwrap();
        s.add_integration(&k, &teller_row("u2"), &teller("enr_2"))
            .await
            .unwrap();
        s.delete_integration(&first.id).await.unwrap();
        let pending = s.undelivered_events(100).await.unwrap();
        assert_eq!(pending.len(), 3, "{}", b.name);
        assert!(pending[0].seq < pending[1].seq && pending[1].seq < pending[2].seq);
        let seqs = |events: Vec<PendingEvent>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        // Of each integration, its oldest: u1's disconnection waits.
        assert_eq!(
            seqs(s.due_events(100).await.unwrap()),
            [pending[0].seq, pending[1].seq],
            "{}",
            b.name
        );

        let later = SystemTime::now() + Duration::from_secs(60);
        s.event_failed(pending[0].seq, later, "the receiver answered 500")
            .await
            .unwrap();
        let after = s.undelivered_events(100).await.unwrap();
        assert_eq!(after[0].attempts, 1);
        assert!(after[0].next_attempt_at > pending[0].next_attempt_at);
        // u1's first waits a minute, and its next behind it; u2's is due.
        assert_eq!(seqs(s.due_events(100).await.unwrap()), [pending[1].seq]);
        s.event_delivered(pending[1].seq).await.unwrap();
        assert_eq!(s.due_events(100).await.unwrap(), []);
        assert_eq!(
            seqs(s.undelivered_events(100).await.unwrap()),
            [pending[0].seq, pending[2].seq],
            "{}",
            b.name
        );
        s.event_delivered(pending[0].seq).await.unwrap();
        assert_eq!(seqs(s.due_events(100).await.unwrap()), [pending[2].seq]);

        // Nothing is older than an hour ago; everything is older than now.
        let purged = s
            .purge_events(SystemTime::now() - Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!((purged.delivered, purged.dropped), (0, 0));
        let purged = s
            .purge_events(SystemTime::now() + Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!((purged.delivered, purged.dropped), (2, 1), "{}", b.name);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn one_holder_at_a_time_has_a_lease_until_it_lapses() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let minute = Duration::from_secs(60);
        assert!(s.take_lease("events", "a", minute).await.unwrap());
        assert!(!s.take_lease("events", "b", minute).await.unwrap());
        // Its holder renews it; another lease is another name's.
        assert!(s.take_lease("events", "a", minute).await.unwrap());
        assert!(s.take_lease("health", "b", minute).await.unwrap());
        // Given up, anyone takes it.
        s.release_lease("events", "b").await.unwrap();
        assert!(!s.take_lease("events", "b", minute).await.unwrap());
        s.release_lease("events", "a").await.unwrap();
        assert!(s.take_lease("events", "b", Duration::ZERO).await.unwrap());
        // Lapsed, it is taken over.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s.take_lease("events", "c", minute).await.unwrap());
        assert!(!s.take_lease("events", "b", minute).await.unwrap());

        // Raced by many holders at once: one gets it.
        let raced = futures_count(s, "raced").await;
        assert_eq!(raced, 1, "{}", b.name);
    }
    cleanup(backends).await;
}

/// How many of twenty holders asking at once for the lease `name` got it.
async fn futures_count(store: &Store, name: &str) -> usize {
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            store
                .take_lease(&name, &format!("holder{i}"), Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut taken = 0;
    for task in tasks {
        taken += usize::from(task.await.unwrap());
    }
    taken
}

#[tokio::test]
async fn a_reconnect_link_works_once_and_only_for_its_own_user() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let half_hour = Duration::from_secs(1800);
        let key = s
            .issue_connect_key("u1", Purpose::Reconnect, Some("int_gmail"), half_hour)
            .await
            .unwrap();
        assert_eq!(
            s.spend_reconnect_key(&key, "u2").await.unwrap(),
            None,
            "{}",
            b.name
        );
        assert_eq!(
            s.spend_reconnect_key(&key, "u1").await.unwrap().as_deref(),
            Some("int_gmail"),
            "{}",
            b.name
        );
        assert_eq!(s.spend_reconnect_key(&key, "u1").await.unwrap(), None);
        // Another purpose's key is no reconnect link.
        let code = s
            .issue_connect_key("u1", Purpose::TelegramLink, Some("int_bot"), half_hour)
            .await
            .unwrap();
        assert_eq!(s.spend_reconnect_key(&code, "u1").await.unwrap(), None);
        let expired = s
            .issue_connect_key("u1", Purpose::Reconnect, Some("int_gmail"), Duration::ZERO)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(s.spend_reconnect_key(&expired, "u1").await.unwrap(), None);
    }
    cleanup(backends).await;
}
