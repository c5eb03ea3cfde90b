//! `entry_points.txt` checked as PyPI checks it (Warehouse `warehouse/utils/wheel.py`,
//! `_validate_entrypoints`): the file must be what Python's `configparser.ConfigParser`
//! (strict, `=` as the only delimiter, case-sensitive keys) reads without an error, and every
//! entry-point name in the `console_scripts` and `gui_scripts` groups must match
//! `[\w.-]+` in full, so no script name can carry a path (`../x`, `a/b`) or a space.
//! Values are not checked, as on PyPI.
//!
//! [`entry_points_valid`] follows configparser's line reader step by step (see
//! [`Reader::line`]): lines end at `\n` only; a line whose stripped text starts with `#` or
//! `;` is a comment; a line indented deeper than the option before it continues that
//! option's value (so it is never read as an option); `[header]` runs to the last `]` and
//! the text after it is ignored; `[DEFAULT]` holds options every group inherits; a
//! repeated group, a repeated name within a group, an option before any group, a line
//! without `=` and an empty name are errors. "Whitespace" is Python's (`str.isspace`, which
//! also counts `\x1c`–`\x1f`), and `\w` is Python's: a letter, a number (Unicode general
//! categories `L*`, `N*`) or `_`.

use std::collections::{HashMap, HashSet};

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The groups whose names become script files, so PyPI checks their names.
const SCRIPT_GROUPS: [&str; 2] = ["console_scripts", "gui_scripts"];

/// configparser's `default_section`: its options appear in every group.
const DEFAULT_SECTION: &str = "DEFAULT";

/// Whether `entry_points.txt` (its decoded text) is one PyPI accepts.
pub fn entry_points_valid(text: &str) -> bool {
    let mut reader = Reader::default();
    if text.split('\n').all(|line| reader.line(line).is_ok()) {
        reader.script_names_valid()
    } else {
        false
    }
}

/// Python's `str.isspace` (and the regex class `\s` on `str` patterns).
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `[\w.-]+` matched in full, `\w` as Python's `re` reads it on `str` patterns.
pub(crate) fn entry_point_name_valid(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| {
            c == '_'
                || c == '.'
                || c == '-'
                || matches!(
                    c.general_category_group(),
                    GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
                )
        })
}

/// A configparser error: the file is refused, whichever error it was.
#[derive(Debug)]
struct Invalid;

/// The state of configparser's reader between two lines.
#[derive(Debug, Default)]
struct Reader<'a> {
    /// Option names per group, `DEFAULT` included.
    sections: HashMap<&'a str, Vec<&'a str>>,
    /// Groups and `(group, name)` pairs seen, for the strict duplicate checks.
    seen_sections: HashSet<&'a str>,
    seen_options: HashSet<(&'a str, &'a str)>,
    /// The current group (`None` before the first header).
    section: Option<&'a str>,
    /// Whether the last option line named an option that a deeper line may continue.
    in_option: bool,
    /// The indentation (in characters) of the last header or option line.
    indent: usize,
}

impl<'a> Reader<'a> {
    /// One line, as configparser's `_read` takes it.
    fn line(&mut self, line: &'a str) -> Result<(), Invalid> {
        let value = py_strip(line);
        if value.is_empty() || value.starts_with(['#', ';']) {
            // Blank lines and comments: never the end of a value (`empty_lines_in_values`).
            return Ok(());
        }
        let indent = line.chars().take_while(|&c| is_py_space(c)).count();
        if self.section.is_some() && self.in_option && indent > self.indent {
            // A continuation of the last option's value.
            return Ok(());
        }
        self.indent = indent;
        if let Some(header) = section_header(value) {
            if header != DEFAULT_SECTION && !self.seen_sections.insert(header) {
                return Err(Invalid);
            }
            self.sections.entry(header).or_default();
            self.section = Some(header);
            self.in_option = false;
            return Ok(());
        }
        let section = self.section.ok_or(Invalid)?;
        let (name, _value) = value.split_once('=').ok_or(Invalid)?;
        let name = name.trim_end_matches(is_py_space);
        if name.is_empty() || !self.seen_options.insert((section, name)) {
            return Err(Invalid);
        }
        self.sections.entry(section).or_default().push(name);
        self.in_option = true;
        Ok(())
    }

