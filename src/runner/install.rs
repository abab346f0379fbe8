//! `runner install`: the whole manual procedure as one idempotent command,
//! plus what jobs need to read the vault with no person present.
//!
//! Create the machine key if missing, create (or adopt) the vault if
//! needed, give the key a slot if it opens none, put the runvault binary
//! into the bin directory, register if not registered, configure, start.
//! Each step reports whether it changed anything, so a second run says that
//! nothing changed.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::core::fs::{self, FsError, Limit};
use crate::core::layout::BINARY_NAME;
use crate::runner::config::{self, JobsMode, Settings};
use crate::runner::container::{self, Spec, StartOutcome};
use crate::runner::engine::Engine;
use crate::runner::error::Error;
use crate::runner::register::{self, Request, Token};
use crate::vault::{
    Credential, InitOutcome, VaultDir, VaultError, create_key_file, read_identity_file,
    read_key_file,
};

/// One finished step, reported as it completes.
pub enum Step {
    /// The machine key file.
    Key {
        /// The key file.
        path: PathBuf,
        /// Whether it was created now.
        created: bool,
    },
    /// With `--identity`: the host's identity opens the received vault
    /// (install makes no key, vault or slot then; `receive` brought them).
    Identity {
        /// The identity file.
        path: PathBuf,
    },
    /// The vault step.
    Vault(InitOutcome),
    /// The key's slot: the id of the slot added, `None` if the key opened
    /// the vault already.
    KeySlot(Option<u32>),
    /// The binary jobs run.
    Binary {
        /// Where it was put.
        path: PathBuf,
        /// Whether it was (re)written now.
        installed: bool,
        /// Whether it needs a program interpreter (is not static).
        dynamic: bool,
    },
    /// The plaintext view (with `--jobs plaintext-view`): written now, and
    /// whether it was newly added to the host's views file.
    View {
        /// The view directory.
        dir: PathBuf,
        /// Whether the views file gained it now.
        added: bool,
    },
    /// The register step: the register log when it ran, `None` when the
    /// runner was already registered.
    Register(Option<String>),
    /// The configure step.
    Configure(config::Report),
    /// The start step.
    Start(StartOutcome),
}

impl Step {
    /// Whether this step changed anything.
    pub fn changed(&self) -> bool {
        match self {
            Step::Key { created, .. } => *created,
            Step::Identity { .. } => false,
            Step::KeySlot(added) => added.is_some(),
            Step::View { added, .. } => *added,
            Step::Binary { installed, .. } => *installed,
            Step::Vault(outcome) => *outcome != InitOutcome::AlreadyEncrypted,
            Step::Register(log) => log.is_some(),
            Step::Configure(report) => !report.changes.is_empty(),
            Step::Start(outcome) => *outcome != StartOutcome::AlreadyRunning,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Key {
                path,
                created: true,
            } => write!(f, "key: created `{}` (mode 0400)", path.display()),
            Step::Key {
                path,
                created: false,
            } => write!(f, "key: `{}` exists; unchanged", path.display()),
            Step::KeySlot(Some(id)) => write!(f, "key slot: added keyfile slot {id}"),
            Step::Identity { path } => write!(
                f,
                "identity: `{}` opens the vault through its recipient slot; unchanged",
                path.display()
            ),
            Step::View { dir, added: true } => {
                write!(
                    f,
                    "view: wrote `{}` and added it to the views file",
                    dir.display()
                )
            }
            Step::View { dir, added: false } => {
                write!(f, "view: refreshed `{}`; already configured", dir.display())
            }
            Step::KeySlot(None) => write!(f, "key slot: the key opens the vault; unchanged"),
            Step::Binary {
                path,
                installed,
                dynamic,
            } => {
                if *installed {
                    write!(f, "binary: installed `{}`", path.display())?;
                } else {
                    write!(f, "binary: `{}` is up to date; unchanged", path.display())?;
                }
                if *dynamic {
                    write!(
                        f,
                        "\n  warning: it is dynamically linked, so job images without a \
                         matching libc cannot run it; install a static build with \
                         --binary (see docs/jobs.md)"
                    )?;
                }
                Ok(())
            }
            Step::Vault(InitOutcome::AlreadyEncrypted) => {
                write!(f, "vault: already encrypted; unchanged")
            }
            Step::Vault(InitOutcome::Created { .. }) => write!(f, "vault: created"),
            Step::Vault(InitOutcome::Adopted { values, .. }) => {
                write!(
                    f,
                    "vault: adopted the plaintext vault ({values} value(s) encrypted)"
                )
            }
            Step::Register(None) => write!(f, "register: already registered; unchanged"),
            Step::Register(Some(_)) => write!(f, "register: registered"),
            Step::Configure(report) if report.changes.is_empty() => {
                write!(f, "configure: unchanged")
            }
            Step::Configure(report) => {
                write!(f, "configure: {} change(s)", report.changes.len())?;
                for change in &report.changes {
                    write!(f, "\n  {change}")?;
                }
                Ok(())
            }
            Step::Start(outcome) => write!(f, "start: container {}", start_message(*outcome)),
        }
    }
}

