//! Organizations: usage data shared by a team (`/api/orgs`), and which organization a
//! request reads ([`Scope`]).
//!
//! Every user has a personal space (their own usage, id = their user id) and may belong to
//! shared organizations (`org:…`) as `admin`, `analyst` or `viewer`. A request names the
//! organization it is for in the `X-Apex-Org` header or `?org=` (the page, `apex chat
//! --org`, `apex ingest --org`); without one it is the caller's personal space. A caller
//! who is not a member gets `403 not_a_member`, whether or not the organization exists.
//! An organization's API key reaches that organization only. Threads stay personal.
use apex_protocol::{now_ms, OrgId, UserId, ORG_ID_PREFIX};
use apex_store::{Membership, NewOrg, OrgInvitation, OrgRole, StoreError};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{manage, same_origin, Caller};
use crate::api::ApiError;
use crate::auth::Identity;
use crate::AppState;

/// The header that names the organization a request is for.
pub const ORG_HEADER: &str = "x-apex-org";
/// Shared organizations one user may belong to.
const MAX_ORGS: usize = 100;
/// How long an invitation link stays usable.
const INVITATION_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orgs", get(list).post(create))
        .route("/api/orgs/join", post(join))
        .route("/api/orgs/{id}/members", get(members))
        .route("/api/orgs/{id}/members/{user}", patch(set_role).delete(remove))
        .route("/api/orgs/{id}/invitations", post(invite))
}

/// The organization a request reads and writes usage in, and the caller's role there.
pub struct Scope {
    pub user: UserId,
    pub org: OrgId,
    pub role: OrgRole,
    pub identity: Identity,
}

impl Scope {
    /// Refuses a caller whose role is below `needed` (`doing`: what was refused).
    pub fn require(&self, needed: OrgRole, doing: &str) -> Result<(), ApiError> {
        if self.role >= needed {
            return Ok(());
        }
        Err(ApiError::Forbidden(
            "insufficient_role",
            format!("{doing} needs the {} role in this organization; you are {}", needed.as_str(), self.role.as_str()),
        ))
    }
}

impl FromRequestParts<AppState> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Caller(identity) = Caller::from_request_parts(parts, app).await?;
        #[derive(Deserialize)]
        struct OrgQuery {
            org: Option<String>,
        }
        let header = parts.headers.get(ORG_HEADER).map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned());
        let query = axum::extract::Query::<OrgQuery>::try_from_uri(&parts.uri).ok().and_then(|q| q.0.org);
        let (org, role) = resolve(app, &identity, header.or(query).as_deref()).await?;
        Ok(Scope { user: UserId::from(identity.user_id.as_str()), org, role, identity })
    }
}

/// The organization `requested` (none: the caller's personal space, or the one their API
/// key is bound to) if the caller belongs to it, with their role.
pub async fn resolve(app: &AppState, identity: &Identity, requested: Option<&str>) -> Result<(OrgId, OrgRole), ApiError> {
    let user = UserId::from(identity.user_id.as_str());
    let requested = requested.map(str::trim).filter(|r| !r.is_empty());
    let requested = match (&identity.org, requested) {
        (Some(bound), Some(r)) if r != bound => {
            return Err(ApiError::Forbidden("not_a_member", format!("this API key is for organization `{bound}` only")));
        }
        (Some(bound), _) => Some(bound.as_str()),
        (None, r) => r,
    };
    match requested {
        None => Ok((OrgId::personal(&user), OrgRole::Admin)),
        Some(r) if r == user.as_str() => Ok((OrgId::personal(&user), OrgRole::Admin)),
        Some(r) => {
            let org = OrgId::new(r);
            let role = if r.starts_with(ORG_ID_PREFIX) && r.len() <= 64 && !identity.demo {
                app.runs.store().role_in(&org, &user).await?
            } else {
                None
            };
            role.map(|role| (org, role)).ok_or_else(|| not_a_member(r))
        }
    }
}

fn not_a_member(org: &str) -> ApiError {
    let shown: String = org.chars().take(64).collect();
    ApiError::Forbidden("not_a_member", format!("you are not a member of organization `{shown}`"))
}

/// Organizations are for real accounts: a demo identity keeps to its own space.
fn not_demo(identity: &Identity) -> Result<(), ApiError> {
    if identity.demo {
        return Err(ApiError::Forbidden("demo_identity", "demo identities cannot use organizations; sign in".into()));
    }
    Ok(())
}

/// The caller's role in the organization of the path (a member's), or `not_a_member`.
async fn member_of(app: &AppState, identity: &Identity, id: &str) -> Result<(OrgId, OrgRole), ApiError> {
    if !id.starts_with(ORG_ID_PREFIX) {
        return Err(not_a_member(id));
    }
    resolve(app, identity, Some(id)).await
}

/// A user belongs to at most [`MAX_ORGS`] organizations.
async fn room_for_one_more(app: &AppState, user: &UserId) -> Result<(), ApiError> {
    if app.runs.store().orgs_of(user).await?.len() >= MAX_ORGS {
        return Err(ApiError::TooMany("too_many_orgs", format!("you already belong to {MAX_ORGS} organizations")));
    }
    Ok(())
}

