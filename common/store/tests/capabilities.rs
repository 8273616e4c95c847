//! Capability tokens answer to what minted them (issue 24), the same on
//! both backends: an API token's revocation revokes its mints, a session id
//! is claimed once, every mint is audited and counted, and dead rows are
//! purged.

use std::time::Duration;

use store::{Minter, Store, StoreError};

mod support;
use support::{backends, cleanup};

const HOUR: Duration = Duration::from_secs(3600);

/// One number from the store, with a connection of the test's own.
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

async fn exec(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
    } else {
        sqlx::raw_sql(sql)
            .execute(&own_pg(url).await)
            .await
            .unwrap();
    }
}

/// A PostgreSQL pool of the test's own, for simple queries (through
/// PgBouncer too: it refuses a startup parameter).
async fn own_pg(url: &str) -> sqlx::PgPool {
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    sqlx::PgPool::connect_with(options.extra_float_digits(None))
        .await
        .unwrap()
}

async fn mint(
    store: &Store,
    user: &str,
    session: &str,
    minter: Minter<'_>,
) -> Result<String, StoreError> {
    store
        .mint_capability(user, "prof_a", session, &["teller"], HOUR, minter)
        .await
        .map(|minted| minted.token.to_string())
}

/// Whether `token` still opens `teller`.
async fn alive(store: &Store, token: &str) -> bool {
    store
        .capability(token)
        .await
        .unwrap()
        .is_some_and(|c| c.admits("teller").is_ok())
}

