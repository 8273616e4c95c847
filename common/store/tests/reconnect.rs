//! Reconnect links (issue 27), the same on both backends: a link works
//! once, for the user it was issued to; another user's session spends
//! nothing, so the right one still can; an expired link is dead.

use std::time::Duration;

use store::Purpose;

mod support;
use support::{backends, cleanup};

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