fn membership_json(m: &Membership) -> serde_json::Value {
    json!({ "id": m.org.id, "name": m.org.name, "role": m.role, "joined_at": m.joined_at, "personal": false })
}

async fn list(State(app): State<AppState>, Caller(identity): Caller) -> Result<Response, ApiError> {
    let user = UserId::from(identity.user_id.as_str());
    // An organization's API key reaches that organization only, not its maker's own space.
    let mut orgs = Vec::new();
    if identity.org.is_none() {
        orgs.push(json!({ "id": user, "name": "Personal", "role": "admin", "personal": true }));
    }
    if !identity.demo {
        let shared = app.runs.store().orgs_of(&user).await?;
        orgs.extend(shared.iter().filter(|m| identity.org.as_ref().is_none_or(|b| b == m.org.id.as_str())).map(membership_json));
    }
    Ok(Json(json!({ "organizations": orgs })).into_response())
}

#[derive(Deserialize)]
struct NewOrgRequest {
    name: String,
}

async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Json(body): Json<NewOrgRequest>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    not_demo(&identity)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("invalid_field", "an organization's name has 1 to 64 characters".into()));
    }
    let user = UserId::from(identity.user_id.as_str());
    let store = app.runs.store();
    room_for_one_more(&app, &user).await?;
    let new = NewOrg { id: OrgId::new_shared(), name: name.to_owned(), created_by: user, at: now_ms() };
    let org = store.create_org(&new).await?;
    let created = Membership { org, role: OrgRole::Admin, joined_at: new.at };
    Ok((StatusCode::CREATED, Json(membership_json(&created))).into_response())
}

async fn members(State(app): State<AppState>, Caller(identity): Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (org, _) = member_of(&app, &identity, &id).await?;
    let members = app.runs.store().members(&org).await?;
    Ok(Json(json!({ "id": org, "members": members })).into_response())
}

#[derive(Deserialize)]
struct RoleRequest {
    role: String,
}

fn parse_role(role: &str) -> Result<OrgRole, ApiError> {
    OrgRole::parse(role)
        .ok_or_else(|| ApiError::BadRequest("invalid_field", format!("`{role}` is not a role: admin, analyst or viewer")))
}

fn last_admin(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict => {
            ApiError::Conflict("last_admin", "an organization keeps at least one admin: make another member admin first".into())
        }
        StoreError::NotFound => ApiError::NotFound,
        other => other.into(),
    }
}

async fn set_role(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Path((id, member)): Path<(String, String)>,
    Json(body): Json<RoleRequest>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    let role = parse_role(&body.role)?;
    let (org, mine) = member_of(&app, &identity, &id).await?;
    if mine != OrgRole::Admin {
        return Err(ApiError::Forbidden("insufficient_role", "changing roles needs the admin role in this organization".into()));
    }
    app.runs.store().set_member(&org, &UserId::from(member.as_str()), Some(role)).await.map_err(last_admin)?;
    Ok(Json(json!({ "id": org, "user_id": member, "role": role })).into_response())
}

/// An admin removes a member; anyone may leave.
async fn remove(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    let (org, mine) = member_of(&app, &identity, &id).await?;
    if mine != OrgRole::Admin && member != identity.user_id {
        return Err(ApiError::Forbidden(
            "insufficient_role",
            "removing a member needs the admin role in this organization".into(),
        ));
    }
    app.runs.store().set_member(&org, &UserId::from(member.as_str()), None).await.map_err(last_admin)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct InvitationRequest {
    #[serde(default)]
    role: Option<String>,
}

async fn invite(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Path(id): Path<String>,
    Json(body): Json<InvitationRequest>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    let role = parse_role(body.role.as_deref().unwrap_or("viewer"))?;
    let (org, mine) = member_of(&app, &identity, &id).await?;
    if mine != OrgRole::Admin {
        return Err(ApiError::Forbidden("insufficient_role", "inviting needs the admin role in this organization".into()));
    }
    let code = manage::random_token();
    let at = now_ms();
    let invitation = OrgInvitation {
        code_hash: manage::digest(&code),
        org: org.clone(),
        role,
        created_by: UserId::from(identity.user_id.as_str()),
        at,
        expires_at: at + INVITATION_TTL_MS,
    };
    app.runs.store().create_org_invitation(&invitation).await?;
    let body =
        json!({ "id": org, "code": code, "path": format!("/#join={code}"), "role": role, "expires_at": invitation.expires_at });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct JoinRequest {
    code: String,
}

async fn join(
    State(app): State<AppState>,
    headers: HeaderMap,
    Caller(identity): Caller,
    Json(body): Json<JoinRequest>,
) -> Result<Response, ApiError> {
    same_origin(&app, &headers)?;
    not_demo(&identity)?;
    let user = UserId::from(identity.user_id.as_str());
    let store = app.runs.store();
    room_for_one_more(&app, &user).await?;
    let code = body.code.trim();
    let joined =
        if code.is_empty() || code.len() > 128 { None } else { store.join_org(&manage::digest(code), &user, now_ms()).await? };
    let Some(joined) = joined else {
        return Err(ApiError::Forbidden("invite_invalid", "this invitation is unknown, used or expired".into()));
    };
    Ok(Json(membership_json(&joined)).into_response())
}
