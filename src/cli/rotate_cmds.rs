//! Handler of `runvault rotate` (docs/rotation.md, "Rotating a credential
//! at its source"): the new value is stored as a pending version first
//! (one commit), then `--apply` and `--test` run, then it is promoted (one
//! commit); `--resume` and `--abort` finish a rotation left pending.
//!
//! A handler file: it uses the definitions, `input`, `output` and
//! `context` below it, and no other handler (see `context` for the order).

use std::time::Duration;

use crate::cli::args::{GlobalArgs, RotateArgs};
use crate::cli::context::{parse_path, vault_dir};
use crate::cli::input::{self, ValueSource, parse_duration};
use crate::cli::output::note as status;
use crate::core::exit::{self, CommandError};
use crate::core::failpoint;
use crate::core::secret::SecretBytes;
use crate::jobs::hook::{Hook, HookError};
use crate::vault::{Credential, KeyPath, Plain, VaultDir, VaultError, alternate_paths};

/// What a rotation works on: the path whose value is staged and, with
/// `--alternate`, the mapping and the account name.
struct Target {
    /// The path named on the command line.
    base: KeyPath,
    /// The path whose new value is pending (`base`, or
    /// `base.ALTERNATE.PASSWORD` with `--alternate`).
    staged: KeyPath,
    /// Whether the accounts alternate.
    alternate: bool,
}

impl Target {
    /// Where `--max-age` applies: the value itself, or with `--alternate`
    /// the current password (whose time the swap renews).
    fn policy_path(&self) -> Result<KeyPath, VaultError> {
        if self.alternate {
            Ok(alternate_paths(&self.base)?[1].clone())
        } else {
            Ok(self.base.clone())
        }
    }
}

/// The values a hook is given, read under the lock with the pending one.
struct Values {
    new: SecretBytes,
    old: SecretBytes,
    user: Option<String>,
}

/// `runvault rotate`.
pub fn rotate(global: &GlobalArgs, args: &RotateArgs) -> Result<(), CommandError> {
    let base = parse_path(&args.path)?;
    let timeout = parse_duration("--timeout", &args.timeout)?;
    let max_age = args
        .max_age
        .as_deref()
        .map(|text| parse_duration("--max-age", text))
        .transpose()?;
    if args.revert.is_some() && !args.abort {
        return Err(CommandError::usage(
            "--revert runs only with --abort (a failed --apply changed nothing to revert)",
        ));
    }
    let new_value = match (args.resume || args.abort, args.stdin) {
        (true, _) => None,
        (false, true) => Some(input::read_value(ValueSource::Stdin)?),
        (false, false) => Some(input::read_value(ValueSource::Generate(
            args.generate.unwrap_or(32),
        ))?),
    };
    if let Some(value) = &new_value {
        refuse_line_breaks(&base, value.expose())?;
    }
    let credential = input::unlock_credential(global)?;
    let dir = vault_dir(global);
    let staged = if args.alternate {
        alternate_paths(&base)?[3].clone()
    } else {
        base.clone()
    };
    let mut target = Target {
        base,
        staged,
        alternate: args.alternate,
    };
    let hooks = Hooks {
        args,
        timeout: Duration::from_secs(timeout),
    };
    match new_value {
        Some(value) => {
            let values = stage(&dir, &credential, &target, value, max_age)?;
            failpoint::stop_at("rotate-after-pending");
            if let Err(err) = hooks.apply(&target, &values) {
                drop_pending(&dir, &credential, &target, "rotate (apply failed)")?;
                return Err(with_hint(
                    &err,
                    &format!(
                        "the pending value of `{}` was dropped; nothing changed in the vault",
                        target.base
                    ),
                ));
            }
            failpoint::stop_at("rotate-after-apply");
            finish(&dir, &credential, &target, &values, &hooks, max_age)
        }
        None => {
            // `--alternate` is implied by what is pending.
            let values = match pending_values(&dir, &credential, &target) {
                Err(VaultError::NoPending { .. }) if !target.alternate => {
                    target.alternate = true;
                    target.staged = alternate_paths(&target.base)?[3].clone();
                    pending_values(&dir, &credential, &target).map_err(|_| {
                        VaultError::NoPending {
                            key: target.base.to_string(),
                        }
                    })?
                }
                values => values?,
            };
            if args.abort {
                abort(&dir, &credential, &target, &values, &hooks)
            } else {
                finish(&dir, &credential, &target, &values, &hooks, max_age)
            }
        }
    }
}

