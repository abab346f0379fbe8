//! serde_yaml's errors turned into messages that hold no value.
//!
//! serde_yaml's own text quotes the scalar it choked on
//! (``invalid type: integer `123456789012345678901234567890` ``,
//! `invalid value: string "hunter2", expected a boolean`), and a plaintext
//! `vault.yml` or an `import` file is all secrets. So no part of that text
//! reaches a message: [`describe`] picks a fixed category from it (a table
//! of libyaml's own problem texts, which are constants, and the few shapes
//! of serde's messages), and adds only what locates the problem: line and
//! column, the path of keys to it if it is a valid vault path, and the key
//! of a duplicate entry if it is a valid key (keys are names, which `list`
//! shows anyway). Anything not recognised becomes "not valid YAML" with its
//! location.

use crate::vault::path::{KeyPath, validate_key};

/// libyaml's problem texts (constants in its scanner, parser and reader):
/// the message starts with one of them, or with a serde message below.
const LIBYAML_PROBLEMS: &[&str] = &[
    "block sequence entries are not allowed in this context",
    "control characters are not allowed",
    "could not find expected ':'",
    "could not find expected directive name",
    "did not find URI escaped octet",
    "did not find expected '!'",
    "did not find expected ',' or ']'",
    "did not find expected ',' or '}'",
    "did not find expected '-' indicator",
    "did not find expected <document start>",
    "did not find expected <stream-start>",
    "did not find expected alphabetic or numeric character",
    "did not find expected comment or line break",
    "did not find expected digit or '.' character",
    "did not find expected hexadecimal number",
    "did not find expected key",
    "did not find expected node content",
    "did not find expected tag URI",
    "did not find expected version number",
    "did not find expected whitespace or line break",
    "did not find expected whitespace",
    "did not find the expected '>'",
    "expected low surrogate area",
    "found a tab character that violates indentation",
    "found a tab character where an indentation space is expected",
    "found an incorrect leading UTF-8 octet",
    "found an incorrect trailing UTF-8 octet",
    "found an indentation indicator equal to 0",
    "found character that cannot start any token",
    "found duplicate %TAG directive",
    "found duplicate %YAML directive",
    "found duplicate anchor; first occurrence",
    "found extremely long version number",
    "found incompatible YAML document",
    "found invalid Unicode character escape code",
    "found undefined alias",
    "found undefined tag handle",
    "found unexpected ':'",
    "found unexpected document indicator",
    "found unexpected end of stream",
    "found unexpected non-alphabetical character",
    "found unknown directive name",
    "found unknown escape character",
    "incomplete UTF-16 character",
    "incomplete UTF-16 surrogate pair",
    "incomplete UTF-8 octet sequence",
    "input error",
    "input is too long",
    "invalid Unicode character",
    "invalid leading UTF-8 octet",
    "invalid length of a UTF-8 sequence",
    "invalid trailing UTF-8 octet",
    "mapping keys are not allowed in this context",
    "mapping values are not allowed in this context",
    "unexpected low surrogate area",
];

/// libyaml's context texts ("while parsing a flow sequence"), shown after
/// the problem with their own location.
const LIBYAML_CONTEXTS: &[&str] = &[
    "second occurrence",
    "while parsing a %TAG directive",
    "while parsing a block collection",
    "while parsing a block mapping",
    "while parsing a block node",
    "while parsing a flow mapping",
    "while parsing a flow node",
    "while parsing a flow sequence",
    "while parsing a node",
    "while parsing a quoted scalar",
    "while parsing a tag directive",
    "while parsing a tag",
    "while scanning a %TAG directive",
    "while scanning a %YAML directive",
    "while scanning a block scalar",
    "while scanning a directive",
    "while scanning a plain scalar",
    "while scanning a quoted scalar",
    "while scanning a simple key",
    "while scanning a tag directive",
    "while scanning a tag",
    "while scanning an alias",
    "while scanning an anchor",
    "while scanning for the next token",
];

/// serde_yaml's messages without a variable part, and how we say them.
const FIXED: &[(&str, &str)] = &[
    (
        "unknown anchor",
        "an alias to an anchor that is not defined before it",
    ),
    (
        "recursion limit exceeded",
        "nested too deeply (recursion limit exceeded)",
    ),
    (
        "repetition limit exceeded",
        "too many aliases (repetition limit exceeded)",
    ),
    ("EOF while parsing a value", "the file ends inside a value"),
    (
        "deserializing from YAML containing more than one document",
        "more than one YAML document; a vault is one",
    ),
    ("empty YAML tag is not allowed", "an empty tag"),
    (
        "failed to parse YAML number",
        "a number that cannot be read",
    ),
    (
        "unexpected tagged value in merge",
        "a tagged value in a merge (`<<`)",
    ),
    (
        "expected a mapping",
        "a merge (`<<`) of something other than mappings",
    ),
    ("invalid utf-8", "text that is not UTF-8"),
    ("incomplete utf-8", "text that is not UTF-8"),
];

/// A message for `err` that holds no scalar of the document: a category,
/// the path to it where known, and its line and column.
pub(crate) fn describe(err: &serde_yaml::Error) -> String {
    describe_text(&err.to_string(), err.location())
}

