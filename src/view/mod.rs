//! Plaintext views: for DataOps job images that read `/secrets/vault.yml`
//! as plaintext YAML, runvault keeps a plaintext copy of the vault in RAM
//! (a tmpfs or ramfs directory) that the runner mounts at `/secrets`
//! instead of the encrypted directory.
//!
//! A view directory holds `vault.yml` (exactly `runvault export --format
//! yaml`), `vault.salt` (the vault's salt, unchanged) and `.runvault-view`
//! (which vault and generation it was made from). Every file is replaced
//! atomically, so a job reading during a refresh sees the old or the new
//! file. The host's list of views is a small file (default
//! `/etc/runvault/views`, one directory per line); every command that
//! changes the vault refreshes each listed view right after its commit.

use std::path::{Path, PathBuf};

use crate::core::exit::{self, ExitStatus};
use crate::core::fs::{self, FsError, Limit, Owned, WriteMode};
use crate::core::hex::hex;
use crate::vault::{KeyPath, RenderFormat, Salt, UnlockedVault, VaultError, render_vault};

/// The host's list of views unless `--views-file` says otherwise.
pub const DEFAULT_VIEWS_FILE: &str = "/etc/runvault/views";
/// The marker file in a view directory.
pub const MARKER_FILE: &str = ".runvault-view";
/// Every file a view directory holds.
pub const VIEW_FILES: [&str; 3] = ["vault.yml", "vault.salt", MARKER_FILE];

/// `statfs` magic numbers of the RAM filesystems a view may live on.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Why a view could not be written or listed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// File access failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Decrypting the vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The view directory is on a disk filesystem.
    #[error(
        "`{dir}` is not on tmpfs or ramfs: a plaintext view must never reach a disk; \
         use a RAM directory (e.g. under /run) or pass --allow-disk if you accept that"
    )]
    OnDisk {
        /// The directory.
        dir: PathBuf,
    },
    /// The view directory is the vault directory itself, or inside it
    /// (which is mounted into jobs, and holds the encrypted files only).
    #[error("`{dir}` is the vault directory or inside it; a view must live elsewhere")]
    IsVaultDir {
        /// The directory.
        dir: PathBuf,
    },
    /// A views file line that is not an absolute path.
    #[error("`{file}` line {line}: `{text}` is not an absolute directory path")]
    BadViewsFile {
        /// The views file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

impl ExitStatus for ViewError {
    fn exit_code(&self) -> u8 {
        match self {
            ViewError::Fs(err) => err.exit_code(),
            ViewError::Vault(err) => err.exit_code(),
            ViewError::OnDisk { .. }
            | ViewError::IsVaultDir { .. }
            | ViewError::BadViewsFile { .. } => exit::USAGE,
        }
    }
}

/// What a view's marker records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// The vault directory the view was made from.
    pub vault_dir: PathBuf,
    /// The vault's id (hex).
    pub vault_id: String,
    /// The vault generation the view shows.
    pub generation: u64,
}

/// Whether `dir` is on tmpfs or ramfs.
pub fn is_on_ram(dir: &Path) -> Result<bool, FsError> {
    let stat = rustix::fs::statfs(dir)
        .map_err(|err| FsError::io("inspect the filesystem of", dir)(err.into()))?;
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let kind = i64::from(stat.f_type as i64);
    Ok(kind == TMPFS_MAGIC || kind == RAMFS_MAGIC)
}

