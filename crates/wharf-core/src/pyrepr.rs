//! Python `repr()` of strings and lists, used to reproduce PyPI's message texts (here, in
//! macaroon caveat errors and in trusted-publishing claim errors).

/// Returns Python's `repr(s)` for a `str`.
pub fn repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Returns Python's `repr()` of a list of `str`.
pub fn repr_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| repr(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_python() {
        assert_eq!(repr("foo-1.0"), "'foo-1.0'");
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("it's \"x\""), "'it\\'s \"x\"'");
        assert_eq!(repr("a\\b"), "'a\\\\b'");
        assert_eq!(repr("a\nb\tc\rd"), "'a\\nb\\tc\\rd'");
        assert_eq!(repr("\x00\x7f"), "'\\x00\\x7f'");
        assert_eq!(repr("\u{85}"), "'\\x85'");
        assert_eq!(repr("é"), "'é'");
        assert_eq!(repr(""), "''");
    }

    #[test]
    fn lists_like_python() {
        assert_eq!(repr_list(&["a", "b"]), "['a', 'b']");
        assert_eq!(repr_list::<&str>(&[]), "[]");
    }
}
