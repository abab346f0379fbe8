//! Where secrets come from: passphrase files, key files, hidden prompts on
//! the terminal, standard input. Never argv, never an environment variable's
//! value (the environment only names files).

use std::io::IsTerminal;
use std::path::Path;

use crate::cli::args::GlobalArgs;
use crate::cli::kdf_args::KdfArgs;
use crate::core::fs::{Bounded, Limit, read_private};
use crate::core::secret::SecretBytes;
use crate::vault::VaultError;
use crate::vault::{
    Credential, KdfOverride, KdfParams, SALT_FILE, VAULT_FILE, read_identity_file, read_key_file,
};

/// The credential that opens the vault: the key file when given, else the
/// identity, else the passphrase (file, else prompt).
pub fn unlock_credential(global: &GlobalArgs) -> Result<Credential, VaultError> {
    if let Some(key_file) = &global.key_file {
        return Ok(Credential::KeyFile(read_key_file(key_file)?));
    }
    if let Some(identity) = identity_file(global)? {
        return Ok(Credential::Identity(read_identity_file(identity)?));
    }
    let passphrase = match &global.passphrase_file {
        Some(file) => read_passphrase_file(file)?,
        None => {
            require_vault(&global.dir)?;
            prompt_once(
                &format!("Passphrase for {}: ", global.dir.display()),
                "passphrase",
            )?
        }
    };
    Ok(Credential::Passphrase(passphrase, KdfParams::DEFAULT))
}

/// The identity file `--identity` (or `RUNVAULT_IDENTITY`) names, if any;
/// the flag without a file is for `keygen --identity` only.
pub fn identity_file(global: &GlobalArgs) -> Result<Option<&Path>, VaultError> {
    match global.identity.as_deref() {
        Some(path) if path.as_os_str().is_empty() => Err(VaultError::Usage(
            "--identity needs a FILE (only `keygen --identity` takes none)".into(),
        )),
        other => Ok(other),
    }
}

