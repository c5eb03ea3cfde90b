//! PyPI's first-party caveats (`warehouse/macaroons/caveats/`): the compact
//! JSON wire form `[tag, field1, …]`, the legacy dict forms, and evaluation.

use serde_json::Value;

use crate::verify::VerificationContext;
use wharf_core::pyrepr::repr as py_repr;

/// A PyPI caveat.
///
/// Wire form (Warehouse `serialize`): compact JSON array `[tag, fields…]`, in
/// field declaration order, no whitespace, non-ASCII escaped as `\uXXXX`,
/// object keys sorted.
///
/// | tag | variant |
/// |---|---|
/// | 0 | [`Caveat::Expiration`] `[0,expires_at,not_before]` |
/// | 1 | [`Caveat::ProjectName`] `[1,[names…]]` |
/// | 2 | [`Caveat::ProjectId`] `[2,[ids…]]` |
/// | 3 | [`Caveat::RequestUser`] `[3,"user-id"]` |
/// | 4 | [`Caveat::OidcPublisher`] `[4,"publisher-id",claims-or-null]` |
///
/// Legacy dict forms are parsed onto the same variants:
/// `{"exp":…,"nbf":…}` → `Expiration`, `{"version":1,"permissions":{"projects":[…]}}`
/// → `ProjectName`, `{"project_ids":[…]}` → `ProjectId`, and
/// `{"version":1,"permissions":"user"}` → [`Caveat::LegacyUser`].
#[derive(Debug, Clone, PartialEq)]
pub enum Caveat {
    /// Valid iff `not_before <= now < expires_at`. Failure: `token is expired`.
    Expiration {
        /// First second at which the token is no longer valid.
        expires_at: i64,
        /// First second at which the token is valid.
        not_before: i64,
    },
    /// Valid only for projects whose normalized name is listed.
    ProjectName(Vec<String>),
    /// Valid only for projects whose id (UUID text) is listed.
    ProjectId(Vec<String>),
    /// Valid only when the request is authenticated as this user id.
    RequestUser(String),
    /// Valid only for an OIDC (Trusted Publishing) identity with this publisher id.
    OidcPublisher {
        /// The publisher's id (UUID text).
        publisher_id: String,
        /// Deprecated claims field; `None` serializes as `null`. Not evaluated.
        oidc_claims: Option<Value>,
    },
    /// Legacy `{"version":1,"permissions":"user"}`: Warehouse turns it into a
    /// `RequestUser` for whichever user the request is authenticated as, so
    /// it holds whenever there is a user; without one it fails with
    /// `caveat must be an array` (Warehouse's adaptation yields nothing).
    LegacyUser,
}

/// How parsing a caveat failed, mirroring what Warehouse does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseFailure {
    /// A `CaveatError`: recorded as a failure text, evaluation continues.
    Rejected(String),
    /// Any other exception inside pymacaroons' verifier (invalid UTF-8 or
    /// JSON, an unhashable tag): evaluation of later caveats stops.
    Aborted(String),
}

impl ParseFailure {
    fn into_message(self) -> String {
        match self {
            ParseFailure::Rejected(m) | ParseFailure::Aborted(m) => m,
        }
    }
}

fn rejected<T>(msg: &str) -> Result<T, ParseFailure> {
    Err(ParseFailure::Rejected(msg.to_owned()))
}

const NOT_AN_ARRAY: &str = "caveat must be an array";
const NOT_ENOUGH: &str = "Not enough values";
const INVALID_VALUES: &str = "invalid values for fields";

/// A legacy dict caveat adapted to array form (`_legacy.adapt`).
enum Adapted {
    Array(Vec<Value>),
    User,
}

/// Python's `value == 1` for a JSON value (`1`, `1.0` and `true` all qualify).
fn py_eq_one(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::Bool(b) => *b,
        _ => false,
    }
}

fn adapt(map: &serde_json::Map<String, Value>) -> Option<Adapted> {
    if map.get("version").is_some_and(py_eq_one) {
        return match map.get("permissions") {
            Some(Value::String(s)) if s == "user" => Some(Adapted::User),
            Some(Value::Object(p)) => p
                .get("projects")
                .map(|projects| Adapted::Array(vec![Value::from(1), projects.clone()])),
            _ => None,
        };
    }
    if let (Some(exp), Some(nbf)) = (map.get("exp"), map.get("nbf")) {
        return Some(Adapted::Array(vec![
            Value::from(0),
            exp.clone(),
            nbf.clone(),
        ]));
    }
    map.get("project_ids")
        .map(|ids| Adapted::Array(vec![Value::from(2), ids.clone()]))
}

