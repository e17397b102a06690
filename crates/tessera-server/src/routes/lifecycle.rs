//! The account lifecycle's JSON routes (contract §10): confirming an address,
//! asking for a new confirmation link, asking for and using a password-reset link.

use super::openapi::{ErrorBody, UserResponse};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{AccessAuth, ApiJson, ClientInfo};
use crate::tokens::UserView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

/// The token of a mailed link: the `token` parameter of its URL.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// 64 hexadecimal digits.
    token: String,
}

/// Confirm an email address with the token of a verification link, or a new
/// address with the token of an email-change link.
#[utoipa::path(
    post,
    path = "/v1/auth/email/confirm",
    operation_id = "confirm_email",
    tag = "auth",
    request_body = ConfirmBody,
    responses(
        (status = 200, description = "Confirmed: the user, with `email_verified` true (and the new address, for an email change)", body = UserResponse),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields; `invalid_link`: the token is unknown, used, superseded or expired", body = ErrorBody),
        (status = 409, description = "`conflict`: the new address of an email change, or the username or address of a pending registration, was taken meanwhile", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn confirm_email(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> ApiResult<Response> {
    let user = state.app.confirm_email(&body.token, &client).await?;
    Ok(axum::Json(serde_json::json!({ "user": UserView::from(&user) })).into_response())
}

/// Mail a new verification link to the signed-in user's address.
#[utoipa::path(
    post,
    path = "/v1/me/email/verify",
    operation_id = "request_email_verification",
    tag = "me",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 202, description = "A new link is queued; earlier ones stop working"),
        (status = 400, description = "`invalid_request`: the address is already verified, or verification is off", body = ErrorBody),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 403, description = "`csrf`: an access cookie sent from another site", body = ErrorBody),
        (status = 429, description = "`rate_limited`: at most 3 links per account in 15 minutes, and the registration limit per address", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn request_verification(
    State(state): State<Arc<AppState>>,
    auth: AccessAuth,
    client: ClientInfo,
) -> ApiResult<Response> {
    state.app.request_verification(&auth.user, &client).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// An email address (of an account that forgot its password, or waiting for its
/// confirmation).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub struct AddressBody {
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// The same answer whatever the address.
const RESEND_ANSWER: &str = "if a registration or an account waits for this address to be confirmed, a new link is on its way";

/// Ask for a new link confirming an address, without signing in: for a
/// registration waiting for its confirmation (email verification `required`), or
/// an account whose address is not confirmed.
#[utoipa::path(
    post,
    path = "/v1/auth/email/resend",
    operation_id = "resend_email_verification",
    tag = "auth",
    request_body = AddressBody,
    responses(
        (status = 202, description = "The same answer, at the same speed, whatever the address; a new link replaces the earlier one", body = inline(Object), example = json!({"message": RESEND_ANSWER})),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, the email is malformed, or email verification is off", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests for confirmation links from this client address", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn resend_verification(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    ApiJson(body): ApiJson<AddressBody>,
) -> ApiResult<Response> {
    state.app.resend_verification(&body.email, &client).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "message": RESEND_ANSWER })),
    )
        .into_response())
}

/// The same answer whatever the address.
const FORGOT_ANSWER: &str =
    "if an account has this address, a link to reset its password is on its way";

/// Ask for a password-reset link.
#[utoipa::path(
    post,
    path = "/v1/auth/password/forgot",
    operation_id = "forgot_password",
    tag = "auth",
    request_body = AddressBody,
    responses(
        (status = 202, description = "The same answer, at the same speed, whether or not an account has this address", body = inline(Object), example = json!({"message": FORGOT_ANSWER})),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, or the email is malformed", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the registration limit of this address is spent", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn forgot_password(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    ApiJson(body): ApiJson<AddressBody>,
) -> ApiResult<Response> {
    state.app.forgot_password(&body.email, &client).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "message": FORGOT_ANSWER })),
    )
        .into_response())
}

/// A new password with the token of a reset link.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// 64 hexadecimal digits.
    token: String,
    /// 8 to 128 characters, and not common or easy to guess (contract §5.1).
    #[schema(min_length = 8, max_length = 128)]
    new_password: String,
}

/// Set a new password with a reset link; every session of the user ends.
#[utoipa::path(
    post,
    path = "/v1/auth/password/reset",
    operation_id = "reset_password",
    tag = "auth",
    request_body = ResetBody,
    responses(
        (status = 204, description = "The password is set; every session has ended and a notice is mailed"),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, or the new password breaks its rule (the link keeps working); `invalid_link`: the token is unknown, used, superseded or expired", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
        (status = 503, description = "`overloaded`: the hash pool is full", body = ErrorBody),
    )
)]
pub async fn reset_password(
    State(state): State<Arc<AppState>>,
    client: ClientInfo,
    ApiJson(body): ApiJson<ResetBody>,
) -> ApiResult<Response> {
    state
        .app
        .reset_password(&body.token, body.new_password, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A new address for the signed-in user. Unknown fields are refused.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@new.example", "current_password": "correct horse battery"}))]
pub struct EmailChangeBody {
    /// As at registration: unique regardless of case, at most 254 bytes.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// Required unless the session signed in within the last 5 minutes.
    #[serde(default)]
    current_password: Option<String>,
}

/// Ask to change the address: a link is mailed to the new one, which replaces the
/// old one only once the link is followed (then the old one gets a notice).
#[utoipa::path(
    post,
    path = "/v1/me/email",
    operation_id = "change_email",
    tag = "me",
    request_body = EmailChangeBody,
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 202, description = "A confirmation link is queued to the new address; the address is unchanged until it is followed"),
        (status = 400, description = "`invalid_request`: the body is not a JSON object of these fields, the email is malformed, or it is already the account's address", body = ErrorBody),
        (status = 401, description = "`invalid_token`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the current password is missing (and the sign-in is older than 5 minutes) or incorrect; `csrf`: an access cookie sent from another site", body = ErrorBody),
        (status = 409, description = "`conflict`: the address has an account (with email verification `required`, a taken address is answered 202 and mailed nothing)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the registration limit of this client address, the login limits (password checks), or 3 links per account in 15 minutes", body = ErrorBody),
        (status = 500, description = "`server_error`", body = ErrorBody),
    )
)]
pub async fn change_email(
    State(state): State<Arc<AppState>>,
    auth: AccessAuth,
    client: ClientInfo,
    ApiJson(body): ApiJson<EmailChangeBody>,
) -> ApiResult<Response> {
    state
        .app
        .request_email_change(
            &auth.user,
            &auth.session,
            &body.email,
            body.current_password,
            &client,
        )
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
