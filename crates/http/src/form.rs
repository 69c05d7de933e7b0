//! Strict `application/x-www-form-urlencoded` bodies for the token endpoints (RFC 6749 §3.2,
//! Appendix B): UTF-8 only, a repeated parameter is an error, an empty one counts as absent.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;

use crate::oauth_error::OAuthError;

/// The one media type the token endpoints accept.
pub(crate) const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The longest parameter name echoed back in an error description.
const MAX_ECHOED_NAME: usize = 64;

/// The parameters of a form body.
///
/// Invariant: every name appears once and every value is non-empty UTF-8.
#[derive(Default)]
pub(crate) struct FormParams(BTreeMap<String, String>);

/// Why a form body was refused; each becomes `invalid_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FormError {
    /// A parameter appeared more than once (RFC 6749 §3.1).
    Repeated(String),
    /// A name or value is not UTF-8 once percent-decoded.
    NotUtf8,
}

impl std::fmt::Display for FormError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Repeated(name) => write!(
                formatter,
                "parameter '{name}' must not be sent more than once"
            ),
            Self::NotUtf8 => formatter.write_str("the form body must be UTF-8"),
        }
    }
}

impl FormParams {
    /// Parses a form body. Parameters without a value are dropped before repeats are counted,
    /// since RFC 6749 §3.2 says they "MUST be treated as if they were omitted".
    pub(crate) fn parse(body: &[u8]) -> Result<Self, FormError> {
        let mut params = BTreeMap::new();
        for pair in body
            .split(|byte| *byte == b'&')
            .filter(|pair| !pair.is_empty())
        {
            let (name, value) = match pair.iter().position(|byte| *byte == b'=') {
                Some(equals) => (&pair[..equals], &pair[equals + 1..]),
                None => (pair, &[][..]),
            };
            let value = decode(value)?;
            if value.is_empty() {
                continue;
            }
            let name = decode(name)?;
            if params.contains_key(&name) {
                return Err(FormError::Repeated(
                    name.chars().take(MAX_ECHOED_NAME).collect(),
                ));
            }
            params.insert(name, value);
        }
        Ok(Self(params))
    }

    /// Removes and returns the parameter `name`, if it was sent with a value.
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }
}

