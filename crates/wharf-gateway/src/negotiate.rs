//! `Accept` header negotiation (PEP 691 for the simple API; JSON or HTML for errors).

use axum::http::HeaderValue;

/// The simple API's media types, in PyPI's server order (ties go to the earlier one).
pub(crate) const SIMPLE_OFFERS: [&str; 3] = [
    "text/html",
    "application/vnd.pypi.simple.v1+html",
    "application/vnd.pypi.simple.v1+json",
];

/// One entry of an `Accept` header.
#[derive(Debug, Clone, PartialEq)]
struct AcceptEntry {
    media_type: String,
    quality: f32,
}

fn parse_accept(header: &str) -> Vec<AcceptEntry> {
    header
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let media_type = parts.next()?.trim().to_ascii_lowercase();
            if media_type.is_empty() {
                return None;
            }
            let mut quality = 1.0f32;
            for parameter in parts {
                if let Some((key, value)) = parameter.split_once('=')
                    && key.trim().eq_ignore_ascii_case("q")
                {
                    quality = value.trim().parse().unwrap_or(0.0);
                }
            }
            Some(AcceptEntry {
                media_type,
                quality: quality.clamp(0.0, 1.0),
            })
        })
        .collect()
}

/// The quality the client gives `offer` (the most specific matching entry wins).
fn quality_of(entries: &[AcceptEntry], offer: &str) -> f32 {
    let (offer_type, _) = offer.split_once('/').unwrap_or((offer, ""));
    let mut best: Option<(u8, f32)> = None;
    for entry in entries {
        let specificity = if entry.media_type == offer {
            3
        } else if entry.media_type.strip_suffix("/*") == Some(offer_type) {
            2
        } else if entry.media_type == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(current, _)| specificity > current) {
            best = Some((specificity, entry.quality));
        }
    }
    best.map_or(0.0, |(_, quality)| quality)
}

/// Picks the best of `offers` for an `Accept` header; `None` if nothing is acceptable.
pub(crate) fn choose<'a>(accept: Option<&HeaderValue>, offers: &[&'a str]) -> Option<&'a str> {
    let Some(header) = accept.and_then(|value| value.to_str().ok()) else {
        return offers.first().copied();
    };
    let entries = parse_accept(header);
    if entries.is_empty() {
        return offers.first().copied();
    }
    let mut best: Option<(&str, f32)> = None;
    for offer in offers {
        let quality = quality_of(&entries, offer);
        if quality > 0.0 && best.is_none_or(|(_, current)| quality > current) {
            best = Some((offer, quality));
        }
    }
    best.map(|(offer, _)| offer)
}

/// The simple API format for a request: the `format` query parameter if it names an offer,
/// else `Accept` negotiation, else HTML (PyPI never answers 406 here).
pub(crate) fn simple_format(accept: Option<&HeaderValue>, format: Option<&str>) -> &'static str {
    // A `+` typed into a URL (`?format=application/vnd.pypi.simple.v1+json`, the form PEP 691
    // shows for browsing) arrives form-decoded as a space; no media type contains a space.
    if let Some(format) = format.map(|format| format.replace(' ', "+"))
        && let Some(offer) = SIMPLE_OFFERS.iter().find(|offer| **offer == format)
    {
        return offer;
    }
    choose(accept, &SIMPLE_OFFERS).unwrap_or(SIMPLE_OFFERS[0])
}

/// Tells whether an error body should be JSON rather than HTML.
pub(crate) fn prefers_json(accept: Option<&HeaderValue>) -> bool {
    accept.is_some()
        && choose(accept, &["text/html", "application/json"]) == Some("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(value))
    }

    #[test]
    fn pip_gets_json_when_it_prefers_it() {
        let pip = accept(
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01",
        );
        assert_eq!(
            simple_format(pip.as_ref(), None),
            "application/vnd.pypi.simple.v1+json"
        );
    }

    #[test]
    fn no_accept_or_unacceptable_gives_html() {
        assert_eq!(simple_format(None, None), "text/html");
        assert_eq!(
            simple_format(accept("text/plain").as_ref(), None),
            "text/html"
        );
    }

    #[test]
    fn ties_go_to_the_earlier_offer() {
        assert_eq!(simple_format(accept("*/*").as_ref(), None), "text/html");
        assert_eq!(
            simple_format(accept("application/*").as_ref(), None),
            "application/vnd.pypi.simple.v1+html"
        );
    }

    #[test]
    fn format_parameter_overrides_accept() {
        assert_eq!(
            simple_format(
                accept("text/html").as_ref(),
                Some("application/vnd.pypi.simple.v1+json")
            ),
            "application/vnd.pypi.simple.v1+json"
        );
        assert_eq!(simple_format(None, Some("bogus")), "text/html");
        assert_eq!(
            simple_format(None, Some("application/vnd.pypi.simple.v1 json")),
            "application/vnd.pypi.simple.v1+json"
        );
    }

    #[test]
    fn zero_quality_excludes_an_offer() {
        let header = accept("application/vnd.pypi.simple.v1+json, text/html;q=0");
        assert_eq!(
            simple_format(header.as_ref(), None),
            "application/vnd.pypi.simple.v1+json"
        );
    }

    #[test]
    fn uv_error_accept_prefers_json() {
        assert!(prefers_json(
            accept("application/json;q=0.9, text/plain;q=0.8, text/html;q=0.7").as_ref()
        ));
        assert!(!prefers_json(None));
        assert!(!prefers_json(accept("*/*").as_ref()));
    }
}