/// How `start` reports its outcome.
pub fn start_message(outcome: StartOutcome) -> &'static str {
    match outcome {
        StartOutcome::Created => "created and started",
        StartOutcome::Started => "started",
        StartOutcome::AlreadyRunning => "already running; unchanged",
        StartOutcome::Recreated => "replaced and started",
    }
}

/// Everything `install` needs besides the engine.
pub struct Install<'a> {
    /// The vault directory.
    pub vault: &'a VaultDir,
    /// Versions kept per path when the vault is created.
    pub keep: u32,
    /// The registration.
    pub register: &'a Request,
    /// The config.toml settings.
    pub settings: &'a Settings,
    /// The container.
    pub spec: &'a Spec,
    /// The runvault binary to put into `settings.bin_dir` (a static build).
    pub binary: &'a Path,
    /// The host's views file (for `--jobs plaintext-view`).
    pub views_file: &'a Path,
}

/// The secrets `install` may need, each asked for only when needed.
pub struct Secrets<C, A, T> {
    /// The first slots of a vault that is created (the key's included).
    pub init: C,
    /// The admin's credential, to add the key's slot to an existing vault.
    pub admin: A,
    /// The registration token.
    pub token: T,
}

/// Runs the steps in order, handing each to `report` as it finishes.
/// Credentials and the token are asked for only if they are needed.
/// Returns whether anything changed.
pub async fn install<C, A, T>(
    engine: &Engine,
    plan: Install<'_>,
    secrets: Secrets<C, A, T>,
    report: &mut dyn FnMut(&Step),
) -> Result<bool, Error>
where
    C: FnOnce() -> Result<Vec<Credential>, VaultError>,
    A: FnOnce() -> Result<Credential, VaultError>,
    T: FnOnce() -> Result<Token, Error>,
{
    let mut changed = false;
    let mut done = |step: Step| {
        changed |= step.changed();
        report(&step);
    };
    let key_file = &plan.settings.wiring.key_file;
    let credential = match &plan.settings.wiring.identity {
        // A fleet host: its vault comes from `receive`, sealed to this
        // identity; install checks that it opens, and changes neither.
        Some(identity) => {
            let credential = Credential::Identity(read_identity_file(identity)?);
            if !plan.vault.is_encrypted()? {
                return Err(Error::Usage(format!(
                    "no vault in `{}` to open with the identity `{}`: ship the group's vault and \
                     run `runvault receive STAGING_DIR` first (docs/fleet.md)",
                    plan.vault.dir().display(),
                    identity.display()
                )));
            }
            plan.vault.open(&credential)?;
            done(Step::Identity {
                path: identity.clone(),
            });
            credential
        }
        None => {
            let created = !key_file.exists();
            if created {
                create_key_file(key_file, plan.vault.dir())?;
            }
            done(Step::Key {
                path: key_file.clone(),
                created,
            });
            done(Step::Vault(plan.vault.init(
                plan.keep,
                false,
                secrets.init,
            )?));
            done(Step::KeySlot(ensure_key_slot(
                plan.vault,
                key_file,
                secrets.admin,
            )?));
            Credential::KeyFile(read_key_file(key_file)?)
        }
    };
    match &plan.settings.wiring.mode {
        JobsMode::Encrypted => done(install_binary(plan.binary, &plan.settings.wiring.bin_dir)?),
        JobsMode::PlaintextView(view_dir) => done(ensure_view(
            plan.vault,
            &credential,
            view_dir,
            plan.views_file,
        )?),
    }
    let token = secrets.token;
    let config_path = plan.register.config_path();
    if register::is_registered(&config_path, &plan.register.name)? {
        done(Step::Register(None));
    } else {
        let registered = register::register(engine, plan.register, &token()?).await?;
        done(Step::Register(Some(registered.log)));
    }
    done(Step::Configure(config::apply(
        &config_path,
        plan.settings,
        false,
    )?));
    done(Step::Start(
        container::start(engine, plan.spec, false).await?,
    ));
    Ok(changed)
}

