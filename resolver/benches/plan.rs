//! Plan latency at scale, in-process and warm.
//!
//! Seeds users with 3 profiles and 10 integrations each, and measures
//! `resolver::plan` for random users at 10,000 rows and again at 1,000,000,
//! on SQLite and (when `INTEGRATIONS_TEST_POSTGRES` names a server) on a fresh
//! PostgreSQL database.
//!
//! ```sh
//! cargo bench -p resolver --bench plan                 # 100,000 users = 1,000,000 rows
//! cargo bench -p resolver --bench plan -- --users 20000
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use model::IntegrationType;
use model::config::DecryptedConfig;
use model::sealing::Sealer;
use resolver::{PlanRequest, SidecarEnv};
use store::Store;
use vault::Keyring;
use zeroize::Zeroizing;

const SMALL: usize = 1_000;
const WARMUP: usize = 2_000;
const SAMPLES: usize = 20_000;
const BATCH: usize = 500;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let users = args
        .iter()
        .position(|a| a == "--users")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000usize);
    println!(
        "{:<9} {:>10} {:>9} {:>9} {:>10}",
        "backend", "rows", "p50 µs", "p99 µs", "plans/s"
    );

    let dir = tempfile::tempdir()?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    run("sqlite", &sqlite, users).await?;

    // A fresh database, dropped after (on an error too).
    match testkit::Backend::postgres("bench") {
        Some(db) => run("postgres", &db.url, users).await?,
        None => {
            println!("(set INTEGRATIONS_TEST_POSTGRES=postgres://... to measure PostgreSQL too)")
        }
    }
    Ok(())
}

async fn run(backend: &str, url: &str, users: usize) -> anyhow::Result<()> {
    let store = Store::connect(url).await?;
    let seeder = Seeder::new(url).await?;
    let mut seeded = 0;
    for target in [SMALL.min(users), users] {
        if target <= seeded {
            continue;
        }
        seeder.seed(seeded, target).await?;
        seeded = target;
        let (p50, p99, per_sec) = measure(&store, seeded).await?;
        println!(
            "{backend:<9} {:>10} {:>9.1} {:>9.1} {:>10.0}",
            seeded * 10,
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            per_sec
        );
    }
    Ok(())
}

async fn measure(store: &Store, users: usize) -> anyhow::Result<(Duration, Duration, f64)> {
    let env = SidecarEnv::from_vars("sqlite:///bench.db", []);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_user = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % users as u64) as usize
    };
    let mut samples = Vec::with_capacity(SAMPLES);
    let started = Instant::now();
    for i in 0..WARMUP + SAMPLES {
        let n = next_user();
        let (user, profile) = (format!("u{n:07}"), format!("p{n:07}a"));
        let request = PlanRequest {
            user_id: &user,
            profile_id: &profile,
            session_id: None,
            bin_dir: Path::new("/usr/local/bin"),
        };
        let t = Instant::now();
        let plan = resolver::plan(store, &env, &request).await?;
        let took = t.elapsed();
        assert_eq!(
            plan.servers.len(),
            3,
            "the seeded profile gets notify, gmail and teller"
        );
        if i >= WARMUP {
            samples.push(took);
        }
    }
    let total = started.elapsed();
    samples.sort();
    let per_sec = (WARMUP + SAMPLES) as f64 / total.as_secs_f64();
    Ok((samples[SAMPLES / 2], samples[SAMPLES * 99 / 100], per_sec))
}

