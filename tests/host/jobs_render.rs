//! `runvault render`: templates resolved to stdout or to a private file,
//! and nothing written when a reference fails.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{
    Host, give_to_other_user, job_host, mode, owned_by_other_user_error, ownership, write_private,
};

const TEMPLATE: &str = "default:\n  user: DATAOPS_VAULT(DB.USER)\n  url: \"pg://DATAOPS_VAULT(DB.USER):DATAOPS_VAULT(DB.PASS)@db\"\n";
const RENDERED: &str = "default:\n  user: alice\n  url: \"pg://alice:p@ss w0rd)@db\"\n";

/// `render TEMPLATE -o OUT` after `OUT` was given `contents` and `mode`.
fn render_over(
    host: &Host,
    tpl: &Path,
    out: &Path,
    contents: &str,
    mode: u32,
) -> crate::support::Run {
    std::fs::write(out, contents).unwrap();
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(mode)).unwrap();
    render_to(host, tpl, out)
}

/// `render TEMPLATE -o OUT` with the key file.
fn render_to(host: &Host, tpl: &Path, out: &Path) -> crate::support::Run {
    host.run_key(
        &["render", tpl.to_str().unwrap(), "-o", out.to_str().unwrap()],
        b"",
    )
}

fn template(host: &Host, text: &str) -> std::path::PathBuf {
    let path = host.root.path().join("profiles.yml.tpl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn renders_to_stdout() {
    let host = job_host();
    let tpl = template(&host, TEMPLATE);
    let run = host.run_key(&["render", tpl.to_str().unwrap()], b"").ok();
    assert_eq!(run.out(), RENDERED);
    assert_eq!(run.stderr, "");
}

#[test]
fn renders_to_a_private_file_atomically() {
    let host = job_host();
    let tpl = template(&host, TEMPLATE);
    let out_dir = host.root.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("profiles.yml");
    let run = render_to(&host, &tpl, &out).ok();
    assert!(run.stdout.is_empty());
    assert_eq!(
        run.stderr,
        format!("wrote `{}` (mode 0600)\n", out.display())
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), RENDERED);
    assert_eq!(mode(&out), 0o600);
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["profiles.yml"], "no temp file may remain");

    // An existing file others can read is refused, and kept as it was.
    let run = render_over(&host, &tpl, &out, "old", 0o644);
    assert_eq!(run.code, 1);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
}

#[test]
fn an_unknown_path_writes_nothing() {
    let host = job_host();
    let tpl = template(
        &host,
        "a: DATAOPS_VAULT(DB.USER)\nb: DATAOPS_VAULT(DB.NOPE)\n",
    );
    let out = host.root.path().join("out.yml");
    let run = render_to(&host, &tpl, &out);
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: `{}` line 2 references `DB.NOPE`, which is not in the vault; check \
             the path with `runvault list`\n",
            tpl.display()
        )
    );
    assert!(!out.exists());
    let run = host.run_key(&["render", tpl.to_str().unwrap()], b"");
    assert_eq!(run.code, 3);
    assert!(run.stdout.is_empty(), "nothing may reach stdout either");

    let run = render_over(&host, &tpl, &out, "previous", 0o600);
    assert_eq!(run.code, 3);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous");
}

#[test]
fn malformed_template_reference_names_the_line() {
    let host = job_host();
    let tpl = template(&host, "ok\nx: DATAOPS_VAULT(A[x])\n");
    let run = host.run_key(&["render", tpl.to_str().unwrap()], b"");
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: malformed reference in `{}` line 2: `DATAOPS_VAULT(A[x])` does not \
             name a vault path: `[x]` is not a list index; write it as `DATAOPS_VAULT(PATH.TO.VALUE)`\n",
            tpl.display()
        )
    );
}

#[test]
fn refuses_output_inside_the_vault_dir() {
    let host = job_host();
    let tpl = template(&host, TEMPLATE);
    let out = host.dir().join("rendered.yml");
    let run = render_to(&host, &tpl, &out);
    assert_eq!(run.code, 2);
    assert!(!out.exists());
}

#[test]
fn an_output_file_another_user_made_in_advance_is_refused_untouched() {
    if !crate::support::require_root(
        "an_output_file_another_user_made_in_advance_is_refused_untouched",
    ) {
        return;
    }
    let host = job_host();
    let tpl = template(&host, TEMPLATE);
    let out = host.root.path().join("profiles.yml");
    write_private(&out, b"");
    give_to_other_user(&out);
    let run = render_to(&host, &tpl, &out);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, owned_by_other_user_error("output file", &out));
    assert_eq!(ownership(&out), (65534, 0o600, Vec::new()));
}

/// `render -o ~/.dbt/profiles.yml` (docs/jobs.md) with no `~/.dbt` yet:
/// the missing directories are made 0700 and the user's, the file 0600;
/// through a `..` a missing directory is a plain error naming it, never a
/// temp file's name, and nothing is written.
#[test]
fn render_creates_the_missing_parent_directories_private() {
    let host = job_host();
    let tpl = template(&host, TEMPLATE);
    let home = host.path("home");
    let out = home.join(".dbt/profiles.yml");
    let run = render_to(&host, &tpl, &out).ok();
    assert_eq!(
        run.stderr,
        format!("wrote `{}` (mode 0600)\n", out.display())
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), RENDERED);
    assert_eq!(mode(&out), 0o600);
    for dir in [home.join(".dbt"), home.clone()] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        assert_eq!(ownership(&dir).0, ownership(host.root.path()).0);
    }

    let through_parent = host.path("missing/../elsewhere/profiles.yml");
    let run = render_to(&host, &tpl, &through_parent).fails(1);
    assert_eq!(
        run.stderr,
        format!(
            "runvault: error: cannot create the missing directory `{}`: the path has a `..` \
             (create the directory first)\n",
            host.path("missing/../elsewhere").display()
        )
    );
    assert!(!host.path("missing").exists() && !host.path("elsewhere").exists());
    assert!(!run.stderr.contains("temp"), "{}", run.stderr);
}
