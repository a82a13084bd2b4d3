//! Reading a presentation's headers: exactly one `Authorization` and at most one `DPoP` (RFC 9449
//! §4.3), or which one was checked would depend on the reader. The authority's APIs, its
//! in-process gateway and a gateway run on its own all read them here.

use mandate_verify::{Refusal, RefusalCode};

/// The `Authorization` value and the `DPoP` proof, if any.
pub fn authorization_and_proof(headers: &http::HeaderMap) -> Result<(&str, Option<&str>), Refusal> {
    if headers.get_all("dpop").iter().count() > 1 {
        return Err(Refusal::new(
            RefusalCode::DpopMalformed,
            "send exactly one DPoP header (RFC 9449 section 4.3)",
        ));
    }
    if headers.get_all("authorization").iter().count() > 1 {
        return Err(Refusal::new(
            RefusalCode::MalformedAuthorization,
            "send exactly one Authorization header",
        ));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = header("authorization").ok_or_else(|| {
        Refusal::new(
            RefusalCode::MissingAuthorization,
            "send Authorization: DPoP <mandate> and a DPoP proof",
        )
    })?;
    Ok((authorization, header("dpop")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_authorization_and_at_most_one_proof() {
        let mut h = http::HeaderMap::new();
        assert_eq!(
            authorization_and_proof(&h).unwrap_err().code,
            RefusalCode::MissingAuthorization
        );
        h.insert("authorization", "DPoP x".parse().unwrap());
        assert_eq!(authorization_and_proof(&h).unwrap(), ("DPoP x", None));
        h.insert("dpop", "p".parse().unwrap());
        assert_eq!(authorization_and_proof(&h).unwrap(), ("DPoP x", Some("p")));
        h.append("dpop", "q".parse().unwrap());
        assert_eq!(
            authorization_and_proof(&h).unwrap_err().code,
            RefusalCode::DpopMalformed
        );
        h.remove("dpop");
        h.append("authorization", "DPoP y".parse().unwrap());
        assert_eq!(
            authorization_and_proof(&h).unwrap_err().code,
            RefusalCode::MalformedAuthorization
        );
    }
}
