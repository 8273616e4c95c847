//! Channel strings: any value parses or is refused as itself; a parsed one
//! prints back to the same request; choosing among a generated set of
//! integrations returns only a granted channel that fits the request.

#![no_main]

use arbitrary::Arbitrary;
use model::channel::{ChannelError, ChannelRequest, parse, select};
use model::{Integration, IntegrationType, Profile, Scope, SealedConfig, Status};
use model::scope::is_granted;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Candidate {
    kind: u8,
    id: u8,
    of_other_user: bool,
    enabled: bool,
    is_default: bool,
    all: bool,
    profile_ids: Vec<u8>,
    bound: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    value: Option<String>,
    candidates: Vec<Candidate>,
    /// The running profile: `None` is a deleted one.
    profile: Option<(u8, bool)>,
}

fn profile_id(n: u8) -> String {
    format!("prof_{}", n % 4)
}

fn integration(c: &Candidate) -> Integration {
    let kind = IntegrationType::ALL[usize::from(c.kind) % IntegrationType::ALL.len()];
    Integration {
        id: format!("int_{}", c.id % 6),
        user_id: if c.of_other_user { "u2" } else { "u1" }.into(),
        kind,
        external_id: None,
        label: String::new(),
        sealed: SealedConfig::default(),
        enabled: c.enabled,
        is_default: c.is_default,
        scope: if c.all { Scope::All } else { Scope::Agents },
        profile_ids: if c.all {
            vec![]
        } else {
            c.profile_ids.iter().copied().map(profile_id).collect()
        },
        bound_profile_id: c.bound.map(profile_id),
        status: Status::Active,
        status_note: None,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

fuzz_target!(|input: Input| {
    let parsed = parse(input.value.as_deref());
    let trimmed = input.value.as_deref().map(str::trim).unwrap_or_default();
    let request = match parsed {
        Ok(request) => request,
        Err(ChannelError::Invalid(value)) => {
            assert_eq!(value, trimmed);
            assert!(!trimmed.is_empty());
            return;
        }
        Err(e) => panic!("parse answered {e:?}"),
    };
    match &request {
        ChannelRequest::Default => assert!(trimmed.is_empty()),
        ChannelRequest::Type(kind) => {
            assert!(kind.is_channel());
            assert_eq!(kind.as_str(), trimmed);
        }
        ChannelRequest::Integration(kind, id) => {
            assert!(kind.is_channel() && id.starts_with("int_") && id.len() > 4);
            assert_eq!(format!("{kind}:{id}"), trimmed);
        }
    }
    if request != ChannelRequest::Default {
        assert_eq!(parse(Some(&request.to_string())), Ok(request.clone()));
    }

    let candidates: Vec<Integration> = input.candidates.iter().take(16).map(integration).collect();
    let profile = input.profile.map(|(n, of_other_user)| Profile {
        id: profile_id(n),
        user_id: if of_other_user { "u2" } else { "u1" }.into(),
        slug: "s".into(),
        name: "s".into(),
        is_default: false,
        created_at: String::new(),
    });
    let running = profile.as_ref().map(|p| p.id.as_str());
    let granted: Vec<&Integration> = candidates
        .iter()
        .filter(|i| i.kind.is_channel() && is_granted(i, profile.as_ref()))
        .collect();
    let speaks_for_us =
        |i: &Integration| i.bound_profile_id.is_none() || i.bound_profile_id.as_deref() == running;
    match select(&request, &candidates, profile.as_ref()) {
        Ok(chosen) => {
            assert!(granted.iter().any(|g| std::ptr::eq(*g, chosen)));
            match &request {
                ChannelRequest::Default => {
                    assert!(speaks_for_us(chosen));
                    let any_default = granted.iter().any(|g| g.is_default && speaks_for_us(g));
                    assert_eq!(chosen.is_default, any_default);
                }
                ChannelRequest::Type(kind) => {
                    assert_eq!(chosen.kind, *kind);
                    assert!(speaks_for_us(chosen));
                    if chosen.bound_profile_id.is_none() {
                        // A bot bound to the running profile comes first.
                        assert!(!granted.iter().any(|g| g.kind == *kind
                            && g.bound_profile_id.is_some()
                            && g.bound_profile_id.as_deref() == running));
                    }
                }
                ChannelRequest::Integration(kind, id) => {
                    assert!(chosen.kind == *kind && chosen.id == *id);
                }
            }
        }
        Err(ChannelError::NoneGranted) => assert!(granted.is_empty()),
        Err(ChannelError::NotAvailable(named)) => {
            assert!(!granted.is_empty());
            assert_eq!(named, request.to_string());
            if let ChannelRequest::Integration(kind, id) = &request {
                assert!(!granted.iter().any(|g| g.kind == *kind && g.id == *id));
            }
        }
        Err(e) => panic!("select answered {e:?}"),
    }
});