/// Resolve a tag the way `dict.get(tag)` does in Python: `1`, `1.0` and
/// `true` are the same key; lists and objects are unhashable (an exception).
fn resolve_tag(tag: &Value) -> Result<Option<i64>, ParseFailure> {
    Ok(match tag {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(i),
            None => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=4.0).contains(f))
                .map(|f| f as i64),
        },
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Null | Value::String(_) => None,
        Value::Array(_) | Value::Object(_) => {
            return Err(ParseFailure::Aborted("unhashable caveat tag".to_owned()));
        }
    })
}

/// `str(tag)` in Python, for the unknown-tag message.
fn py_str(tag: &Value) -> String {
    match tag {
        Value::Null => "None".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// pydantic `StrictInt` (no bools, no floats). Integers beyond `i64` are
/// refused too (Python would accept them; PyPI never mints them).
fn strict_int(v: &Value) -> Result<i64, ParseFailure> {
    v.as_i64()
        .ok_or_else(|| ParseFailure::Rejected(INVALID_VALUES.to_owned()))
}

fn strict_str(v: &Value) -> Result<String, ParseFailure> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => rejected(INVALID_VALUES),
    }
}

fn str_list(v: &Value) -> Result<Vec<String>, ParseFailure> {
    match v {
        Value::Array(items) => items.iter().map(strict_str).collect(),
        _ => rejected(INVALID_VALUES),
    }
}

impl Caveat {
    /// The Warehouse tag of this caveat (`LegacyUser` has none and reports 3,
    /// the `RequestUser` it stands for).
    pub fn tag(&self) -> u8 {
        match self {
            Caveat::Expiration { .. } => 0,
            Caveat::ProjectName(_) => 1,
            Caveat::ProjectId(_) => 2,
            Caveat::RequestUser(_) | Caveat::LegacyUser => 3,
            Caveat::OidcPublisher { .. } => 4,
        }
    }

    /// Parse a caveat id. The error text is what Warehouse would report
    /// (`caveat has unknown tag: 9`, `caveat must be an array`,
    /// `caveat array cannot be empty`, `Not enough values`,
    /// `invalid values for fields`) or, for input that is not UTF-8 JSON, a
    /// description of that.
    ///
    /// Fields beyond those a caveat declares are ignored, as in Warehouse.
    pub fn parse(bytes: &[u8]) -> Result<Caveat, String> {
        parse_internal(bytes).map_err(ParseFailure::into_message)
    }

    /// Warehouse's compact JSON serialization (`json.dumps(…, sort_keys=True,
    /// separators=(",", ":"))`, ASCII-only output).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        match self {
            Caveat::Expiration {
                expires_at,
                not_before,
            } => {
                out.push_str(&format!("[0,{expires_at},{not_before}]"));
            }
            Caveat::ProjectName(names) => write_tag_list(&mut out, 1, names),
            Caveat::ProjectId(ids) => write_tag_list(&mut out, 2, ids),
            Caveat::RequestUser(user) => {
                out.push_str("[3,");
                write_py_str(&mut out, user);
                out.push(']');
            }
            Caveat::OidcPublisher {
                publisher_id,
                oidc_claims,
            } => {
                out.push_str("[4,");
                write_py_str(&mut out, publisher_id);
                out.push(',');
                write_py_json(&mut out, oidc_claims.as_ref().unwrap_or(&Value::Null));
                out.push(']');
            }
            Caveat::LegacyUser => out.push_str(r#"{"permissions":"user","version":1}"#),
        }
        out.into_bytes()
    }

    /// Evaluate this caveat against a request, returning Warehouse's failure
    /// text. The OIDC publisher's project membership is not known here; see
    /// [`crate::verify_with_publisher_projects`].
    pub fn check(&self, ctx: &VerificationContext<'_>) -> Result<(), String> {
        self.check_with(ctx, None)
    }

    pub(crate) fn check_with(
        &self,
        ctx: &VerificationContext<'_>,
        publisher_project_ids: Option<&[&str]>,
    ) -> Result<(), String> {
        match self {
            Caveat::Expiration {
                expires_at,
                not_before,
            } => {
                if ctx.now < *not_before || ctx.now >= *expires_at {
                    return Err("token is expired".to_owned());
                }
            }
            Caveat::ProjectName(names) => {
                let project = ctx.project.ok_or_else(outside_project)?;
                if !names.iter().any(|n| n == project.normalized_name) {
                    return Err(not_valid_for(project.normalized_name));
                }
            }
            Caveat::ProjectId(ids) => {
                let project = ctx.project.ok_or_else(outside_project)?;
                if !ids.iter().any(|i| i == project.id) {
                    return Err(not_valid_for(project.normalized_name));
                }
            }
            Caveat::RequestUser(user_id) => match ctx.user_id {
                None => return Err("token with user restriction without a user".to_owned()),
                Some(current) if current != user_id => {
                    return Err("current user does not match user restriction in token".to_owned());
                }
                Some(_) => {}
            },
            Caveat::OidcPublisher { publisher_id, .. } => {
                let Some(current) = ctx.oidc_publisher_id else {
                    return Err(
                        "OIDC scoped token used outside of an OIDC identified request".to_owned(),
                    );
                };
                if current != publisher_id {
                    return Err(
                        "current OIDC publisher does not match publisher restriction in token"
                            .to_owned(),
                    );
                }
                let Some(project) = ctx.project else {
                    return Err("OIDC scoped token used outside of a project context".to_owned());
                };
                if let Some(ids) = publisher_project_ids
                    && !ids.contains(&project.id)
                {
                    return Err(format!(
                        "OIDC scoped token is not valid for project '{}'",
                        project.normalized_name
                    ));
                }
            }
            Caveat::LegacyUser => {
                if ctx.user_id.is_none() {
                    return Err(NOT_AN_ARRAY.to_owned());
                }
            }
        }
        Ok(())
    }
}

