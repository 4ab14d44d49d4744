//! Identity from an AWS Application Load Balancer with OIDC: the `x-amzn-oidc-data` JWT, verified
//! (ES256) against the ALB's public key for its `kid`, signed by the configured load balancer, not
//! expired. Trusted only from the configured proxy addresses, like any sign-on header.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use std::path::PathBuf;

/// Where the ALB's keys are and what to expect.
#[derive(Debug, Clone)]
pub struct AlbConfig {
    /// Directory of PEM public keys named after their key ID (`KID` or `KID.pem`), as AWS publishes
    /// them at https://public-keys.auth.elb.REGION.amazonaws.com/KID.
    pub key_dir: PathBuf,
    /// The load balancer's ARN, which must be the token's `signer`.
    pub signer: String,
    /// The claim naming the user (default `email`).
    pub user_claim: String,
    /// The claim listing the user's groups (a list or a comma-separated string).
    pub groups_claim: String,
}

/// ALB pads its base64url; the JWT spec does not. Accept both.
fn b64(part: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| format!("bad base64: {e}"))
}

/// The user and groups of a verified token.
pub fn verify(cfg: &AlbConfig, token: &str, now_secs: i64) -> Result<(String, Vec<String>), String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("not a JWT".into());
    };
    let header: serde_json::Value = serde_json::from_slice(&b64(h)?).map_err(|e| e.to_string())?;
    if header["alg"] != "ES256" {
        return Err(format!("unexpected alg {}", header["alg"]));
    }
    if header["signer"].as_str() != Some(cfg.signer.as_str()) {
        return Err(format!(
            "signed by {}, not by the configured load balancer",
            header["signer"]
        ));
    }
    let kid = header["kid"]
        .as_str()
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .ok_or("bad kid")?;
    let pem = std::fs::read_to_string(cfg.key_dir.join(kid))
        .or_else(|_| std::fs::read_to_string(cfg.key_dir.join(format!("{kid}.pem"))))
        .map_err(|_| format!("no public key for kid {kid}"))?;
    let key =
        VerifyingKey::from_public_key_pem(&pem).map_err(|e| format!("bad public key for {kid}: {e}"))?;
    let sig = Signature::from_slice(&b64(s)?).map_err(|e| format!("bad signature: {e}"))?;
    let signed = &token[..h.len() + 1 + p.len()];
    key.verify(signed.as_bytes(), &sig)
        .map_err(|_| "signature does not verify".to_owned())?;
    let claims: serde_json::Value = serde_json::from_slice(&b64(p)?).map_err(|e| e.to_string())?;
    let exp = claims["exp"]
        .as_i64()
        .or_else(|| header["exp"].as_i64())
        .ok_or("no exp")?;
    if exp < now_secs {
        return Err("expired".into());
    }
    let user = claims[cfg.user_claim.as_str()]
        .as_str()
        .or_else(|| claims["sub"].as_str())
        .ok_or("no user claim")?
        .to_owned();
    let groups = match &claims[cfg.groups_claim.as_str()] {
        serde_json::Value::Array(a) => a.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect(),
        serde_json::Value::String(s) => s
            .split(',')
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    Ok((user, groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey;

    const ARN: &str = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/console/abc";

    fn b64e(v: &serde_json::Value) -> String {
        // ALB pads its base64url; tokens here are padded the same way.
        base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
    }

    fn setup() -> (tempfile::TempDir, SigningKey, AlbConfig) {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        std::fs::write(dir.path().join("kid-1"), pem).unwrap();
        let cfg = AlbConfig {
            key_dir: dir.path().to_owned(),
            signer: ARN.into(),
            user_claim: "email".into(),
            groups_claim: "groups".into(),
        };
        (dir, key, cfg)
    }

    fn token(key: &SigningKey, signer: &str, exp: i64) -> String {
        let header = b64e(
            &serde_json::json!({"alg": "ES256", "kid": "kid-1", "signer": signer, "typ": "JWT", "exp": exp}),
        );
        let claims = b64e(
            &serde_json::json!({"email": "alice@example.com", "groups": ["platform", "readers"], "exp": exp}),
        );
        let signed = format!("{header}.{claims}");
        let sig: Signature = key.sign(signed.as_bytes());
        format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE.encode(sig.to_bytes())
        )
    }

    #[test]
    fn a_token_signed_by_the_load_balancer_names_the_user_and_groups() {
        let (_dir, key, cfg) = setup();
        let (user, groups) = verify(&cfg, &token(&key, ARN, 2_000), 1_000).unwrap();
        assert_eq!(user, "alice@example.com");
        assert_eq!(groups, ["platform", "readers"]);
    }

    #[test]
    fn forged_expired_or_foreign_tokens_are_refused() {
        let (_dir, key, cfg) = setup();
        assert!(verify(&cfg, &token(&key, ARN, 500), 1_000)
            .unwrap_err()
            .contains("expired"));
        assert!(verify(
            &cfg,
            &token(&key, "arn:aws:elasticloadbalancing:other", 2_000),
            1_000
        )
        .is_err());
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        assert!(verify(&cfg, &token(&other, ARN, 2_000), 1_000)
            .unwrap_err()
            .contains("does not verify"));
        let good = token(&key, ARN, 2_000);
        let tampered = good.replacen("eyJlbWFpbCI6", "eyJlbWFpbCI7", 1);
        assert!(verify(&cfg, &tampered, 1_000).is_err());
    }
}
