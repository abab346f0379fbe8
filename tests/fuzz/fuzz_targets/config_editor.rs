//! The `config.toml` editor (`runner configure`) on arbitrary TOML: it
//! never panics; a second run changes nothing (idempotent); it reports no
//! change exactly when the text is unchanged; every key it does not own
//! (all but the global `concurrent` and `check_interval`, each runner's
//! `environment` and `[runners.docker].volumes`) is kept byte for byte;
//! and `doctor`'s check then finds the secrets mount on every runner.
//! The first byte picks the settings, the rest is the file.

#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use runvault::runner::config::{self, JobWiring, JobsMode, Settings};
use toml_edit::{DocumentMut, Item};

const SECRETS_DIR: &str = "/secrets";

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let path = Path::new("config.toml");
    // The readers `status` and `doctor` use never panic either.
    let overview = config::overview(text, path);
    let _ = config::runners_without_secrets_mount(text, path, Path::new(SECRETS_DIR));

    let one_runner = knobs & 8 != 0;
    let settings = Settings {
        concurrent: i64::from(knobs & 3) * 4,
        check_interval: i64::from(knobs >> 6),
        wiring: JobWiring {
            secrets_dir: PathBuf::from(SECRETS_DIR),
            key_file: PathBuf::from("/etc/runvault/vault.key"),
            // The identity instead of the key file, on some inputs.
            identity: (knobs & 32 != 0).then(|| PathBuf::from("/etc/runvault/id/host.key")),
            bin_dir: PathBuf::from("/opt/runvault/bin"),
            mode: if knobs & 4 == 0 {
                JobsMode::Encrypted
            } else {
                JobsMode::PlaintextView(PathBuf::from("/run/runvault/views/ci"))
            },
        },
        // The binary directory a layout file remembers from an earlier
        // install: a second one for the editor to replace, on some inputs.
        earlier_bin_dirs: if knobs & 16 == 0 {
            Vec::new()
        } else {
            vec![PathBuf::from("/usr/local/lib/runvault")]
        },
        local_config: knobs & 16 != 0,
        agent_cache: knobs & 32 != 0,
        runner: one_runner
            .then(|| overview.ok()?.runners.first().map(|r| r.name.clone()))
            .flatten(),
    };
    let Ok(edit) = config::plan(text, path, &settings) else {
        return;
    };
    assert_eq!(
        edit.changes.is_empty(),
        edit.text == text,
        "changes reported {:?} do not match the text",
        edit.changes
    );
    let again = config::plan(&edit.text, path, &settings).expect("the edited file is valid");
    assert!(
        again.changes.is_empty() && again.text == edit.text,
        "a second run changes {:?}:\n{}",
        again.changes,
        again.text
    );
    assert_eq!(
        untouched(text),
        untouched(&edit.text),
        "a part configure does not own changed"
    );
    if settings.wiring.mode == JobsMode::Encrypted && settings.runner.is_none() {
        let missing =
            config::runners_without_secrets_mount(&edit.text, path, Path::new(SECRETS_DIR))
                .expect("the edited file reads");
        assert!(
            missing.is_empty(),
            "no secrets mount after configure: {missing:?}"
        );
    }
});

/// The document without what `configure` owns: the two global keys, each
/// runner's `environment`, and `volumes` of its `docker` table (an empty
/// `docker` table goes too: configure creates one where it is missing).
fn untouched(text: &str) -> String {
    let mut doc: DocumentMut = text.parse().expect("parsed before");
    doc.remove("concurrent");
    doc.remove("check_interval");
    if let Some(runners) = doc
        .get_mut("runners")
        .and_then(Item::as_array_of_tables_mut)
    {
        for runner in runners.iter_mut() {
            runner.remove("environment");
            let emptied = runner
                .get_mut("docker")
                .and_then(Item::as_table_like_mut)
                .is_some_and(|docker| {
                    docker.remove("volumes");
                    docker.is_empty()
                });
            if emptied {
                runner.remove("docker");
            }
        }
    }
    doc.to_string()
}