fn outside_project() -> String {
    "project-scoped token used outside of a project context".to_owned()
}

fn not_valid_for(name: &str) -> String {
    format!(
        "project-scoped token is not valid for project: {}",
        py_repr(name)
    )
}

pub(crate) fn parse_internal(bytes: &[u8]) -> Result<Caveat, ParseFailure> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ParseFailure::Aborted("caveat is not valid UTF-8".to_owned()))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|_| ParseFailure::Aborted("caveat is not valid JSON".to_owned()))?;
    from_value(value)
}

fn from_value(value: Value) -> Result<Caveat, ParseFailure> {
    let items = match value {
        Value::Array(items) => items,
        Value::Object(map) => match adapt(&map) {
            Some(Adapted::Array(items)) => items,
            Some(Adapted::User) => return Ok(Caveat::LegacyUser),
            None => return rejected(NOT_AN_ARRAY),
        },
        _ => return rejected(NOT_AN_ARRAY),
    };
    let Some((tag, fields)) = items.split_first() else {
        return rejected("caveat array cannot be empty");
    };
    let field = |i: usize| fields.get(i);
    match resolve_tag(tag)? {
        Some(0) => {
            let (Some(exp), Some(nbf)) = (field(0), field(1)) else {
                return rejected(NOT_ENOUGH);
            };
            Ok(Caveat::Expiration {
                expires_at: strict_int(exp)?,
                not_before: strict_int(nbf)?,
            })
        }
        Some(1) => Ok(Caveat::ProjectName(str_list(
            field(0).ok_or_else(|| ParseFailure::Rejected(NOT_ENOUGH.to_owned()))?,
        )?)),
        Some(2) => {
            Ok(Caveat::ProjectId(str_list(field(0).ok_or_else(|| {
                ParseFailure::Rejected(NOT_ENOUGH.to_owned())
            })?)?))
        }
        Some(3) => Ok(Caveat::RequestUser(strict_str(
            field(0).ok_or_else(|| ParseFailure::Rejected(NOT_ENOUGH.to_owned()))?,
        )?)),
        Some(4) => {
            let publisher_id =
                strict_str(field(0).ok_or_else(|| ParseFailure::Rejected(NOT_ENOUGH.to_owned()))?)?;
            let oidc_claims = match field(1) {
                None | Some(Value::Null) => None,
                Some(claims @ Value::Object(_)) => Some(claims.clone()),
                Some(_) => return rejected(INVALID_VALUES),
            };
            Ok(Caveat::OidcPublisher {
                publisher_id,
                oidc_claims,
            })
        }
        _ => Err(ParseFailure::Rejected(format!(
            "caveat has unknown tag: {}",
            py_str(tag)
        ))),
    }
}

