//! Shell words for the command lines hints print: a directory or a key
//! path pasted back into a shell reaches the command unchanged.

use std::path::Path;

/// `text` as one shell word: as it is when it holds only characters no
/// shell treats specially, else in single quotes.
pub fn word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-:=+,@%".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `path` as one shell word (see [`word`]).
pub fn path(path: &Path) -> String {
    word(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_text_stays_bare_and_the_rest_is_single_quoted() {
        assert_eq!(word("/srv/secrets"), "/srv/secrets");
        assert_eq!(
            word("SNOWFLAKE.TRANSFORM.PASSWORD"),
            "SNOWFLAKE.TRANSFORM.PASSWORD"
        );
        assert_eq!(word("/srv/my secrets"), "'/srv/my secrets'");
        assert_eq!(word("it's"), r"'it'\''s'");
        assert_eq!(word(""), "''");
        assert_eq!(word("a;rm -rf ~"), "'a;rm -rf ~'");
    }

    #[test]
    fn a_quoted_word_reads_back_as_the_text_in_sh() {
        for text in ["plain", "with space", "it's", "$HOME", "`id`", "a\"b", "*"] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", word(text))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
        }
    }
}