/// The test, then the promotion; a failed test leaves the value pending.
fn finish(
    dir: &VaultDir,
    credential: &Credential,
    target: &Target,
    values: &Values,
    hooks: &Hooks<'_>,
    max_age: Option<u64>,
) -> Result<(), CommandError> {
    if let Err(err) = hooks.test(target, values) {
        return Err(with_hint(
            &err,
            &format!(
                "the new value of `{path}` stays pending and may already be set at the source: \
                 retry with `runvault rotate {path} --resume --test CMD`, or undo with \
                 `runvault rotate {path} --abort --revert CMD`",
                path = target.base
            ),
        ));
    }
    failpoint::stop_at("rotate-after-test");
    let version = dir.modify(credential, "rotate", |vault, _, record| {
        failpoint::stop_at("rotate-during-promote");
        let changed = if target.alternate {
            vault.promote_alternate(&target.base)?
        } else {
            vault.promote(&target.base)?;
            vec![target.base.clone()]
        };
        if let Some(seconds) = max_age {
            vault.set_max_age(&target.policy_path()?, seconds);
        }
        for path in &changed {
            record.changes.push(vault.audit_change(path, "rotate")?);
        }
        record.detail = Some("pending version promoted".to_owned());
        // The password's version: `PASSWORD` with --alternate, else the path.
        let password = if target.alternate {
            &changed[1]
        } else {
            &changed[0]
        };
        Ok(vault.current_version(password))
    })?;
    if target.alternate {
        status(format_args!(
            "rotated `{}`: account `{}` is current (password version {version}); the previous account is now the alternate",
            target.base,
            values.user.as_deref().unwrap_or_default()
        ));
    } else {
        status(format_args!(
            "rotated `{}` (version {version})",
            target.base
        ));
    }
    Ok(())
}

/// `--abort`: the revert hook (if any), then the pending value is dropped.
fn abort(
    dir: &VaultDir,
    credential: &Credential,
    target: &Target,
    values: &Values,
    hooks: &Hooks<'_>,
) -> Result<(), CommandError> {
    if let Err(err) = hooks.revert(target, values) {
        return Err(with_hint(
            &err,
            &format!(
                "the new value of `{}` stays pending; nothing was dropped",
                target.base
            ),
        ));
    }
    drop_pending(dir, credential, target, "rotate --abort")?;
    status(format_args!(
        "dropped the pending value of `{}`; the current value is unchanged",
        target.base
    ));
    Ok(())
}

/// Stores the new value as pending (one commit, audit line) and returns
/// the values the hooks get.
fn stage(
    dir: &VaultDir,
    credential: &Credential,
    target: &Target,
    new: SecretBytes,
    max_age: Option<u64>,
) -> Result<Values, CommandError> {
    let (old, user) = dir.modify(credential, "rotate", |vault, _, record| {
        vault.refuse_pending_under(&target.base)?;
        if target.alternate {
            // Every field must be there before anything is staged.
            for path in alternate_paths(&target.base)? {
                vault.get(&path)?;
            }
        }
        let old = vault.get(&target.staged)?;
        refuse_line_breaks(&target.staged, old.bytes.expose())?;
        let user = account(vault, target)?;
        let value = Plain {
            kind: old.kind,
            bytes: SecretBytes::new(new.expose().to_vec()),
        };
        let version = vault.stage(&target.staged, &value)?;
        if let Some(seconds) = max_age {
            vault.set_max_age(&target.policy_path()?, seconds);
        }
        record
            .changes
            .push(vault.pending_audit_change(&target.staged, "stage")?);
        record.detail = Some(format!("version {version} pending"));
        Ok((old.bytes, user))
    })?;
    status(format_args!(
        "stored the new value of `{}` as pending; applying it at the source",
        target.staged
    ));
    Ok(Values { new, old, user })
}

