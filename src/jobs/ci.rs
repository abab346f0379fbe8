//! The variables the CI system sets, which `exec` never resolves.
//!
//! GitLab (and the DataOps runner, its derivative) fills many predefined
//! variables from input that whoever pushes a branch, writes a commit
//! message or opens a merge request controls: `CI_COMMIT_MESSAGE`,
//! `CI_COMMIT_REF_NAME`, `CI_MERGE_REQUEST_TITLE`, `GITLAB_USER_NAME`, ...
//! If `exec` resolved references in them, a commit message reading
//! `DATAOPS_VAULT(AWS.DEFAULT.S3_SECRET)` would hand that secret to the job
//! (which may print it), and a stray `DATAOPS_VAULT(` would fail every job.
//!
//! [`CI_SET`] is the one table of those names: whole prefixes where GitLab
//! reserves one (`CI_`, `GITLAB_`: new predefined variables keep appearing
//! under them, so a list of single names would fall behind), exact names
//! otherwise. `DATAOPS_*` is not in it: DataOps jobs name their own
//! variables `DATAOPS_...` and reference the vault in them (the product's
//! main use), and DataOps sets its own ones from the project's committed
//! configuration, not from a commit message or a branch name.
//! docs/jobs.md ("Variables the CI system sets") shows the same table; a
//! unit test below keeps the two equal.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// How a table entry matches a variable name (case-sensitive, as names are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Every name that starts with this text.
    Prefix(&'static str),
    /// Exactly this name.
    Name(&'static str),
}

impl Rule {
    /// Whether `name` matches.
    pub fn matches(self, name: &[u8]) -> bool {
        match self {
            Rule::Prefix(prefix) => name.starts_with(prefix.as_bytes()),
            Rule::Name(exact) => name == exact.as_bytes(),
        }
    }

    /// The form the docs table shows: `CI_*` or `CHAT_INPUT`.
    pub fn shown(self) -> String {
        match self {
            Rule::Prefix(prefix) => format!("{prefix}*"),
            Rule::Name(exact) => exact.to_string(),
        }
    }
}

/// The variables the CI system sets; see the module doc.
pub const CI_SET: &[Rule] = &[
    Rule::Prefix("CI_"),
    Rule::Prefix("GITLAB_"),
    Rule::Name("CHAT_CHANNEL"),
    Rule::Name("CHAT_INPUT"),
    Rule::Name("CHAT_USER_ID"),
    Rule::Name("TRIGGER_PAYLOAD"),
];

/// The entry of [`CI_SET`] that `name` matches, if any.
pub fn ci_set_rule(name: &OsStr) -> Option<Rule> {
    CI_SET
        .iter()
        .copied()
        .find(|rule| rule.matches(name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_untrusted_predefined_variables_match_and_user_variables_do_not() {
        for name in [
            "CI_COMMIT_MESSAGE",
            "CI_COMMIT_TITLE",
            "CI_COMMIT_DESCRIPTION",
            "CI_COMMIT_AUTHOR",
            "CI_COMMIT_BRANCH",
            "CI_COMMIT_REF_NAME",
            "CI_COMMIT_TAG_MESSAGE",
            "CI_MERGE_REQUEST_TITLE",
            "CI_MERGE_REQUEST_DESCRIPTION",
            "CI_MERGE_REQUEST_LABELS",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
            "CI_EXTERNAL_PULL_REQUEST_SOURCE_BRANCH_NAME",
            "GITLAB_USER_NAME",
            "GITLAB_USER_EMAIL",
            "CHAT_INPUT",
            "TRIGGER_PAYLOAD",
        ] {
            assert!(ci_set_rule(OsStr::new(name)).is_some(), "{name}");
        }
        for name in [
            "DATAOPS_SNOWSQL_USER",
            "DATAOPS_VAULT_PATH",
            "DBT_PASSWORD",
            "CI",
            "ci_commit_message",
            "MY_CI_COMMIT_MESSAGE",
            "CHAT_INPUT_X",
            "GITLAB",
        ] {
            assert_eq!(ci_set_rule(OsStr::new(name)), None, "{name}");
        }
    }

    /// docs/jobs.md's table of skipped names is this table, row for row.
    #[test]
    fn the_docs_table_is_the_code_table() {
        let docs = include_str!("../../docs/jobs.md");
        let section = docs
            .split("<!-- ci-set table -->")
            .nth(1)
            .expect("docs/jobs.md marks the table with `<!-- ci-set table -->` before and after");
        let shown: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        let code: Vec<String> = CI_SET.iter().map(|rule| rule.shown()).collect();
        assert_eq!(shown, code);
    }
}