fn write_tag_list(out: &mut String, tag: u8, items: &[String]) {
    out.push('[');
    out.push_str(&tag.to_string());
    out.push_str(",[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_py_str(out, item);
    }
    out.push_str("]]");
}

/// A JSON string as Python's `json.dumps` writes it with `ensure_ascii=True`.
fn write_py_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Any JSON value, compact with sorted keys, as Python writes it. Floats use
/// `serde_json`'s shortest form, which can differ from Python's `repr` in
/// exponent notation (Warehouse never puts floats in caveats).
fn write_py_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_py_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_py_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_py_str(out, k);
                out.push(':');
                write_py_json(out, val);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::ProjectRef;
    use proptest::prelude::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn serialization_matches_warehouse_tests() {
        // tests/unit/macaroons/test_caveats.py::test_serialization
        let cases: Vec<(Caveat, &[u8])> = vec![
            (
                Caveat::Expiration {
                    expires_at: 50,
                    not_before: 10,
                },
                b"[0,50,10]",
            ),
            (
                Caveat::ProjectName(s(&["foo", "bar"])),
                br#"[1,["foo","bar"]]"#,
            ),
            (
                Caveat::ProjectId(s(&["123uuid", "456uuid"])),
                br#"[2,["123uuid","456uuid"]]"#,
            ),
            (Caveat::RequestUser("a uuid".into()), br#"[3,"a uuid"]"#),
            (
                Caveat::OidcPublisher {
                    publisher_id: "p".into(),
                    oidc_claims: None,
                },
                br#"[4,"p",null]"#,
            ),
            (
                Caveat::OidcPublisher {
                    publisher_id: "p".into(),
                    oidc_claims: Some(
                        json!({"sha": "abc", "ref": "refs/heads/main", "n": [1, true]}),
                    ),
                },
                br#"[4,"p",{"n":[1,true],"ref":"refs/heads/main","sha":"abc"}]"#,
            ),
            (
                Caveat::Expiration {
                    expires_at: 1_700_000_900,
                    not_before: 1_700_000_000,
                },
                b"[0,1700000900,1700000000]",
            ),
            (Caveat::ProjectName(vec![]), b"[1,[]]"),
            (Caveat::LegacyUser, br#"{"permissions":"user","version":1}"#),
        ];
        for (caveat, expected) in cases {
            assert_eq!(
                caveat.to_bytes(),
                expected,
                "{}",
                String::from_utf8_lossy(expected)
            );
            assert_eq!(Caveat::parse(expected), Ok(caveat));
        }
    }

    #[test]
    fn python_string_escapes() {
        let c = Caveat::RequestUser("é\"\\\n\u{1}\u{7f}😀/".into());
        assert_eq!(
            String::from_utf8(c.to_bytes()).expect("ascii"),
            r#"[3,"\u00e9\"\\\n\u0001\u007f\ud83d\ude00/"]"#
        );
        assert_eq!(Caveat::parse(&c.to_bytes()), Ok(c));
    }

    #[test]
    fn valid_deserialization_from_warehouse_tests() {
        let cases: Vec<(&[u8], Caveat)> = vec![
            (
                b"[0,50,10]",
                Caveat::Expiration {
                    expires_at: 50,
                    not_before: 10,
                },
            ),
            (br#"[4,"somepublisher"]"#, oidc("somepublisher")),
            (
                br#"{"exp": 50, "nbf": 10}"#,
                Caveat::Expiration {
                    expires_at: 50,
                    not_before: 10,
                },
            ),
            (
                br#"{"version": 1, "permissions": {"projects": ["foo", "bar"]}}"#,
                Caveat::ProjectName(s(&["foo", "bar"])),
            ),
            (
                br#"{"project_ids": ["123uuid", "456uuid"]}"#,
                Caveat::ProjectId(s(&["123uuid", "456uuid"])),
            ),
            (
                br#"{"version": 1, "permissions": "user"}"#,
                Caveat::LegacyUser,
            ),
            // pypitoken writes with ", " separators
            (br#"[1, ["a", "b"]]"#, Caveat::ProjectName(s(&["a", "b"]))),
            // extra fields are ignored, as by Warehouse's __deserialize__
            (br#"[3,"u","extra"]"#, Caveat::RequestUser("u".into())),
            // Python dict lookup: true == 1 == 1.0
            (br#"[true,["x"]]"#, Caveat::ProjectName(s(&["x"]))),
            (br#"[1.0,["x"]]"#, Caveat::ProjectName(s(&["x"]))),
            (
                br#"{"version": 1.0, "permissions": "user"}"#,
                Caveat::LegacyUser,
            ),
        ];
        for (data, expected) in cases {
            assert_eq!(
                Caveat::parse(data),
                Ok(expected),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    fn oidc(id: &str) -> Caveat {
        Caveat::OidcPublisher {
            publisher_id: id.into(),
            oidc_claims: None,
        }
    }

    #[test]
    fn invalid_deserialization_from_warehouse_tests() {
        let cases: Vec<(&[u8], &str)> = vec![
            (br#"{"version": 1}"#, NOT_AN_ARRAY),
            (br#"{"version": 1, "permissions": []}"#, NOT_AN_ARRAY),
            (
                br#"{"version": 1, "permissions": {"otherkey": "foo"}}"#,
                NOT_AN_ARRAY,
            ),
            (br#"{"version": 1, "permissions": null}"#, NOT_AN_ARRAY),
            (br#"{"exp": 1}"#, NOT_AN_ARRAY),
            (br#"{"nbf": 1}"#, NOT_AN_ARRAY),
            (br#"{}"#, NOT_AN_ARRAY),
            (br#"[0,"50",10]"#, INVALID_VALUES),
            (br#"[0,5]"#, NOT_ENOUGH),
            (br#"[0,"5"]"#, NOT_ENOUGH),
            (br#""foo""#, NOT_AN_ARRAY),
            (b"null", NOT_AN_ARRAY),
            (b"7", NOT_AN_ARRAY),
            (b"[]", "caveat array cannot be empty"),
            (b"[9999999]", "caveat has unknown tag: 9999999"),
            (br#"["x"]"#, "caveat has unknown tag: x"),
            (b"[null]", "caveat has unknown tag: None"),
            (b"[-1]", "caveat has unknown tag: -1"),
            (b"[1.5]", "caveat has unknown tag: 1.5"),
            (b"[0,1.0,0]", INVALID_VALUES),
            (b"[0,true,0]", INVALID_VALUES),
            (b"[0,18446744073709551615,0]", INVALID_VALUES),
            (b"[1]", NOT_ENOUGH),
            (br#"[1,"foo"]"#, INVALID_VALUES),
            (br#"[1,["foo",1]]"#, INVALID_VALUES),
            (br#"[2,{"a":1}]"#, INVALID_VALUES),
            (br#"[3,5]"#, INVALID_VALUES),
            (br#"[3]"#, NOT_ENOUGH),
            (br#"[4]"#, NOT_ENOUGH),
            (br#"[4,"p",[]]"#, INVALID_VALUES),
            (br#"[4,"p","claims"]"#, INVALID_VALUES),
            (br#"{"project_ids": "abc"}"#, INVALID_VALUES),
            (br#"{"exp": "1", "nbf": 0}"#, INVALID_VALUES),
        ];
        for (data, expected) in cases {
            assert_eq!(
                parse_internal(data),
                Err(ParseFailure::Rejected(expected.to_owned())),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn aborting_parse_failures() {
        for data in [
            &b"\xff"[..],
            b"",
            b"[1,",
            b"not json",
            b"[[1],2]",
            br#"[{"a":1}]"#,
        ] {
            assert!(
                matches!(parse_internal(data), Err(ParseFailure::Aborted(_))),
                "{}",
                String::from_utf8_lossy(data)
            );
            assert!(Caveat::parse(data).is_err());
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Caveat::parse(deep.as_bytes()).is_err());
    }

    fn ctx<'a>() -> VerificationContext<'a> {
        VerificationContext {
            now: 1000,
            project: Some(ProjectRef {
                normalized_name: "foo",
                id: "id-foo",
            }),
            user_id: Some("u1"),
            oidc_publisher_id: None,
        }
    }

    #[test]
    fn expiration() {
        let c = |expires_at, not_before| Caveat::Expiration {
            expires_at,
            not_before,
        };
        assert_eq!(c(1001, 1000).check(&ctx()), Ok(()));
        assert_eq!(c(2000, 0).check(&ctx()), Ok(()));
        let expired = Err("token is expired".to_owned());
        assert_eq!(c(1000, 0).check(&ctx()), expired);
        assert_eq!(c(2000, 1001).check(&ctx()), expired);
        assert_eq!(c(10, 20).check(&ctx()), expired);
    }

    #[test]
    fn project_name_and_id() {
        assert_eq!(
            Caveat::ProjectName(s(&["bar", "foo"])).check(&ctx()),
            Ok(())
        );
        assert_eq!(Caveat::ProjectId(s(&["id-foo"])).check(&ctx()), Ok(()));
        let wrong = Err("project-scoped token is not valid for project: 'foo'".to_owned());
        assert_eq!(Caveat::ProjectName(s(&["bar"])).check(&ctx()), wrong);
        assert_eq!(Caveat::ProjectName(vec![]).check(&ctx()), wrong);
        assert_eq!(Caveat::ProjectId(s(&["foo"])).check(&ctx()), wrong);
        let no_project = VerificationContext {
            project: None,
            ..ctx()
        };
        let outside = Err("project-scoped token used outside of a project context".to_owned());
        assert_eq!(Caveat::ProjectName(s(&["foo"])).check(&no_project), outside);
        assert_eq!(
            Caveat::ProjectId(s(&["id-foo"])).check(&no_project),
            outside
        );
    }

    #[test]
    fn request_user() {
        assert_eq!(Caveat::RequestUser("u1".into()).check(&ctx()), Ok(()));
        assert_eq!(
            Caveat::RequestUser("u2".into()).check(&ctx()),
            Err("current user does not match user restriction in token".to_owned())
        );
        let anon = VerificationContext {
            user_id: None,
            ..ctx()
        };
        assert_eq!(
            Caveat::RequestUser("u1".into()).check(&anon),
            Err("token with user restriction without a user".to_owned())
        );
        assert_eq!(Caveat::LegacyUser.check(&ctx()), Ok(()));
        assert_eq!(
            Caveat::LegacyUser.check(&anon),
            Err(NOT_AN_ARRAY.to_owned())
        );
    }

    #[test]
    fn oidc_publisher() {
        let c = oidc("pub1");
        assert_eq!(
            c.check(&ctx()),
            Err("OIDC scoped token used outside of an OIDC identified request".to_owned())
        );
        let as_pub = |id| VerificationContext {
            user_id: None,
            oidc_publisher_id: Some(id),
            ..ctx()
        };
        assert_eq!(c.check(&as_pub("pub1")), Ok(()));
        assert_eq!(
            c.check(&as_pub("pub2")),
            Err("current OIDC publisher does not match publisher restriction in token".to_owned())
        );
        let no_project = VerificationContext {
            project: None,
            ..as_pub("pub1")
        };
        assert_eq!(
            c.check(&no_project),
            Err("OIDC scoped token used outside of a project context".to_owned())
        );
        assert_eq!(c.check_with(&as_pub("pub1"), Some(&["id-foo"])), Ok(()));
        assert_eq!(
            c.check_with(&as_pub("pub1"), Some(&["id-bar"])),
            Err("OIDC scoped token is not valid for project 'foo'".to_owned())
        );
    }

    fn caveat_strategy() -> impl Strategy<Value = Caveat> {
        let text = "\\PC{0,12}";
        prop_oneof![
            (any::<i64>(), any::<i64>()).prop_map(|(expires_at, not_before)| {
                Caveat::Expiration {
                    expires_at,
                    not_before,
                }
            }),
            proptest::collection::vec(text, 0..4).prop_map(Caveat::ProjectName),
            proptest::collection::vec(text, 0..4).prop_map(Caveat::ProjectId),
            text.prop_map(Caveat::RequestUser),
            (
                text,
                proptest::option::of(proptest::collection::btree_map(text, text, 0..3))
            )
                .prop_map(|(publisher_id, claims)| Caveat::OidcPublisher {
                    publisher_id,
                    oidc_claims: claims.map(|m| json!(m)),
                }),
            Just(Caveat::LegacyUser),
        ]
    }

    proptest! {
        #[test]
        fn to_bytes_parse_round_trip(c in caveat_strategy()) {
            let bytes = c.to_bytes();
            prop_assert!(bytes.is_ascii());
            prop_assert_eq!(Caveat::parse(&bytes), Ok(c));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Caveat::parse(&bytes);
        }

        #[test]
        fn parse_json_like_never_panics(s in "[\\[\\]{}0-9,\":a-z .-]{0,64}") {
            if let Ok(c) = Caveat::parse(s.as_bytes()) {
                let _ = c.check(&ctx());
                let _ = c.to_bytes();
            }
        }
    }
}
