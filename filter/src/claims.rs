//! Time, audience and subject rules applied to every verified token.

use crate::token::Claims;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    MissingExp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingSub,
    /// A `sub` with control characters could split or corrupt the stamped header.
    InvalidSub,
    AudienceMismatch,
    /// A self-issued token valid for longer than the policy allows.
    TooLongLived,
}

/// Checks `exp` (required), `nbf` and `iat` against `now` with `leeway`
/// seconds of tolerated clock skew, and that `aud` names at least one of
/// `audiences`.
pub fn check(
    claims: &Claims,
    now: i64,
    leeway: u64,
    audiences: &[String],
) -> Result<(), ClaimError> {
    let leeway = i64::try_from(leeway).unwrap_or(i64::MAX);
    let exp = claims.exp.ok_or(ClaimError::MissingExp)?;
    if now >= exp.saturating_add(leeway) {
        return Err(ClaimError::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| now < nbf.saturating_sub(leeway))
    {
        return Err(ClaimError::NotYetValid);
    }
    if claims
        .iat
        .is_some_and(|iat| now < iat.saturating_sub(leeway))
    {
        return Err(ClaimError::IssuedInFuture);
    }
    if !claims.aud.iter().any(|a| audiences.contains(a)) {
        return Err(ClaimError::AudienceMismatch);
    }
    Ok(())
}

/// The token's `sub`: required, and free of control characters, since it
/// becomes a header value.
pub fn subject(claims: &Claims) -> Result<&str, ClaimError> {
    let sub = claims.sub.as_deref().unwrap_or_default();
    if sub.is_empty() {
        return Err(ClaimError::MissingSub);
    }
    if sub.chars().any(char::is_control) {
        return Err(ClaimError::InvalidSub);
    }
    Ok(sub)
}

/// A self-issued token's lifetime, `exp - iat` (or `exp - now` without
/// `iat`), must not exceed `max_ttl` seconds: a stolen one expires soon.
pub fn lifetime(claims: &Claims, now: i64, max_ttl: u64) -> Result<(), ClaimError> {
    let exp = claims.exp.ok_or(ClaimError::MissingExp)?;
    let start = claims.iat.unwrap_or(now);
    let max = i64::try_from(max_ttl).unwrap_or(i64::MAX);
    if exp.saturating_sub(start) > max {
        return Err(ClaimError::TooLongLived);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn claims() -> Claims {
        Claims {
            sub: Some("alice".into()),
            aud: vec!["api".into()],
            exp: Some(NOW + 300),
            ..Claims::default()
        }
    }

    fn aud() -> Vec<String> {
        vec!["other".into(), "api".into()]
    }

    #[test]
    fn valid_claims_pass() {
        assert_eq!(check(&claims(), NOW, 60, &aud()), Ok(()));
    }

    #[test]
    fn exp_is_required_and_honoured_with_leeway() {
        let mut c = claims();
        c.exp = None;
        assert_eq!(check(&c, NOW, 60, &aud()), Err(ClaimError::MissingExp));
        c.exp = Some(NOW - 59);
        assert_eq!(check(&c, NOW, 60, &aud()), Ok(()));
        c.exp = Some(NOW - 60);
        assert_eq!(check(&c, NOW, 60, &aud()), Err(ClaimError::Expired));
        c.exp = Some(NOW);
        assert_eq!(check(&c, NOW, 0, &aud()), Err(ClaimError::Expired));
        c.exp = Some(i64::MIN);
        assert_eq!(check(&c, NOW, u64::MAX, &aud()), Err(ClaimError::Expired));
    }

    #[test]
    fn nbf_and_iat_with_leeway() {
        let mut c = claims();
        c.nbf = Some(NOW + 60);
        assert_eq!(check(&c, NOW, 60, &aud()), Ok(()));
        c.nbf = Some(NOW + 61);
        assert_eq!(check(&c, NOW, 60, &aud()), Err(ClaimError::NotYetValid));
        c.nbf = None;
        c.iat = Some(NOW + 61);
        assert_eq!(check(&c, NOW, 60, &aud()), Err(ClaimError::IssuedInFuture));
        c.iat = Some(NOW - 10_000);
        assert_eq!(check(&c, NOW, 60, &aud()), Ok(()));
    }

    #[test]
    fn sub_is_required() {
        let mut c = claims();
        assert_eq!(subject(&c), Ok("alice"));
        c.sub = Some(String::new());
        assert_eq!(subject(&c), Err(ClaimError::MissingSub));
        c.sub = None;
        assert_eq!(subject(&c), Err(ClaimError::MissingSub));
        c.sub = Some("alice\r\nx-attach-user: root".into());
        assert_eq!(subject(&c), Err(ClaimError::InvalidSub));
        c.sub = Some("jos\u{e9}".into());
        assert_eq!(subject(&c), Ok("jos\u{e9}"));
    }

    #[test]
    fn lifetime_is_bounded() {
        let mut c = claims();
        c.iat = Some(NOW);
        c.exp = Some(NOW + 3_600);
        assert_eq!(lifetime(&c, NOW, 3_600), Ok(()));
        c.exp = Some(NOW + 3_601);
        assert_eq!(lifetime(&c, NOW, 3_600), Err(ClaimError::TooLongLived));
        // Without iat the remaining time counts.
        c.iat = None;
        assert_eq!(lifetime(&c, NOW + 1, 3_600), Ok(()));
        assert_eq!(lifetime(&c, NOW, 3_600), Err(ClaimError::TooLongLived));
        // A backdated iat cannot stretch the window.
        c.iat = Some(NOW - 10_000);
        c.exp = Some(NOW + 60);
        assert_eq!(lifetime(&c, NOW, 3_600), Err(ClaimError::TooLongLived));
        c.exp = None;
        assert_eq!(lifetime(&c, NOW, 3_600), Err(ClaimError::MissingExp));
    }

    #[test]
    fn audience_must_intersect() {
        let mut c = claims();
        c.aud = vec!["x".into(), "api".into()];
        assert_eq!(check(&c, NOW, 60, &aud()), Ok(()));
        c.aud = vec!["x".into()];
        assert_eq!(
            check(&c, NOW, 60, &aud()),
            Err(ClaimError::AudienceMismatch)
        );
        c.aud = vec![];
        assert_eq!(
            check(&c, NOW, 60, &aud()),
            Err(ClaimError::AudienceMismatch)
        );
        c.aud = vec!["API".into()];
        assert_eq!(
            check(&c, NOW, 60, &aud()),
            Err(ClaimError::AudienceMismatch)
        );
    }
}