/// Writes the view of `vault` into `dir` (created 0700 if missing).
/// `generation` is the committed generation the view shows.
pub fn refresh(
    vault: &UnlockedVault,
    salt: &Salt,
    vault_dir: &Path,
    generation: u64,
    dir: &Path,
    allow_disk: bool,
) -> Result<(), ViewError> {
    if fs::lies_within(dir, vault_dir) {
        return Err(ViewError::IsVaultDir {
            dir: dir.to_path_buf(),
        });
    }
    // Check the filesystem before creating anything: a directory that does
    // not exist yet will live on its nearest existing ancestor's filesystem.
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    if !allow_disk && !is_on_ram(existing)? {
        return Err(ViewError::OnDisk {
            dir: dir.to_path_buf(),
        });
    }
    // Another user's directory or file could hand them the plaintext (or
    // let them swap it): refused before anything is written.
    fs::refuse_not_mine(dir, "view directory")?;
    for name in VIEW_FILES {
        fs::refuse_not_mine(&dir.join(name), Owned::VIEW_FILE.what)?;
    }
    fs::create_dir_with_mode(dir, 0o700)?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(FsError::io("set the mode of", dir))?;
    let plaintext = render_vault(vault, &KeyPath::root(), RenderFormat::Yaml)?;
    fs::write_owned(&dir.join("vault.salt"), salt.as_bytes(), Owned::VIEW_FILE)?;
    fs::write_owned(&dir.join("vault.yml"), plaintext.expose(), Owned::VIEW_FILE)?;
    let marker = Marker {
        vault_dir: vault_dir
            .canonicalize()
            .unwrap_or_else(|_| vault_dir.to_path_buf()),
        vault_id: hex(&vault.header().vault_id),
        generation,
    };
    let text = serde_json::to_string(&marker).expect("markers serialize") + "\n";
    fs::write_owned(&dir.join(MARKER_FILE), text.as_bytes(), Owned::VIEW_FILE)?;
    tracing::info!(view = %dir.display(), generation, "refreshed the plaintext view");
    Ok(())
}

/// Reads a view's marker, if it has one.
pub fn read_marker(dir: &Path) -> Option<Marker> {
    let bytes = fs::read_optional(&dir.join(MARKER_FILE), Limit::any("view marker")).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// One configured view: its directory, and whether it may be on a disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ViewEntry {
    /// The view directory (absolute).
    pub dir: PathBuf,
    /// Added with `--allow-disk`.
    pub allow_disk: bool,
}

/// The views listed in `file` (none if it does not exist). Each line is an
/// absolute directory, optionally followed by ` allow-disk`; `#` starts a
/// comment line.
pub fn read_views(file: &Path) -> Result<Vec<ViewEntry>, ViewError> {
    let Some(bytes) = fs::read_optional(file, Limit::any("views list"))? else {
        return Ok(Vec::new());
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut views = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (dir, allow_disk) = match line.strip_suffix(" allow-disk") {
            Some(dir) => (dir.trim_end(), true),
            None => (line, false),
        };
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(ViewError::BadViewsFile {
                file: file.to_path_buf(),
                line: index + 1,
                text: line.to_string(),
            });
        }
        views.push(ViewEntry { dir, allow_disk });
    }
    Ok(views)
}

/// Writes the list of views (atomically; the parent directory is created 0700).
pub fn write_views(file: &Path, views: &[ViewEntry]) -> Result<(), ViewError> {
    fs::create_dir_with_mode(fs::parent_dir(file), 0o700)?;
    let mut text = String::from(
        "# Plaintext views of the runvault vault, refreshed on every change (one directory per line).\n",
    );
    for view in views {
        text.push_str(&view.dir.to_string_lossy());
        if view.allow_disk {
            text.push_str(" allow-disk");
        }
        text.push('\n');
    }
    fs::write_atomic(file, text.as_bytes(), WriteMode::PRIVATE)?;
    Ok(())
}

/// The systemd unit that refreshes every view at boot, before Docker
/// starts the runner again (the tmpfs is empty after a reboot).
pub fn systemd_unit(binary: &Path, vault_dir: &Path, key_file: &Path, views_file: &Path) -> String {
    format!(
        "# Written by `runvault view install-unit`.\n\
         [Unit]\n\
         Description=Refresh the runvault plaintext views (RAM) before Docker starts\n\
         After=local-fs.target\n\
         Before=docker.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={binary} --dir {dir} --key-file {key} --views-file {views} view refresh --all\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target docker.service\n",
        binary = binary.display(),
        dir = vault_dir.display(),
        key = key_file.display(),
        views = views_file.display(),
    )
}