/// Bulk-loads users straight through SQL: 3 profiles and 10 integrations
/// each, every config really sealed.
struct Seeder {
    pool: Pool,
    keyring: Keyring,
}

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Seeder {
    async fn new(url: &str) -> anyhow::Result<Self> {
        let pool = if url.starts_with("sqlite:") {
            Pool::Sqlite(sqlx::SqlitePool::connect(url).await?)
        } else {
            Pool::Postgres(sqlx::PgPool::connect(url).await?)
        };
        Ok(Self {
            pool,
            keyring: Keyring::parse(&Keyring::generate_entry())?,
        })
    }

    async fn exec(&self, sql: &str) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(drop)?,
            Pool::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(drop)?,
        }
        Ok(())
    }

    async fn seed(&self, from: usize, to: usize) -> anyhow::Result<()> {
        let started = Instant::now();
        for chunk_start in (from..to).step_by(BATCH) {
            let users = chunk_start..(chunk_start + BATCH).min(to);
            let mut profiles = Vec::new();
            let mut rows = Vec::new();
            for n in users {
                self.user(n, &mut profiles, &mut rows);
            }
            self.exec(&format!(
                "INSERT INTO profiles (id, user_id, slug, name, is_default, created_at) VALUES {}",
                profiles.join(",")
            ))
            .await?;
            self.exec(&format!(
                "INSERT INTO user_integrations (id, user_id, type, external_id, label, encrypted_config, enabled, \
                 is_default, scope, profile_ids, bound_profile_id, status, created_at, updated_at) VALUES {}",
                rows.join(",")
            ))
            .await?;
        }
        // What autovacuum (PostgreSQL) or an operator's ANALYZE (SQLite) would do.
        self.exec("ANALYZE").await?;
        eprintln!(
            "seeded users {from}..{to} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn user(&self, n: usize, profiles: &mut Vec<String>, rows: &mut Vec<String>) {
        let user = format!("u{n:07}");
        let at = "2026-01-01T00:00:00.000Z";
        for (suffix, default) in [("a", true), ("b", false), ("c", false)] {
            profiles.push(format!(
                "('p{n:07}{suffix}', '{user}', '{suffix}', '{suffix}', {default}, '{at}')"
            ));
        }
        let (pa, pb) = (format!("p{n:07}a"), format!("p{n:07}b"));
        let all = ("all", String::from("[]"));
        let only_a = ("agents", format!(r#"["{pa}"]"#));
        let a_and_b = ("agents", format!(r#"["{pa}","{pb}"]"#));
        let only_b = ("agents", format!(r#"["{pb}"]"#));
        type Seed<'a> = (IntegrationType, String, (&'a str, String), Option<&'a str>);
        let integrations: [Seed; 10] = [
            (
                IntegrationType::Slack,
                r#"{"bot_token":"xoxb-1","team_id":"T1","authed_user_id":"U1"}"#.into(),
                all.clone(),
                None,
            ),
            (
                IntegrationType::Telegram,
                format!(
                    r#"{{"bot_token":"1:AA","bot_user_id":"{n}1","bot_username":"shared{n}"}}"#
                ),
                all.clone(),
                None,
            ),
            (
                IntegrationType::Telegram,
                format!(r#"{{"bot_token":"2:AA","bot_user_id":"{n}2","bot_username":"fin{n}"}}"#),
                only_b.clone(),
                Some(&pb),
            ),
            (
                IntegrationType::Gmail,
                r#"{"email":"a@gmail.com","refresh_token":"1//r"}"#.into(),
                all.clone(),
                None,
            ),
            (
                IntegrationType::Teller,
                format!(
                    r#"{{"enrollment_id":"enr_{n}_1","access_token":"test_token_1","institution_name":"PNC"}}"#
                ),
                only_a.clone(),
                None,
            ),
            (
                IntegrationType::Teller,
                format!(
                    r#"{{"enrollment_id":"enr_{n}_2","access_token":"test_token_2","institution_name":"Chase"}}"#
                ),
                a_and_b.clone(),
                None,
            ),
            (
                IntegrationType::Teller,
                format!(
                    r#"{{"enrollment_id":"enr_{n}_3","access_token":"test_token_3","institution_name":"NFCU"}}"#
                ),
                only_b.clone(),
                None,
            ),
            (
                IntegrationType::Teller,
                format!(
                    r#"{{"enrollment_id":"enr_{n}_4","access_token":"test_token_4","institution_name":"Ally"}}"#
                ),
                all.clone(),
                None,
            ),
            (
                IntegrationType::Email,
                r#"{"api_key":"re_1","from_address":"a@x.io","to_address":"b@x.io"}"#.into(),
                all.clone(),
                None,
            ),
            (
                IntegrationType::Webhook,
                r#"{"url":"https://hooks.example.com/x"}"#.into(),
                all,
                None,
            ),
        ];
        for (i, (kind, json, (scope, ids), bound)) in integrations.into_iter().enumerate() {
            let config = DecryptedConfig::validate(kind, Zeroizing::new(json.into_bytes()))
                .expect("bench configs are valid");
            let id = format!("int_{n:07}x{i:02}bench0000000");
            let sealed = self.keyring.seal_config(&id, &user, kind, &config.config);
            let sealed = sealed.as_stored();
            let external = config
                .external_id
                .map_or("NULL".into(), |e| format!("'{e}'"));
            let bound = bound.map_or("NULL".into(), |b| format!("'{b}'"));
            rows.push(format!(
                "('{id}', '{user}', '{kind}', {external}, '{}', '{sealed}', TRUE, FALSE, '{scope}', '{ids}', {bound}, 'active', '{at}', '{at}')",
                config.default_label
            ));
        }
    }
}