/// The pending value, the current one and the account, for `--resume`
/// and `--abort`.
fn pending_values(
    dir: &VaultDir,
    credential: &Credential,
    target: &Target,
) -> Result<Values, VaultError> {
    let (vault, _) = dir.open(credential)?;
    let new = vault.get_pending(&target.staged)?.bytes;
    let old = vault.get(&target.staged)?.bytes;
    let user = account(&vault, target)?;
    Ok(Values { new, old, user })
}

/// The account a hook rotates (`--alternate`): `ALTERNATE.USERNAME`.
fn account(
    vault: &crate::vault::UnlockedVault,
    target: &Target,
) -> Result<Option<String>, VaultError> {
    if !target.alternate {
        return Ok(None);
    }
    let user = vault.get(&alternate_paths(&target.base)?[2])?;
    String::from_utf8(user.bytes.expose().to_vec())
        .map(Some)
        .map_err(|_| {
            VaultError::Usage(format!(
                "`{}.ALTERNATE.USERNAME` is not text; it cannot name an account",
                target.base
            ))
        })
}

fn drop_pending(
    dir: &VaultDir,
    credential: &Credential,
    target: &Target,
    detail: &str,
) -> Result<(), VaultError> {
    dir.modify(credential, "rotate", |vault, _, record| {
        record
            .changes
            .push(vault.pending_audit_change(&target.staged, "drop")?);
        vault.drop_pending(&target.staged)?;
        record.detail = Some(format!("pending version dropped: {detail}"));
        Ok(())
    })
}

/// The hooks as given on the command line.
struct Hooks<'a> {
    args: &'a RotateArgs,
    timeout: Duration,
}

impl Hooks<'_> {
    fn apply(&self, target: &Target, values: &Values) -> Result<(), HookError> {
        let command = self.args.apply.as_deref().unwrap_or_default();
        self.run("apply", command, target, values, [&values.new, &values.old])
    }

    fn test(&self, target: &Target, values: &Values) -> Result<(), HookError> {
        match self.args.test_cmd.as_deref() {
            Some(command) => self.run("test", command, target, values, [&values.new]),
            None => Ok(()),
        }
    }

    fn revert(&self, target: &Target, values: &Values) -> Result<(), HookError> {
        match self.args.revert.as_deref() {
            Some(command) => self.run(
                "revert",
                command,
                target,
                values,
                [&values.old, &values.new],
            ),
            None => Ok(()),
        }
    }

    fn run<const N: usize>(
        &self,
        step: &'static str,
        command: &str,
        target: &Target,
        values: &Values,
        input: [&SecretBytes; N],
    ) -> Result<(), HookError> {
        let lines: Vec<&[u8]> = input.iter().map(|value| value.expose()).collect();
        let path = target.base.to_string();
        Hook {
            step,
            command,
            path: &path,
            user: values.user.as_deref(),
            input: &lines,
            secrets: &[values.new.expose(), values.old.expose()],
            timeout: self.timeout,
        }
        .run()
    }
}

/// A value that holds a line break cannot be one line of a hook's input.
fn refuse_line_breaks(path: &KeyPath, value: &[u8]) -> Result<(), VaultError> {
    if value.iter().any(|b| *b == b'\n' || *b == b'\r') {
        return Err(VaultError::Usage(format!(
            "a value of `{path}` contains a line break, so it cannot be passed to a hook as one line; \
             nothing was changed (rotate it with `runvault set` and by hand)"
        )));
    }
    Ok(())
}

/// A hook's error with what it means for the vault.
fn with_hint(err: &HookError, hint: &str) -> CommandError {
    CommandError::with_code(exit::HOOK_FAILED, format!("{err}; {hint}"))
}