/// Decodes one form-encoded component: `+` is a space, `%XX` a byte; a `%` not followed by
/// two hex digits stays literal, as in the WHATWG URL standard. The bytes must be UTF-8.
pub(crate) fn decode(component: &[u8]) -> Result<String, FormError> {
    let mut bytes = Vec::with_capacity(component.len());
    let mut index = 0;
    while let Some(&byte) = component.get(index) {
        let escaped = match (byte, component.get(index + 1), component.get(index + 2)) {
            (b'%', Some(&high), Some(&low)) => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match (byte, escaped) {
            (_, Some((high, low))) => {
                bytes.push(high << 4 | low);
                index += 3;
            }
            (b'+', None) => {
                bytes.push(b' ');
                index += 1;
            }
            (other, None) => {
                bytes.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| FormError::NotUtf8)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// Whether the request declares a form body; a `charset` parameter, if any, must be UTF-8.
pub(crate) fn is_form_content_type(headers: &HeaderMap) -> bool {
    let Some(Ok(content_type)) = headers.get(CONTENT_TYPE).map(|value| value.to_str()) else {
        return false;
    };
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case(FORM_CONTENT_TYPE)
        && parts
            .filter_map(|parameter| parameter.split_once('='))
            .all(|(name, value)| {
                !name.trim().eq_ignore_ascii_case("charset")
                    || value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
}

/// A form body on a token endpoint; every failure is answered in the OAuth error shape.
pub(crate) struct OAuthForm(pub(crate) FormParams);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_form_content_type(request.headers()) {
            return Err(OAuthError::InvalidRequest(format!(
                "the request body must be {FORM_CONTENT_TYPE}"
            )));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    OAuthError::PayloadTooLarge
                } else {
                    OAuthError::InvalidRequest("the request body could not be read".to_owned())
                }
            })?;
        FormParams::parse(&body)
            .map(Self)
            .map_err(|error| OAuthError::InvalidRequest(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<BTreeMap<String, String>, FormError> {
        FormParams::parse(body.as_bytes()).map(|params| params.0)
    }

    #[test]
    fn plus_and_percent_escapes_are_decoded() {
        let params = parse("username=al%69ce&password=a+b%2Bc%25&scope=profile%3Aread").unwrap();

        assert_eq!(params["username"], "alice");
        assert_eq!(params["password"], "a b+c%");
        assert_eq!(params["scope"], "profile:read");
    }

    #[test]
    fn a_repeated_parameter_is_refused_but_an_empty_one_is_absent() {
        assert_eq!(parse("a=1&a=2"), Err(FormError::Repeated("a".into())));
        assert_eq!(
            parse("a=&a=2&b&&c=")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![("a".into(), "2".into())]
        );
    }

    #[test]
    fn non_utf8_after_decoding_is_refused() {
        assert_eq!(parse("password=%FF%FE"), Err(FormError::NotUtf8));
        assert_eq!(
            FormParams::parse(b"password=\xff").map(|_| ()),
            Err(FormError::NotUtf8)
        );
    }

    #[test]
    fn a_stray_percent_stays_literal() {
        assert_eq!(parse("a=100%&b=%zz%4").unwrap()["b"], "%zz%4");
    }

    #[test]
    fn only_the_form_media_type_with_a_utf8_charset_counts() {
        let content_type = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            is_form_content_type(&headers)
        };

        assert!(content_type("application/x-www-form-urlencoded"));
        assert!(content_type(
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
        ));
        assert!(content_type(
            "application/x-www-form-urlencoded;charset=\"utf-8\""
        ));
        assert!(!content_type(
            "application/x-www-form-urlencoded; charset=latin1"
        ));
        assert!(!content_type("application/json"));
        assert!(!is_form_content_type(&HeaderMap::new()));
    }
}

/// Fuzz-style properties of the form parser: hostile bytes never panic it, well-formed input
/// round-trips, and a repeated parameter is always refused.
#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn encode(pairs: &[(&str, &str)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    /// Parameter names and non-empty values, any Unicode, at most a few of them.
    fn params() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map(any::<String>(), ".+", 0..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic_the_parser(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = FormParams::parse(&body);
        }

        #[test]
        fn bytes_made_of_form_syntax_never_panic_the_parser(body in "[a-z=&%+0-9A-F\u{80}-\u{10FFFF}]{0,200}") {
            let _ = FormParams::parse(body.as_bytes());
        }

        #[test]
        fn any_text_survives_encoding_and_decoding(text in any::<String>()) {
            let encoded: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();

            prop_assert_eq!(decode(encoded.as_bytes()), Ok(text));
        }

        #[test]
        fn well_formed_forms_round_trip(params in params()) {
            let pairs: Vec<(&str, &str)> =
                params.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();

            let parsed = FormParams::parse(encode(&pairs).as_bytes()).map(|parsed| parsed.0);

            prop_assert_eq!(parsed, Ok(params));
        }

        #[test]
        fn a_repeated_parameter_is_refused_wherever_it_appears(
            params in params(),
            name in ".{1,80}",
            first in ".+",
            second in ".+",
            positions in (0_usize..16, 0_usize..16),
        ) {
            let mut pairs: Vec<(&str, &str)> = params
                .iter()
                .filter(|(other, _)| **other != name)
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            pairs.insert(positions.0 % (pairs.len() + 1), (&name, &first));
            pairs.insert(positions.1 % (pairs.len() + 1), (&name, &second));

            let parsed = FormParams::parse(encode(&pairs).as_bytes()).map(|parsed| parsed.0);

            prop_assert_eq!(
                parsed,
                Err(FormError::Repeated(name.chars().take(MAX_ECHOED_NAME).collect()))
            );
        }

        #[test]
        fn an_empty_repeat_counts_as_absent(params in params(), name in ".{1,20}", value in ".+") {
            let mut pairs: Vec<(&str, &str)> = params
                .iter()
                .filter(|(other, _)| **other != name)
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            pairs.push((&name, ""));
            pairs.push((&name, &value));

            let parsed = FormParams::parse(encode(&pairs).as_bytes()).map(|mut parsed| parsed.take(&name));

            prop_assert_eq!(parsed, Ok(Some(value)));
        }
    }
}
