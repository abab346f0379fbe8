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

/// The credentials `init` turns into its first slots; its passphrase is
/// a new one ([`MIN_PASSPHRASE_CHARS`] unless `allow_short`).
pub fn init_credentials(
    global: &GlobalArgs,
    kdf: &KdfArgs,
    allow_short: bool,
) -> Result<Vec<Credential>, VaultError> {
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
        let passphrase = new_passphrase_file(file, allow_short)?;
        credentials.push(Credential::Passphrase(passphrase, params));
    } else if credentials.is_empty() {
        let passphrase = prompt_twice(
            "New vault passphrase: ",
            "Repeat the passphrase: ",
            "passphrase",
        )?;
        check_length(&passphrase, None, allow_short)?;
        credentials.push(Credential::Passphrase(passphrase, params));
    }
    Ok(credentials)
}

/// Shortest new passphrase (in characters) without `--allow-short-passphrase`:
/// a vault copy can be attacked offline, one Argon2id run per guess.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Refuses a new passphrase shorter than [`MIN_PASSPHRASE_CHARS`] (from
/// `file`, or typed when `None`) unless `allow_short`. Its length is not
/// said: it is a secret's.
fn check_length(
    passphrase: &SecretBytes,
    file: Option<&Path>,
    allow_short: bool,
) -> Result<(), VaultError> {
    let bytes = passphrase.expose();
    let chars = std::str::from_utf8(bytes).map_or(bytes.len(), |text| text.chars().count());
    if allow_short || chars >= MIN_PASSPHRASE_CHARS {
        return Ok(());
    }
    let what = match file {
        Some(file) => format!("the passphrase in `{}`", file.display()),
        None => "the new passphrase".to_string(),
    };
    Err(VaultError::Usage(format!(
        "{what} is shorter than {MIN_PASSPHRASE_CHARS} characters; choose a longer one \
         (a few words), or pass --allow-short-passphrase for a throwaway vault; nothing was changed"
    )))
}

/// A new passphrase read from `file` (mode 0600 or stricter), checked
/// before anything else is asked or run.
pub fn new_passphrase_file(file: &Path, allow_short: bool) -> Result<SecretBytes, VaultError> {
    let passphrase = read_passphrase_file(file)?;
    check_length(&passphrase, Some(file), allow_short)?;
    Ok(passphrase)
}

/// A new passphrase for `key add passphrase` / `key passwd`: `from_file`
/// (read by [`new_passphrase_file`]) or asked twice on the terminal.
pub fn new_passphrase(
    from_file: Option<SecretBytes>,
    kdf: &KdfArgs,
    base: KdfParams,
    allow_short: bool,
) -> Result<Credential, VaultError> {
    let params = kdf_params(kdf, base)?;
    let passphrase = match from_file {
        Some(passphrase) => passphrase,
        None => {
            let typed = prompt_twice(
                "New passphrase: ",
                "Repeat the new passphrase: ",
                "passphrase",
            )?;
            check_length(&typed, None, allow_short)?;
            typed
        }
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
    /// A hidden prompt on the terminal naming this path, asked twice.
    Prompt(&'a str),
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
        ValueSource::Prompt(path) => {
            if !std::io::stdin().is_terminal() && !has_terminal() {
                return Err(VaultError::Usage(
                    "no value given: use --stdin, --from-file FILE or --generate, or run on a terminal".into(),
                ));
            }
            prompt_twice(
                &format!("Value for {path}: "),
                &format!("Repeat the value for {path}: "),
                "value",
            )
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