/// Adds a slot for the key file unless one opens with it already; the
/// admin's credential (asked for only then) unlocks the vault for it.
fn ensure_key_slot(
    vault: &VaultDir,
    key_file: &Path,
    admin: impl FnOnce() -> Result<Credential, VaultError>,
) -> Result<Option<u32>, VaultError> {
    let key = Credential::KeyFile(read_key_file(key_file)?);
    match vault.open(&key) {
        Ok(_) => return Ok(None),
        Err(VaultError::WrongSecret { .. } | VaultError::NoSlotOfKind { .. }) => {}
        Err(err) => return Err(err),
    }
    let admin = admin()?;
    vault
        .modify(&admin, "key add", |unlocked, salt, record| {
            let id = unlocked.add_slot(&key, salt)?;
            record.detail = Some(format!(
                "added keyfile slot {id} for `{}`",
                key_file.display()
            ));
            Ok(id)
        })
        .map(Some)
}

/// Writes the plaintext view with the wired secret (the machine key or
/// the identity) and makes sure the host's views file lists it, so every
/// later change refreshes it.
fn ensure_view(
    vault: &VaultDir,
    credential: &Credential,
    view_dir: &Path,
    views_file: &Path,
) -> Result<Step, Error> {
    let _lock = vault.lock_writers()?;
    let (unlocked, salt) = vault.open(credential)?;
    let generation = unlocked.header().generation;
    crate::view::refresh(&unlocked, &salt, vault.dir(), generation, view_dir, false)?;
    let mut views = crate::view::read_views(views_file)?;
    let added = !views.iter().any(|entry| entry.dir == view_dir);
    if added {
        views.push(crate::view::ViewEntry {
            dir: view_dir.to_path_buf(),
            allow_disk: false,
        });
        crate::view::write_views(views_file, &views)?;
    }
    Ok(Step::View {
        dir: view_dir.to_path_buf(),
        added,
    })
}

/// Puts `source` into `bin_dir` as `runvault` (mode 0755, owned by the
/// user running install), atomically, so a running job keeps its old
/// binary and the next one gets the new; leaves an identical binary alone.
/// A directory or binary another user owns is refused.
fn install_binary(source: &Path, bin_dir: &Path) -> Result<Step, Error> {
    let bytes = std::fs::read(source).map_err(FsError::io("read", source))?;
    let path = bin_dir.join(BINARY_NAME);
    // Whoever owns the directory could swap the program every job runs.
    fs::refuse_not_mine(bin_dir, "binary directory")?;
    let kept_mode =
        fs::refuse_not_mine(&path, fs::Owned::EXECUTABLE.what)?.map(|meta| meta.mode() & 0o7777);
    fs::create_dir_with_mode(bin_dir, 0o755)?;
    let installed = kept_mode != Some(fs::Owned::EXECUTABLE.mode)
        || fs::read_optional(&path, Limit::any("installed binary"))?.as_deref()
            != Some(bytes.as_slice());
    if installed {
        fs::write_owned(&path, &bytes, fs::Owned::EXECUTABLE)?;
    }
    Ok(Step::Binary {
        path,
        installed,
        dynamic: needs_interpreter(&bytes),
    })
}

/// Whether an ELF file asks for a program interpreter (a dynamic loader),
/// i.e. is not a static executable. Anything that is not a 64-bit
/// little-endian ELF counts as not static either.
pub fn needs_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |at: usize, len: usize| elf.get(at..at + len);
    let is_elf64_le = elf.starts_with(b"\x7fELF") && read(4, 2) == Some(&[2, 1]);
    let header = (|| {
        let phoff = u64::from_le_bytes(read(0x20, 8)?.try_into().ok()?) as usize;
        let size = u16::from_le_bytes(read(0x36, 2)?.try_into().ok()?) as usize;
        let count = u16::from_le_bytes(read(0x38, 2)?.try_into().ok()?) as usize;
        Some((phoff, size, count))
    })();
    let Some((phoff, size, count)) = header.filter(|_| is_elf64_le) else {
        return true;
    };
    (0..count).any(|i| {
        read(phoff + i * size, 4)
            .and_then(|b| b.try_into().ok())
            .is_none_or(|b| u32::from_le_bytes(b) == PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_detection() {
        // This test binary is linked dynamically (the default for Rust on glibc).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(needs_interpreter(&me));
        assert!(needs_interpreter(b"#!/bin/sh\n"));
        // A minimal ELF64 header with one PT_LOAD program header.
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert!(!needs_interpreter(&elf));
        elf[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert!(needs_interpreter(&elf));
    }
}