    /// The names of the script groups (with the `DEFAULT` options they inherit).
    fn script_names_valid(&self) -> bool {
        let defaults = self.sections.get(DEFAULT_SECTION);
        SCRIPT_GROUPS
            .iter()
            .filter_map(|group| self.sections.get(group))
            .flat_map(|names| names.iter().chain(defaults.into_iter().flatten()))
            .all(|name| entry_point_name_valid(name))
    }
}

/// configparser's `\[(?P<header>.+)\]` matched at the start of the stripped line: from the
/// `[` to the last `]`, at least one character between them.
fn section_header(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('[')?;
    let end = inner.rfind(']')?;
    (end > 0).then(|| &inner[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Each case with the verdict Python's configparser and Warehouse's name rule give it
    /// (each checked against CPython 3.11's `configparser` with Warehouse's rule, as were
    /// 32 000 random files built from the same pieces: no disagreement).
    const CASES: &[(&str, bool)] = &[
        ("", true),
        ("# only a comment\n", true),
        (
            "[console_scripts]\ndemo = demo.cli:main\ndemo-x = demo:main [extra]\n",
            true,
        ),
        ("[console_scripts]\nDemo.Tool_2 = m:f\n", true),
        // Names PyPI refuses in the script groups …
        ("[console_scripts]\n../evil = m:f\n", false),
        ("[console_scripts]\na/b = m:f\n", false),
        ("[gui_scripts]\na\\b = m:f\n", false),
        ("[console_scripts]\ntwo words = m:f\n", false),
        ("[console_scripts]\nname: = m:f\n", false),
        ("[console_scripts]\nⒶ = m:f\n", false), // U+24B6 is a symbol, not a letter
        // … and accepts elsewhere, or in letters and numbers of any script.
        ("[other.group]\n../evil = m:f\n", true),
        ("[console_scripts]\nⅠ_é_٣ = m:f\n", true),
        // Values are not checked.
        ("[console_scripts]\ndemo = \n", true),
        ("[console_scripts]\ndemo = not a module\n", true),
        ("[a]\nx = m:f [extra\n", true),
        // Structure: configparser's errors.
        ("demo = demo:main\n", false),             // before any group
        ("[console_scripts]\ndemo\n", false),      // no '='
        ("[console_scripts]\n = m:f\n", false),    // empty name
        ("[console_scripts\ndemo = m:f\n", false), // no ']': an option before any group
        ("[]\ndemo = m:f\n", false),               // '[]' is not a header
        ("[a]\nx = m:f\n[a]\ny = m:g\n", false),   // repeated group
        ("[a]\nx = m:f\nx = m:g\n", false),        // repeated name
        ("[a]\nx = m:f\n[b]\nx = m:g\n", true),    // one name in two groups
        ("\u{feff}[a]\nx = m:f\n", false),         // a BOM is not whitespace
        // Continuations: a deeper line belongs to the value before it.
        ("[a]\nx = m:f\n  continued\n", true),
        ("[console_scripts]\nx = m:f\n  ../evil = m:g\n", true),
        ("[console_scripts]\n  x = m:f\n  ../evil = m:g\n", false),
        ("[console_scripts]\nx = m:f\n\n  ../evil = m:g\n", true),
        ("[console_scripts]\n  ../evil = m:g\n", false), // a first option is never one
        // Headers run to the last ']' and ignore what follows it.
        ("[console_scripts] trailing\n../evil = m:f\n", false),
        ("[ console_scripts ]\n../evil = m:f\n", true), // another group
        ("[]]\nx = m:f\n", true),
        // DEFAULT's names are inherited by the script groups.
        ("[DEFAULT]\n../evil = m:f\n", true),
        ("[DEFAULT]\n../evil = m:f\n[console_scripts]\n", false),
        ("[DEFAULT]\na = 1\n[DEFAULT]\nb = 1\n", true),
        ("[DEFAULT]\na = 1\n[DEFAULT]\na = 1\n", false),
        // Python's whitespace, '\n' as the only line end, comments anywhere.
        ("[console_scripts]\n\u{1c}name\u{1f} = m:f\n", true),
        ("[a]\rx = 1\n", true),
        ("[console_scripts]\r\nx = m:f\r\n", true),
        (
            "[console_scripts]\n  # x/y = indented comment\nz = m:f\n",
            true,
        ),
        ("; comment\n[console_scripts]\nx = m:f\n", true),
    ];

    #[test]
    fn entry_points_follow_configparser_and_warehouse() {
        for (text, expected) in CASES {
            assert_eq!(entry_points_valid(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn entry_point_names() {
        for name in ["a", "a.b", "a-b", "a_b", "A1", "é", "٣", "Ⅰ"] {
            assert!(entry_point_name_valid(name), "{name:?}");
        }
        for name in ["", "a b", "a/b", "..\\a", "a:b", "a=b", "Ⓐ", "a\u{301}"] {
            assert!(!entry_point_name_valid(name), "{name:?}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,12}"
    }

    fn group() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("console_scripts".to_owned()),
            Just("gui_scripts".to_owned()),
            "[a-z][a-z0-9_.]{0,10}",
        ]
    }

    /// Groups with unique names, each `name = value` (values anything on one line).
    fn well_formed() -> impl Strategy<Value = Vec<(String, Vec<(String, String)>)>> {
        proptest::collection::btree_map(
            group(),
            proptest::collection::btree_map(name(), "[^\n\r]{0,20}", 0..5),
            0..4,
        )
        .prop_map(|groups| {
            groups
                .into_iter()
                .map(|(group, names)| (group, names.into_iter().collect()))
                .collect()
        })
    }

    fn render(groups: &[(String, Vec<(String, String)>)]) -> String {
        let mut text = String::new();
        for (group, entries) in groups {
            text.push_str(&format!("[{group}]\n"));
            for (name, value) in entries {
                text.push_str(&format!("{name} = {}\n", value.trim()));
            }
        }
        text
    }

    proptest! {
        /// Every well-formed file with valid names passes.
        #[test]
        fn well_formed_files_pass(groups in well_formed()) {
            prop_assert!(entry_points_valid(&render(&groups)));
        }

        /// A script name with a character outside `[\w.-]` fails; elsewhere it passes.
        #[test]
        fn a_bad_script_name_fails(
            groups in well_formed(),
            bad in "[a-z]{0,3}[/\\\\ :!@(*]{1,2}[a-z]{0,3}",
            script in any::<bool>(),
        ) {
            let bad = bad.trim();
            prop_assume!(!bad.is_empty() && !entry_point_name_valid(bad));
            let group = if script { "console_scripts" } else { "x.plugins" };
            let mut groups = groups;
            groups.retain(|(name, _)| name != group);
            groups.push((group.to_owned(), vec![(bad.to_owned(), "m:f".to_owned())]));
            prop_assert_eq!(entry_points_valid(&render(&groups)), !script);
        }

        /// A group or a name given twice fails.
        #[test]
        fn duplicates_fail(groups in well_formed().prop_filter("a name", |g| g.iter().any(|(_, e)| !e.is_empty()))) {
            let mut repeated_name = groups.clone();
            let entries = &mut repeated_name.iter_mut().find(|(_, e)| !e.is_empty()).expect("a group").1;
            entries.push(entries[0].clone());
            prop_assert!(!entry_points_valid(&render(&repeated_name)));
            let mut repeated_group = groups.clone();
            repeated_group.push((groups[0].0.clone(), Vec::new()));
            prop_assert!(!entry_points_valid(&render(&repeated_group)));
        }

        /// Any text: an answer, never a panic.
        #[test]
        fn any_text_gets_an_answer(text in "(?s).{0,200}") {
            let _ = entry_points_valid(&text);
        }
    }
}