fn describe_text(text: &str, location: Option<serde_yaml::Location>) -> String {
    let at = location.map(|at| format!(" (line {}, column {})", at.line(), at.column()));
    let at = at.as_deref().unwrap_or("");
    if let Some(problem) = LIBYAML_PROBLEMS.iter().find(|p| text.starts_with(**p)) {
        let context = LIBYAML_CONTEXTS
            .iter()
            .filter_map(|context| {
                let start = text.find(&format!(", {context}"))? + 2;
                Some((context, &text[start + context.len()..]))
            })
            .max_by_key(|(context, _)| context.len())
            .map(|(context, rest)| match line_column(rest) {
                Some((line, column)) => format!(", {context} (line {line}, column {column})"),
                None => format!(", {context}"),
            })
            .unwrap_or_default();
        // libyaml places its reader's errors by byte offset, not by line.
        let rest = &text[problem.len()..];
        let at = match (line_column(rest), byte_offset(rest)) {
            (Some((line, column)), _) => format!(" (line {line}, column {column})"),
            (None, Some(offset)) => format!(" (byte {offset})"),
            (None, None) => String::new(),
        };
        return format!("{problem}{at}{context}");
    }
    for (start, said) in FIXED {
        if text.starts_with(start) {
            return format!("{said}{at}");
        }
    }
    // serde's messages, after serde_yaml's path of keys ("A.B[0]: ").
    let (path, message) = split_path(text);
    let place = path.map(|path| format!(" at `{path}`")).unwrap_or_default();
    let what = if let Some(rest) = message.strip_prefix("duplicate entry with key ") {
        match duplicate_key(rest) {
            Some(key) => format!("the key `{key}` appears twice in one mapping"),
            None => "a key appears twice in one mapping".into(),
        }
    } else if message.starts_with("invalid type: integer") {
        "an integer too large to read; quote it to store it as text".into()
    } else if message.starts_with("invalid value: ") {
        match message.rsplit(", expected ").next() {
            Some(tail) if tail.starts_with("an integer") => {
                "a value tagged `!!int` that is not an integer".into()
            }
            Some(tail) if tail.starts_with("a boolean") => {
                "a value tagged `!!bool` that is not `true` or `false`".into()
            }
            Some(tail) if tail.starts_with("a float") => {
                "a value tagged `!!float` that is not a number".into()
            }
            Some(tail) if tail.starts_with("null") => {
                "a value tagged `!!null` that is not empty or `null`".into()
            }
            _ => "a value that does not match its tag".to_string(),
        }
    } else if message.starts_with("invalid type: ") {
        "a value of a type that cannot be stored here".into()
    } else {
        "not valid YAML".into()
    };
    format!("{what}{place}{at}")
}

/// Splits serde_yaml's `PATH: ` prefix off a message, keeping the path only
/// if it is a valid vault path (keys, not values).
fn split_path(text: &str) -> (Option<String>, &str) {
    for shape in [
        ": invalid type: ",
        ": invalid value: ",
        ": duplicate entry with key ",
    ] {
        if let Some(cut) = text.find(shape) {
            let path = KeyPath::parse(&text[..cut])
                .ok()
                .map(|path| path.to_string());
            return (path, &text[cut + 2..]);
        }
    }
    (None, text)
}

/// The key of `"KEY"...` if it is quoted plainly and a valid vault key.
fn duplicate_key(rest: &str) -> Option<&str> {
    let key = rest.strip_prefix('"')?.split('"').next()?;
    (!key.contains('\\') && validate_key(key).is_ok()).then_some(key)
}

/// `at position N` at the start of `rest`.
fn byte_offset(rest: &str) -> Option<u64> {
    let rest = rest.strip_prefix(" at position ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `line L column C` at the start of `rest` (after " at ").
fn line_column(rest: &str) -> Option<(u64, u64)> {
    let rest = rest.strip_prefix(" at line ")?;
    let (line, rest) = rest.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.parse().ok()?, column.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(yaml: &str) -> String {
        describe(&serde_yaml::from_str::<serde_yaml::Value>(yaml).unwrap_err())
    }

    #[test]
    fn messages_keep_the_place_and_drop_the_value() {
        for (yaml, expected) in [
            (
                "A: 123456789012345678901234567890\n",
                "an integer too large to read; quote it to store it as text at `A` (line 1, column 4)",
            ),
            (
                "A:\n  B: !!int \"CANARY\"\n",
                "a value tagged `!!int` that is not an integer at `A.B` (line 2, column 6)",
            ),
            (
                "L:\n  - !!bool CANARY\n",
                "a value tagged `!!bool` that is not `true` or `false` at `L[0]` (line 2, column 5)",
            ),
            (
                "A: !!float CANARY\n",
                "a value tagged `!!float` that is not a number at `A` (line 1, column 4)",
            ),
            (
                "A: !!null CANARY\n",
                "a value tagged `!!null` that is not empty or `null` at `A` (line 1, column 4)",
            ),
            (
                "A: x\nA: CANARY\n",
                "the key `A` appears twice in one mapping (line 1, column 1)",
            ),
            (
                "A: *CANARY\n",
                "an alias to an anchor that is not defined before it (line 1, column 4)",
            ),
            (
                "A: [CANARY\n",
                "did not find expected ',' or ']' (line 2, column 1), while parsing a flow \
                 sequence (line 1, column 4)",
            ),
            (
                "A: \"CANARY\\q\"\n",
                "found unknown escape character (line 1, column 11), while parsing a quoted \
                 scalar (line 1, column 4)",
            ),
        ] {
            let got = message(yaml);
            assert_eq!(got, expected, "{yaml:?}");
            assert!(!got.contains("CANARY"));
        }
    }

    #[test]
    fn unknown_shapes_and_paths_that_are_not_paths_say_nothing_more() {
        let cases = [
            "A: invalid type: string \"CANARY\"",
            "CANARY",
            "x..CANARY: invalid value: string \"CANARY\", expected CANARY",
            "duplicate entry with key \"CANARY\\\" x\"",
        ];
        for text in cases {
            let got = describe_text(text, None);
            assert!(!got.contains("CANARY"), "{text:?} gave {got:?}");
        }
        assert_eq!(describe_text("CANARY", None), "not valid YAML");
    }
}