#[tokio::test]
async fn revoking_an_api_token_revokes_what_it_minted_and_nothing_else() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let (a, _) = s.create_api_token("u1", "a").await.unwrap();
        let (other, _) = s.create_api_token("u1", "other").await.unwrap();
        let by = |id| Minter::ApiToken {
            id,
            per_minute: None,
        };
        let from_a = mint(s, "u1", "sess_a", by(&a.id)).await.unwrap();
        let from_other = mint(s, "u1", "sess_b", by(&other.id)).await.unwrap();
        let from_cli = mint(s, "u1", "sess_c", Minter::Cli).await.unwrap();

        // Listed with what minted each, newest first; never a token.
        let listed = s.live_sessions("u1").await.unwrap();
        let minters: Vec<(&str, &str)> = listed
            .iter()
            .map(|l| (l.session_id.as_str(), l.minted_by.as_str()))
            .collect();
        assert_eq!(
            minters,
            [
                ("sess_c", "cli"),
                ("sess_b", other.id.as_str()),
                ("sess_a", a.id.as_str())
            ],
            "{}",
            b.name
        );
        assert!(
            listed
                .iter()
                .all(|l| l.servers == ["teller"] && l.last_used_at.is_none())
        );
        let shown = format!("{listed:?}");
        for token in [&from_a, &from_other, &from_cli] {
            assert!(!shown.contains(&token[4..]));
        }

        s.revoke_api_token("u1", &a.id).await.unwrap();
        assert!(!alive(s, &from_a).await, "{}", b.name);
        assert!(alive(s, &from_other).await && alive(s, &from_cli).await);
        assert_eq!(s.live_sessions("u1").await.unwrap().len(), 2);
        // A revoked API token mints nothing more.
        assert!(matches!(
            mint(s, "u1", "sess_d", by(&a.id)).await,
            Err(StoreError::NotFound { .. })
        ));

        // Every mint is one audit row, naming what minted it, never the token.
        let audited = count(
            &b.url,
            "SELECT count(*) FROM audit_log WHERE server = 'sessions' AND tool = 'mint' AND decision = 'allow'",
        )
        .await;
        assert_eq!(audited, 3, "{}", b.name);
        let named = format!(
            "SELECT count(*) FROM audit_log WHERE tool = 'mint' AND session_id = 'sess_a' AND detail LIKE '%{}%'",
            a.id
        );
        assert_eq!(count(&b.url, &named).await, 1);

        // All of a user's tokens end at once, another user's stay.
        let theirs = mint(s, "u2", "sess_e", Minter::Cli).await.unwrap();
        assert_eq!(s.revoke_user_sessions("u1").await.unwrap(), 2);
        assert!(!alive(s, &from_other).await && !alive(s, &from_cli).await);
        assert!(s.live_sessions("u1").await.unwrap().is_empty());
        assert!(alive(s, &theirs).await);
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn two_users_racing_for_one_session_id_leave_one_owner() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        for round in 0..20 {
            let session = format!("sess_race_{round}");
            let (one, two) = tokio::join!(
                mint(s, "u1", &session, Minter::Cli),
                mint(s, "u2", &session, Minter::Cli)
            );
            let owner = match (&one, &two) {
                (Ok(_), Err(StoreError::Invalid(_))) => "u1",
                (Err(StoreError::Invalid(_)), Ok(_)) => "u2",
                other => panic!("{}: round {round}: {other:?}", b.name),
            };
            let refused = [one, two].into_iter().find_map(Result::err).unwrap();
            // The same sentence as a malformed session id's.
            let malformed = mint(s, "u1", "sess race", Minter::Cli).await.unwrap_err();
            assert_eq!(
                refused.to_string().replace(&session, "x"),
                malformed.to_string().replace("sess race", "x")
            );
            // Afterwards the owner mints into it again; the other still cannot.
            let loser = if owner == "u1" { "u2" } else { "u1" };
            mint(s, owner, &session, Minter::Cli).await.unwrap();
            assert!(matches!(
                mint(s, loser, &session, Minter::Cli).await,
                Err(StoreError::Invalid(_))
            ));
        }
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn mints_are_counted_per_api_token_and_dead_rows_purged() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        let (a, _) = s.create_api_token("u1", "a").await.unwrap();
        let (other, _) = s.create_api_token("u1", "other").await.unwrap();
        let limited = |id| Minter::ApiToken {
            id,
            per_minute: Some(2),
        };
        // Within one minute (the test may straddle two: then all pass).
        let mut refused = None;
        for n in 0..3 {
            match mint(s, "u1", &format!("sess_{n}"), limited(&a.id)).await {
                Ok(_) => {}
                Err(StoreError::TooManyMints(e)) => refused = Some(e),
                Err(e) => panic!("{}: {e}", b.name),
            }
        }
        if let Some(e) = refused {
            assert_eq!(e.limit, 2);
            assert!((1..=60).contains(&e.retry_after), "{e:?}");
            assert!(e.to_string().contains("at most 2 a minute"), "{e}");
        }
        // Another API token has its own count.
        mint(s, "u1", "sess_x", limited(&other.id)).await.unwrap();

        // Expired and revoked rows (past an hour) go at the next mint, and
        // so does the claim of a session whose tokens all expired.
        s.revoke_session(None, "sess_x").await.unwrap();
        exec(&b.url, "UPDATE capability_tokens SET revoked_at = '2000-01-01T00:00:00.000000Z' WHERE session_id = 'sess_x'").await;
        exec(&b.url, "UPDATE capability_tokens SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE session_id = 'sess_0'").await;
        exec(&b.url, "UPDATE capability_sessions SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE session_id = 'sess_0'").await;
        let before = count(&b.url, "SELECT count(*) FROM capability_tokens").await;
        mint(s, "u1", "sess_y", Minter::Cli).await.unwrap();
        let gone =
            "SELECT count(*) FROM capability_tokens WHERE session_id IN ('sess_0', 'sess_x')";
        assert_eq!(count(&b.url, gone).await, 0, "{}", b.name);
        assert_eq!(
            count(&b.url, "SELECT count(*) FROM capability_tokens").await,
            before - 2 + 1
        );
        let claims = "SELECT count(*) FROM capability_sessions WHERE session_id = 'sess_0'";
        assert_eq!(count(&b.url, claims).await, 0);
        // Its id is free again, for anyone.
        mint(s, "u2", "sess_0", Minter::Cli).await.unwrap();
    }
    cleanup(backends).await;
}

#[tokio::test]
async fn probing_another_users_session_ids_costs_mints() {
    let backends = backends().await;
    for b in &backends {
        let s = &b.store;
        mint(s, "u2", "sess_theirs", Minter::Cli).await.unwrap();
        let (probe, _) = s.create_api_token("u1", "probe").await.unwrap();
        let by = Minter::ApiToken {
            id: &probe.id,
            per_minute: None,
        };
        for _ in 0..3 {
            let refused = mint(s, "u1", "sess_theirs", by).await.unwrap_err();
            assert!(matches!(refused, StoreError::Invalid(_)), "{refused:?}");
        }
        // Each refused claim was counted against the API token (the three
        // may straddle a minute: then the count restarted once).
        let counted = format!(
            "SELECT mints_in_minute FROM api_tokens WHERE id = '{}'",
            probe.id
        );
        assert!(count(&b.url, &counted).await >= 1, "{}", b.name);
    }
    cleanup(backends).await;
}
