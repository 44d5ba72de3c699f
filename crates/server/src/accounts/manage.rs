//! What an admin does to accounts, from the page's API or `apex users`: create one, give
//! it a new password, disable or enable it, invite someone. Ending an account's sessions
//! here is seen by every instance (see `revocation`).
use std::time::Duration;

use apex_protocol::now_ms;
use apex_store::{Account, AccountChange, AccountKey, Invitation, NewAccount, Store, StoreError};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::passwords;

/// How long an invitation can be used.
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The roles of an account.
pub const ROLES: [&str; 2] = ["admin", "member"];

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    Invalid(String),
    #[error("the name `{0}` is taken")]
    NameTaken(String),
    #[error("there is no account named `{0}`")]
    NoSuchAccount(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(#[from] anyhow::Error),
}

/// The sign-in name as stored: trimmed, lower case; 1 to 64 letters, digits, `.`, `_`, `-`
/// or `@` (an e-mail address is a name).
pub fn normalize_name(name: &str) -> Result<String, ManageError> {
    let name = name.trim().to_lowercase();
    let ok = (1..=64).contains(&name.chars().count())
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        return Err(ManageError::Invalid("a name has 1 to 64 letters, digits, `.`, `_`, `-` or `@`".into()));
    }
    Ok(name)
}

pub fn check_role(role: &str) -> Result<(), ManageError> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!("the role must be one of {}", ROLES.join(", "))))
    }
}

/// Creates an account; without a role, the install's first account is `admin`.
pub async fn create(store: &dyn Store, name: &str, password: &str, role: Option<&str>) -> Result<Account, ManageError> {
    let name = normalize_name(name)?;
    passwords::check(password).map_err(ManageError::Invalid)?;
    if let Some(role) = role {
        check_role(role)?;
    }
    let new = NewAccount {
        id: format!("u_{}", random_hex(16)),
        name: name.clone(),
        password_hash: passwords::hash(password.to_owned()).await?,
        role: role.map(str::to_owned),
        at: now_ms(),
    };
    match store.create_account(&new).await {
        Err(StoreError::Conflict) => Err(ManageError::NameTaken(name)),
        other => Ok(other?),
    }
}

pub async fn find(store: &dyn Store, name: &str) -> Result<Account, ManageError> {
    let name = normalize_name(name)?;
    store.account(AccountKey::Name(&name)).await?.ok_or(ManageError::NoSuchAccount(name))
}

/// A new password; every session of the account ends. Returns the sessions ended.
pub async fn set_password(store: &dyn Store, name: &str, password: &str) -> Result<Vec<String>, ManageError> {
    passwords::check(password).map_err(ManageError::Invalid)?;
    let account = find(store, name).await?;
    let hash = passwords::hash(password.to_owned()).await?;
    store.update_account(&account.id, &AccountChange::Password(hash)).await?;
    Ok(store.revoke_sessions(&account.id, None, now_ms()).await?)
}

/// Disables (every session ends) or enables an account. Returns the sessions ended.
pub async fn set_disabled(store: &dyn Store, name: &str, disabled: bool) -> Result<Vec<String>, ManageError> {
    let account = find(store, name).await?;
    let at = now_ms();
    store.update_account(&account.id, &AccountChange::Disabled(disabled.then_some(at))).await?;
    if !disabled {
        return Ok(Vec::new());
    }
    Ok(store.revoke_sessions(&account.id, None, at).await?)
}

/// A new invitation for `role`, made by `by`: its code (shown once) and expiry.
pub async fn invite(store: &dyn Store, role: &str, by: &str) -> Result<(String, u64), ManageError> {
    check_role(role)?;
    let code = random_token();
    let at = now_ms();
    let expires_at = at + INVITATION_TTL.as_millis() as u64;
    let invitation = Invitation { code_hash: digest(&code), role: role.to_owned(), created_by: by.to_owned(), at, expires_at };
    store.create_invitation(&invitation).await?;
    Ok((code, expires_at))
}

/// A password for an account created without one: 20 characters from 62.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..20).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// 32 random bytes, base64url: a refresh token or an invitation code.
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::thread_rng().gen();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How a secret token is kept: its SHA-256, in hex.
pub fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..bytes).map(|_| format!("{:02x}", rng.gen::<u8>())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(normalize_name("  Alice@Example.com ").unwrap(), "alice@example.com");
        for bad in ["", " ", "a b", "a/b", "<script>", &"x".repeat(65)] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_kept_as_digests() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(generate_password().len(), 20);
    }
}
