//! `runvault render`: templates resolved to stdout or to a private file,
//! and nothing written when a reference fails.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Host, job_host, mode};

const TEMPLATE: &str = "default:\n  user: DATAOPS_VAULT(DB.USER)\n  url: \"pg://DATAOPS_VAULT(DB.USER):DATAOPS_VAULT(DB.PASS)@db\"\n";
const RENDERED: &str = "default:\n  user: alice\n  url: \"pg://alice:p@ss w0rd)@db\"\n";

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
    let run = host
        .run_key(
            &["render", tpl.to_str().unwrap(), "-o", out.to_str().unwrap()],
            b"",
        )
        .ok();
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
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = host.run_key(
        &["render", tpl.to_str().unwrap(), "-o", out.to_str().unwrap()],
        b"",
    );
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
    let run = host.run_key(
        &["render", tpl.to_str().unwrap(), "-o", out.to_str().unwrap()],
        b"",
    );
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

    std::fs::write(&out, "previous").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = host.run_key(
        &["render", tpl.to_str().unwrap(), "-o", out.to_str().unwrap()],
        b"",
    );
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
    let run = host.run_key(
        &["render", tpl.to_str().unwrap(), "-o", out.to_str().unwrap()],
        b"",
    );
    assert_eq!(run.code, 2);
    assert!(!out.exists());
}
