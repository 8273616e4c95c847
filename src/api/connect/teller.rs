//! Teller through Teller Connect: a single-use nonce, then the enrollment
//! Teller Connect hands the page, its signature checked and its token
//! shown to see the enrollment's accounts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use model::IntegrationType;
use model::config::FieldValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use store::Purpose;
use zeroize::Zeroizing;

use super::{KEY_TTL, NotStored, connect};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::body::Payload;
use crate::api::error::ApiError;
use crate::ops::output::{IntegrationView, redacted_config};

/// `POST /v1/integrations/teller/nonce`.
#[derive(Serialize, JsonSchema)]
pub struct Nonce {
    /// Pass to Teller Connect; it signs it back; single-use, 10 minutes.
    pub nonce: String,
}

/// `POST /v1/integrations/teller/nonce`: a nonce for Teller Connect.
pub async fn nonce(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<Nonce>), ApiError> {
    let nonce = state
        .store
        .issue_connect_key(&caller.0, Purpose::TellerNonce, None, KEY_TTL)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Nonce {
            nonce: nonce.to_string(),
        }),
    ))
}

/// `POST /v1/integrations/teller/callback`: Teller Connect's `onSuccess`.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TellerEnrollment {
    #[schemars(with = "String")]
    pub access_token: Zeroizing<String>,
    pub user: TellerUser,
    pub enrollment: TellerEnrollmentInfo,
    /// Base64 Ed25519 signatures over `<nonce>.<accessToken>.<userId>.<enrollmentId>.<environment>`.
    #[serde(default)]
    pub signatures: Vec<String>,
    /// The nonce from `POST /v1/integrations/teller/nonce` given to Teller Connect.
    pub nonce: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct TellerUser {
    pub id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct TellerEnrollmentInfo {
    pub id: String,
    pub institution: TellerInstitution,
}

#[derive(Deserialize, JsonSchema)]
pub struct TellerInstitution {
    pub id: Option<String>,
    pub name: String,
}

/// `POST /v1/integrations/teller/callback`: stores the enrollment Teller
/// Connect handed the page.
pub async fn callback(
    State(state): State<AppState>,
    caller: Caller,
    Payload(body): Payload<TellerEnrollment>,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    let c = &state.connect;
    if let Some(key) = &c.teller_signing_key {
        let nonce = body
            .nonce
            .as_deref()
            .ok_or_else(|| unsigned("the nonce is missing"))?;
        // It holds the access token: a zeroizing buffer.
        let message = Zeroizing::new(format!(
            "{nonce}.{}.{}.{}.{}",
            body.access_token.as_str(),
            body.user.id,
            body.enrollment.id,
            c.teller_environment
        ));
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key);
        let signed = body.signatures.iter().any(|s| {
            STANDARD
                .decode(s.trim())
                .is_ok_and(|sig| public.verify(message.as_bytes(), &sig).is_ok())
        });
        if !signed {
            return Err(unsigned("no signature verifies"));
        }
        let spent = state
            .store
            .spend_connect_key(nonce, Purpose::TellerNonce)
            .await?;
        if spent.is_none_or(|s| s.user_id != caller.0) {
            return Err(unsigned(
                "the nonce was not issued to you, expired, or was used",
            ));
        }
    }
    let client = c.teller.as_ref().map_err(ApiError::internal)?;
    let accounts = client.accounts(&body.access_token).await.map_err(|e| {
        if e.is_unavailable() {
            ApiError::provider_unavailable(format!(
                "Teller could not be reached ({e}); try again later"
            ))
        } else {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "DELIVERY_FAILED",
                format!("Teller did not accept the enrollment's access token: {e}"),
            )
        }
    })?;
    // The token must prove the enrollment: it shows at least one of its
    // accounts and none of another's. A token that sees nothing proves
    // nothing, and would let anyone claim someone else's enrollment id.
    if accounts.is_empty()
        || accounts
            .iter()
            .any(|a| a.enrollment_id != body.enrollment.id)
    {
        return Err(ApiError::invalid(
            "the access token does not belong to that enrollment (Teller shows none of its accounts for it)",
        ));
    }
    let fields = [
        ("enrollment_id", Some(FieldValue::Text(&body.enrollment.id))),
        ("access_token", Some(FieldValue::Text(&body.access_token))),
        (
            "institution_name",
            Some(FieldValue::Text(&body.enrollment.institution.name)),
        ),
        (
            "institution_id",
            body.enrollment
                .institution
                .id
                .as_deref()
                .map(FieldValue::Text),
        ),
    ];
    let (row, created) = connect(&state, &caller.0, IntegrationType::Teller, &fields)
        .await
        .map_err(|e| match e {
            NotStored::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", m),
            NotStored::Incomplete(m) => ApiError::invalid(m),
            NotStored::Failed => ApiError::internal("the enrollment could not be stored"),
        })?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(IntegrationView::new(
            &row,
            redacted_config(&state.keyring, &row),
        )),
    ))
}

fn unsigned(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        format!("the Teller Connect enrollment is not signed for this server: {why}"),
    )
}