/// Refuses a directory with no vault before the passphrase is asked for
/// (a `--dir` typo is reported at once, exit 1, with or without a
/// terminal), as the writers do: neither `vault.yml` nor `vault.salt` is
/// there. Two `stat`s; the command reads the files later as it always did.
fn require_vault(dir: &Path) -> Result<(), VaultError> {
    let absent = |name: &str| {
        std::fs::symlink_metadata(dir.join(name))
            .is_err_and(|err| err.kind() == std::io::ErrorKind::NotFound)
    };
    if absent(VAULT_FILE) && absent(SALT_FILE) {
        return Err(VaultError::NoVault {
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Every secret the global options name (key file and passphrase), in that
/// order; with neither, the passphrase asked on the terminal.
pub fn all_credentials(global: &GlobalArgs) -> Result<Vec<Credential>, VaultError> {
    let mut credentials = Vec::new();
    if let Some(key_file) = &global.key_file {
        credentials.push(Credential::KeyFile(read_key_file(key_file)?));
    }
    if let Some(identity) = identity_file(global)? {
        credentials.push(Credential::Identity(read_identity_file(identity)?));
    }
    if let Some(file) = &global.passphrase_file {
        credentials.push(passphrase_from_file(file)?);
    }
    if credentials.is_empty() {
        credentials.push(unlock_credential(global)?);
    }
    Ok(credentials)
}

/// A passphrase credential from a passphrase file.
pub fn passphrase_from_file(file: &Path) -> Result<Credential, VaultError> {
    Ok(Credential::Passphrase(
        read_passphrase_file(file)?,
        KdfParams::DEFAULT,
    ))
}

/// The credentials `init` turns into its first slots.
pub fn init_credentials(global: &GlobalArgs, kdf: &KdfArgs) -> Result<Vec<Credential>, VaultError> {
    let params = kdf_params(kdf, KdfParams::DEFAULT)?;
    let mut credentials = Vec::new();
    if let Some(key_file) = &global.key_file {
        credentials.push(Credential::KeyFile(read_key_file(key_file).map_err(
            |err| match err {
                VaultError::Fs(fs) if fs.is_not_found() => VaultError::Usage(format!(
                    "key file `{}` does not exist; create it with `runvault keygen {}`",
                    key_file.display(),
                    key_file.display()
                )),
                other => other,
            },
        )?));
    }
    if let Some(file) = &global.passphrase_file {
        credentials.push(Credential::Passphrase(read_passphrase_file(file)?, params));
    } else if credentials.is_empty() {
        let passphrase = prompt_twice(
            "New vault passphrase: ",
            "Repeat the passphrase: ",
            "passphrase",
        )?;
        credentials.push(Credential::Passphrase(passphrase, params));
    }
    Ok(credentials)
}

/// A new passphrase for `key add passphrase` / `key passwd`.
pub fn new_passphrase(
    file: Option<&Path>,
    kdf: &KdfArgs,
    base: KdfParams,
) -> Result<Credential, VaultError> {
    let params = kdf_params(kdf, base)?;
    let passphrase = match file {
        Some(file) => read_passphrase_file(file)?,
        None => prompt_twice(
            "New passphrase: ",
            "Repeat the new passphrase: ",
            "passphrase",
        )?,
    };
    Ok(Credential::Passphrase(passphrase, params))
}

/// Argon2id parameters from flags over `base`, checked against the bounds.
pub fn kdf_params(kdf: &KdfArgs, base: KdfParams) -> Result<KdfParams, VaultError> {
    kdf_override(kdf)
        .apply(base)
        .map_err(|reason| invalid_kdf(&reason))
}

/// The Argon2id flags as given, for commands that apply them per slot.
pub fn kdf_override(kdf: &KdfArgs) -> KdfOverride {
    KdfOverride {
        memory_kib: kdf.kdf_memory,
        iterations: kdf.kdf_iterations,
        parallelism: kdf.kdf_parallelism,
    }
}

/// The usage error for Argon2id parameters out of bounds.
pub fn invalid_kdf(reason: &str) -> VaultError {
    VaultError::Usage(format!("invalid Argon2id parameters: {reason}"))
}

/// The first line of a passphrase file (mode 0600 or stricter).
fn read_passphrase_file(file: &Path) -> Result<SecretBytes, VaultError> {
    let contents = SecretBytes::new(read_private(file, Limit::PASSPHRASE_FILE)?);
    let first_line = contents
        .expose()
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
    if first_line.is_empty() {
        return Err(VaultError::Usage(format!(
            "passphrase file `{}` is empty",
            file.display()
        )));
    }
    Ok(SecretBytes::new(first_line.to_vec()))
}

fn no_terminal(what: &str) -> VaultError {
    VaultError::Usage(format!(
        "no {what} given and no terminal to ask on: pass --passphrase-file FILE (mode 0600) \
         or --key-file FILE, or set RUNVAULT_PASSPHRASE_FILE / RUNVAULT_KEY_FILE"
    ))
}

/// Whether a controlling terminal is there to ask on.
pub(super) fn has_terminal() -> bool {
    std::fs::File::open("/dev/tty").is_ok()
}

fn prompt_once(prompt: &str, what: &str) -> Result<SecretBytes, VaultError> {
    if !has_terminal() {
        return Err(no_terminal(what));
    }
    let answer = rpassword::prompt_password(prompt).map_err(|_| no_terminal(what))?;
    let answer = SecretBytes::from(answer);
    if answer.is_empty() {
        return Err(VaultError::Usage(format!(
            "the {what} is empty; nothing was changed"
        )));
    }
    Ok(answer)
}

fn prompt_twice(first: &str, second: &str, what: &str) -> Result<SecretBytes, VaultError> {
    let answer = prompt_once(first, what)?;
    let repeat = prompt_once(second, what)?;
    if answer != repeat {
        return Err(VaultError::Usage(
            "the two entries do not match; nothing was changed".into(),
        ));
    }
    Ok(answer)
}

/// Where `set` reads the value from.
#[derive(Clone, Copy)]
pub enum ValueSource<'a> {
    /// Standard input; one trailing newline is dropped.
    Stdin,
    /// A file, byte for byte.
    File(&'a Path),
    /// A random password of this many characters.
    Generate(usize),
    /// A hidden prompt on the terminal, asked twice.
    Prompt,
}

/// Shortest and longest generated password.
const GENERATE_LEN: std::ops::RangeInclusive<usize> = 8..=4096;

/// Reads standard input, at most `limit` bytes (more is an error, named
/// `-` as a file argument would be); one trailing newline is dropped.
pub fn read_stdin(limit: Limit) -> Result<SecretBytes, VaultError> {
    let mut buffer = SecretBytes::new(Vec::new());
    crate::core::fs::read_to_end_bounded(
        std::io::stdin().lock(),
        buffer.expose_mut(),
        limit.max_bytes,
    )
    .map_err(|err| match err {
        Bounded::Over => VaultError::from(limit.exceeded(Path::new("-"))),
        Bounded::Io(err) => VaultError::Usage(format!("cannot read standard input: {err}")),
    })?;
    let trimmed = buffer
        .expose()
        .strip_suffix(b"\n")
        .map(|v| v.strip_suffix(b"\r").unwrap_or(v));
    if let Some(trimmed) = trimmed {
        buffer = SecretBytes::new(trimmed.to_vec());
    }
    Ok(buffer)
}

/// Reads the value to store.
pub fn read_value(source: ValueSource<'_>) -> Result<SecretBytes, VaultError> {
    use rand::Rng;
    match source {
        ValueSource::Stdin => read_stdin(Limit::VALUE),
        ValueSource::File(path) => Ok(SecretBytes::new(crate::core::fs::read_nofollow(
            path,
            Limit::VALUE,
        )?)),
        ValueSource::Generate(len) => {
            if !GENERATE_LEN.contains(&len) {
                return Err(VaultError::Usage(format!(
                    "--generate length {len} is outside {}..={}",
                    GENERATE_LEN.start(),
                    GENERATE_LEN.end()
                )));
            }
            let password: String = rand::rngs::OsRng
                .sample_iter(rand::distributions::Alphanumeric)
                .take(len)
                .map(char::from)
                .collect();
            Ok(SecretBytes::from(password))
        }
        ValueSource::Prompt => {
            if !std::io::stdin().is_terminal() && !has_terminal() {
                return Err(VaultError::Usage(
                    "no value given: use --stdin, --from-file FILE or --generate, or run on a terminal".into(),
                ));
            }
            prompt_twice("Value: ", "Repeat the value: ", "value")
        }
    }
}

/// `--timeout`, `--max-age`: `90d`, `30s`, `1h 30m`, in whole seconds, not zero.
pub fn parse_duration(option: &str, text: &str) -> Result<u64, VaultError> {
    humantime::parse_duration(text)
        .ok()
        .map(|duration| duration.as_secs())
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| {
            VaultError::Usage(format!(
                "{option} `{text}` is not a duration of at least one second (e.g. 90s, 10m, 90d)"
            ))
        })
}
