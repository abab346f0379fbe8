//! File access with the guarantees the vault and config.toml need.
//!
//! Two writers replace a file, each atomically (a reader sees the old file
//! or the new one, never a mix) and durably (file fsynced, renamed over the
//! target, directory fsynced). Symlinks are refused, never followed.
//!
//! - [`write_atomic`], for the vault's own files and `config.toml`: a named
//!   temp file in the same directory (created 0600 with `O_EXCL`), given
//!   the target's owner and mode. A crash leaves at worst a stray temp file
//!   that the next writer removes ([`remove_stray_temps`]); these files are
//!   ciphertext or carry their own protection.
//! - [`write_owned`], for what runvault writes for the user who runs it:
//!   plaintext (`export -o`, `render -o`, views) and the binary `runner
//!   install` copies. The new file belongs to that user with a fixed mode
//!   (a target another user owns is refused), and it is written as an
//!   unnamed `O_TMPFILE` inode that gets a name only once complete and
//!   fsynced, so a killed command leaves no readable plaintext behind.
//!
//! Every file runvault reads is read by [`read_nofollow`] (or its
//! variants): opened without following a symlink and without blocking, so
//! a FIFO planted where a file should be cannot hang the command; refused
//! unless `fstat` says it is a regular file; refused if larger than the
//! [`Limit`] of its kind, checked on the size before reading and again on
//! the bytes read, so a file that grows while it is read cannot make the
//! read unbounded.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core::exit::{self, ExitStatus};
use crate::core::failpoint;
use crate::core::harden::current_uid;

/// Marks runvault's temp files: `.NAME.<random>.rvtmp`.
const TEMP_SUFFIX: &str = ".rvtmp";

/// What went wrong touching a file.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An I/O operation failed.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// What was being done ("read", "write", "rename", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file is a symlink, which runvault never follows.
    #[error("`{path}` is a symbolic link; refusing to follow it (replace it with the real file)")]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },
    /// Not a regular file (a FIFO, a device, a socket, a directory): a FIFO
    /// would block the reader forever, a device could be read forever.
    #[error(
        "{what} `{path}` is a {kind}, not a regular file; refusing to use it \
         (replace it with a regular file)"
    )]
    NotRegular {
        /// What the file should be ("vault file", "passphrase file").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What it is instead ("FIFO (named pipe)", "directory", ...).
        kind: &'static str,
    },
    /// A file larger than runvault reads for its kind (README "Limits").
    #[error(
        "{what} `{path}` is larger than the limit of {max} bytes ({human}); \
         refusing to read it (see \"Limits\" in the README)"
    )]
    TooLarge {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        max: u64,
        /// The limit for people ("4 KiB").
        human: String,
    },
    /// A file holding a secret can be read by other users.
    #[error(
        "{what} `{path}` is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {path}` first"
    )]
    TooOpen {
        /// What the file is ("passphrase file", "key file").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file holding a secret owned by another user (who could change it).
    #[error("{what} `{path}` is owned by uid {uid}, neither you nor root; refusing to trust it")]
    ForeignOwner {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Refusing to write into an existing file that others may read.
    #[error(
        "`{path}` exists with mode {mode:04o}, readable by group or others; \
         refusing to write plaintext into it (remove it or `chmod 600` it first)"
    )]
    ExistingTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Refusing to write into a file or directory another user owns: that
    /// user could read the plaintext, or replace what runvault wrote.
    #[error(
        "{what} `{path}` is owned by uid {uid}, not by you (uid {me}); refusing to write into it, \
         since its owner could read or replace what runvault writes (remove it, or `chown` it to you)"
    )]
    NotYours {
        /// What it is ("output file", "view directory", ...).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The user running runvault.
        me: u32,
    },
    /// The directory's filesystem cannot create an unnamed temp file.
    #[error(
        "cannot create an unnamed temp file (O_TMPFILE) for the {what} in `{dir}`: {source}; \
         runvault writes plaintext and programs only that way, so that a crash never leaves \
         a copy under a temp name (write to a directory on tmpfs, ext4, xfs or btrfs)"
    )]
    NoUnnamedTemp {
        /// What was to be written.
        what: &'static str,
        /// The target's directory.
        dir: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl FsError {
    /// Builds the I/O variant; used as `.map_err(FsError::io("read", path))`.
    pub fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> FsError + 'p {
        move |source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                FsError::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                FsError::Io {
                    action,
                    path: path.to_path_buf(),
                    source,
                }
            }
        }
    }

    /// Whether the error says the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// Whether the error says this user may not read (or search) the path:
    /// the file may well exist.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
    }
}

impl ExitStatus for FsError {
    fn exit_code(&self) -> u8 {
        exit::OTHER
    }
}

/// The most bytes runvault reads from one kind of file, and what the kind
/// is called in messages. The values are documented in the README
/// ("Limits") and docs/troubleshooting.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What the file is, in messages ("passphrase file", "template").
    pub what: &'static str,
    /// Largest size read, in bytes.
    pub max_bytes: u64,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

impl Limit {
    /// A passphrase file: only its first line is used.
    pub const PASSPHRASE_FILE: Limit = Limit::of("passphrase file", 4 * KIB);
    /// A runner registration token file.
    pub const TOKEN_FILE: Limit = Limit::of("token file", 4 * KIB);
    /// A machine key file: 64 hex characters and a newline.
    pub const KEY_FILE: Limit = Limit::of("key file", 512);
    /// `vault.salt` (and `vault.salt.next`): runvault writes 64 bytes.
    pub const SALT_FILE: Limit = Limit::of("salt file", 4 * KIB);
    /// A template `render` reads.
    pub const TEMPLATE: Limit = Limit::of("template", 16 * MIB);
    /// A plaintext YAML file `import` reads.
    pub const IMPORT: Limit = Limit::of("import file", 256 * MIB);
    /// A file `set --from-file` stores as one value: the largest value.
    pub const VALUE: Limit = Limit::of("value file", 4 * MIB);
    /// `vault.yml` (bounded per line by its readers, not as a whole).
    pub const VAULT_FILE: Limit = Limit::of("vault file", u64::MAX);

    /// A limit of `max_bytes` for files called `what`.
    pub const fn of(what: &'static str, max_bytes: u64) -> Limit {
        Limit { what, max_bytes }
    }

    /// A file of any size (files runvault itself or the runner writes).
    pub const fn any(what: &'static str) -> Limit {
        Limit::of(what, u64::MAX)
    }

    /// The limit for people: "4 KiB", "16 MiB", "512 bytes".
    pub fn human(&self) -> String {
        match self.max_bytes {
            n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
            n if n >= KIB && n % KIB == 0 => format!("{} KiB", n / KIB),
            n => format!("{n} bytes"),
        }
    }

    /// The error for a file over this limit.
    pub fn exceeded(&self, path: &Path) -> FsError {
        FsError::TooLarge {
            what: self.what,
            path: path.to_path_buf(),
            max: self.max_bytes,
            human: self.human(),
        }
    }
}

/// Opens a file for reading without following a symlink at its last
/// component, and without blocking (a FIFO opens at once instead of
/// waiting for a writer; [`read_nofollow`] then refuses it).
pub fn open_nofollow(path: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(FsError::io("open", path))
}

/// What a file that is not a regular file is, for messages.
pub fn kind_name(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO (named pipe)"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Checks what `fstat` said of an open file: a regular file within `limit`.
fn check_regular(meta: &std::fs::Metadata, path: &Path, limit: Limit) -> Result<(), FsError> {
    if !meta.file_type().is_file() {
        return Err(FsError::NotRegular {
            what: limit.what,
            path: path.to_path_buf(),
            kind: kind_name(meta.file_type()),
        });
    }
    if meta.len() > limit.max_bytes {
        return Err(limit.exceeded(path));
    }
    Ok(())
}

/// Reads an open regular file of `size` bytes (as `fstat` said), at most
/// `limit.max_bytes` of it even if it grows meanwhile.
fn read_bounded(file: &File, size: u64, path: &Path, limit: Limit) -> Result<Vec<u8>, FsError> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    read_to_end_bounded(file, &mut bytes, limit.max_bytes).map_err(|err| match err {
        Bounded::Over => limit.exceeded(path),
        Bounded::Io(source) => FsError::io("read", path)(source),
    })?;
    Ok(bytes)
}

/// Why [`read_to_end_bounded`] stopped.
#[derive(Debug)]
pub enum Bounded {
    /// More than the limit was there to read.
    Over,
    /// The read failed.
    Io(io::Error),
}

/// Appends everything `reader` yields to `buf`, failing with
/// [`Bounded::Over`] as soon as more than `max` bytes were read (never
/// reading more than `max + 1`). For files and standard input.
pub fn read_to_end_bounded(reader: impl Read, buf: &mut Vec<u8>, max: u64) -> Result<(), Bounded> {
    let start = buf.len();
    reader
        .take(max.saturating_add(1))
        .read_to_end(buf)
        .map_err(Bounded::Io)?;
    if (buf.len() - start) as u64 > max {
        return Err(Bounded::Over);
    }
    Ok(())
}

/// Reads a whole file, refusing a symlink, anything but a regular file,
/// and a file larger than `limit`.
pub fn read_nofollow(path: &Path, limit: Limit) -> Result<Vec<u8>, FsError> {
    let file = open_nofollow(path)?;
    let meta = file.metadata().map_err(FsError::io("inspect", path))?;
    check_regular(&meta, path, limit)?;
    let bytes = read_bounded(&file, meta.len(), path, limit)?;
    tracing::trace!(path = %path.display(), bytes = bytes.len(), "read");
    Ok(bytes)
}

/// Reads a whole file, or `None` if it does not exist (see [`read_nofollow`]).
pub fn read_optional(path: &Path, limit: Limit) -> Result<Option<Vec<u8>>, FsError> {
    match read_nofollow(path, limit) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

/// Reads a file that holds a secret (passphrase file, key file), as
/// [`read_nofollow`] does, and also refuses a file owned by someone other
/// than the caller or root, and a file that group or others can access,
/// as ssh does for keys.
pub fn read_private(path: &Path, limit: Limit) -> Result<Vec<u8>, FsError> {
    let what = limit.what;
    tracing::debug!(path = %path.display(), what, "opening a secret file (its contents are never logged)");
    let file = open_nofollow(path)?;
    let meta = file.metadata().map_err(FsError::io("inspect", path))?;
    check_regular(&meta, path, limit)?;
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 && meta.uid() != crate::core::harden::current_uid() {
        return Err(FsError::ForeignOwner {
            what,
            path: path.to_path_buf(),
            uid: meta.uid(),
        });
    }
    if mode & 0o077 != 0 {
        return Err(FsError::TooOpen {
            what,
            path: path.to_path_buf(),
            mode,
        });
    }
    read_bounded(&file, meta.len(), path, limit)
}

/// How [`write_atomic`] treats permissions.
#[derive(Debug, Clone, Copy)]
pub struct WriteMode {
    /// Mode of a file that does not exist yet (an existing file keeps its own).
    pub new_file_mode: u32,
    /// Bits of an existing file's mode that are kept (`0o7777` keeps all).
    pub keep_mode_mask: u32,
}

impl WriteMode {
    /// A private file: 0600 when new; an existing file keeps owner and mode.
    pub const PRIVATE: WriteMode = WriteMode {
        new_file_mode: 0o600,
        keep_mode_mask: 0o7777,
    };
}

/// Replaces `target` with `contents` atomically and durably (see module doc).
///
/// The target's owner and mode are kept; a symlinked target is refused. On any
/// error the target is unchanged and the temp file is removed.
pub fn write_atomic(target: &Path, contents: &[u8], mode: WriteMode) -> Result<(), FsError> {
    write_atomic_unless_changed(target, contents, mode, || Ok(true)).map(|_| ())
}

/// [`write_atomic`], asking `still_current` right before the rename whether
/// the target is still what the new contents were computed from.
///
/// For files that another program rewrites on its own (the runner's
/// `config.toml`): when `still_current` answers `false`, the temp file is
/// removed, the target is left alone and `Ok(false)` is returned so the
/// caller can start over from the new contents. `Ok(true)`: replaced.
pub fn write_atomic_unless_changed(
    target: &Path,
    contents: &[u8],
    mode: WriteMode,
    still_current: impl FnOnce() -> Result<bool, FsError>,
) -> Result<bool, FsError> {
    let dir = parent_dir(target);
    let existing = match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(FsError::Symlink {
                path: target.to_path_buf(),
            });
        }
        Ok(meta) => Some(meta),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(FsError::io("inspect", target)(err)),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(TEMP_SUFFIX)
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(FsError::io("create a temp file in", dir))?;
    let temp_path = temp.path().to_path_buf();
    temp.write_all(contents)
        .map_err(FsError::io("write", &temp_path))?;
    let final_mode = existing.as_ref().map_or(mode.new_file_mode, |m| {
        m.mode() & 0o7777 & mode.keep_mode_mask
    });
    if let Some(meta) = &existing {
        // Keep the owner: only possible (and only needed) when it differs.
        let (uid, gid) = (meta.uid(), meta.gid());
        let temp_meta = temp
            .as_file()
            .metadata()
            .map_err(FsError::io("inspect", &temp_path))?;
        if (temp_meta.uid(), temp_meta.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(temp.as_file(), Some(uid), Some(gid))
                .map_err(FsError::io("set the owner of", &temp_path))?;
        }
    }
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(final_mode))
        .map_err(FsError::io("set the mode of", &temp_path))?;
    temp.as_file()
        .sync_all()
        .map_err(FsError::io("sync", &temp_path))?;
    tracing::debug!(
        temp = %temp_path.display(),
        bytes = contents.len(),
        mode = format_args!("{final_mode:04o}"),
        "wrote and fsynced a temp file"
    );
    if !still_current()? {
        tracing::debug!(target = %target.display(), "target changed meanwhile; temp file dropped");
        // Dropping `temp` removes it.
        return Ok(false);
    }
    temp.persist(target)
        .map_err(|err| FsError::io("rename over", target)(err.error))?;
    sync_dir(dir)?;
    tracing::debug!(target = %target.display(), "renamed over the target; directory fsynced");
    Ok(true)
}

/// What [`write_owned`] writes: the file belongs to the user running
/// runvault, with a fixed mode.
#[derive(Debug, Clone, Copy)]
pub struct Owned {
    /// What the file is, for messages ("output file", "view file", ...).
    pub what: &'static str,
    /// Its mode, whatever the file it replaces had.
    pub mode: u32,
    /// Refuse to replace an existing file readable by group or others:
    /// the user may not know who already has it open.
    pub refuse_open_target: bool,
}

impl Owned {
    /// Plaintext the user asked for (`export -o`, `render -o`).
    pub const PLAINTEXT: Owned = Owned {
        what: "output file",
        mode: 0o600,
        refuse_open_target: true,
    };
    /// A file of a plaintext view (its directory is runvault's own).
    pub const VIEW_FILE: Owned = Owned {
        what: "view file",
        mode: 0o600,
        refuse_open_target: false,
    };
    /// The program jobs run (the binary `runner install` copies).
    pub const EXECUTABLE: Owned = Owned {
        what: "binary",
        mode: 0o755,
        refuse_open_target: false,
    };
}

/// Refuses `path` (a file or a directory) if it exists and another user
/// owns it, or if it is a symlink; returns its metadata when it exists.
pub fn refuse_not_mine(
    path: &Path,
    what: &'static str,
) -> Result<Option<std::fs::Metadata>, FsError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(FsError::Symlink {
            path: path.to_path_buf(),
        }),
        Ok(meta) if meta.uid() != current_uid() => Err(FsError::NotYours {
            what,
            path: path.to_path_buf(),
            uid: meta.uid(),
            me: current_uid(),
        }),
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(FsError::io("inspect", path)(err)),
    }
}

/// Replaces `target` with `contents`, as a new file owned by the user
/// running runvault with mode `kind.mode` (see the module doc).
///
/// The contents go into an unnamed `O_TMPFILE` inode in the target's
/// directory, which is fsynced and only then linked: straight to the
/// target's name when there is no target yet, otherwise to a temp name
/// renamed over the target at once (the only moment a crash leaves a named
/// copy: between those two system calls, mode `kind.mode`, owned by the
/// user). A filesystem without `O_TMPFILE` is an error, never a silent
/// fallback to a named temp file. A target another user owns, a symlink,
/// and (with `refuse_open_target`) a target others can read are refused
/// before anything is written.
pub fn write_owned(target: &Path, contents: &[u8], kind: Owned) -> Result<(), FsError> {
    use rustix::fs::{AtFlags, CWD, Mode, OFlags};

    let dir = parent_dir(target);
    let existing = refuse_not_mine(target, kind.what)?;
    if let Some(meta) = &existing {
        let current = meta.mode() & 0o7777;
        if kind.refuse_open_target && current & 0o077 != 0 {
            return Err(FsError::ExistingTooOpen {
                path: target.to_path_buf(),
                mode: current,
            });
        }
    }
    let fd = rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|err| {
        let source = io::Error::from(err);
        match err {
            rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL => {
                FsError::NoUnnamedTemp {
                    what: kind.what,
                    dir: dir.to_path_buf(),
                    source,
                }
            }
            // Named by the target, never by a temp file: the user named
            // the file, the temp file is ours.
            _ => FsError::io("write", target)(source),
        }
    })?;
    let mut file = File::from(fd);
    file.write_all(contents)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(kind.mode)))
        .and_then(|()| file.sync_all())
        .map_err(FsError::io("write", target))?;
    tracing::debug!(
        dir = %dir.display(),
        bytes = contents.len(),
        mode = format_args!("{:04o}", kind.mode),
        "wrote and fsynced an unnamed temp file"
    );
    failpoint::stop_at("owned-file-written");
    // Root may link the descriptor itself; anyone else goes through /proc.
    let link = |name: &Path| {
        rustix::fs::linkat(&file, "", CWD, name, AtFlags::EMPTY_PATH).or_else(|err| {
            if err == rustix::io::Errno::EXIST {
                return Err(err);
            }
            let by_proc = format!("/proc/self/fd/{}", file.as_raw_fd());
            rustix::fs::linkat(CWD, by_proc.as_str(), CWD, name, AtFlags::SYMLINK_FOLLOW)
        })
    };
    if existing.is_none() {
        match link(target) {
            Ok(()) => return sync_dir(dir),
            // Created meanwhile: replace it as below.
            Err(rustix::io::Errno::EXIST) => {}
            Err(err) => return Err(FsError::io("link the new file as", target)(err.into())),
        }
    }
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut attempts = 0;
    let temp = loop {
        let temp = dir.join(format!(".{file_name}.{}{TEMP_SUFFIX}", random_tag()));
        match link(&temp) {
            Ok(()) => break temp,
            Err(rustix::io::Errno::EXIST) if attempts < 8 => attempts += 1,
            Err(err) => return Err(FsError::io("link the new file as", &temp)(err.into())),
        }
    };
    if let Err(err) = std::fs::rename(&temp, target) {
        let _ = std::fs::remove_file(&temp);
        return Err(FsError::io("rename over", target)(err));
    }
    sync_dir(dir)?;
    tracing::debug!(target = %target.display(), "linked and renamed over the target; directory fsynced");
    Ok(())
}

/// Six random letters and digits, for a temp file's name.
fn random_tag() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(6)
        .map(char::from)
        .collect()
}

/// Fsyncs a directory so that a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FsError::io("sync directory", dir))
}

/// Removes temp files that a crashed writer left next to `targets`, files
/// of one directory (its first target's), in one listing of it. Call it
/// only while holding the writers' lock.
pub fn remove_stray_temps(targets: &[&Path]) -> Result<usize, FsError> {
    let Some(first) = targets.first() else {
        return Ok(0);
    };
    let dir = parent_dir(first);
    debug_assert!(targets.iter().all(|target| parent_dir(target) == dir));
    let prefixes: Vec<String> = (targets.iter())
        .filter_map(|target| target.file_name())
        .map(|name| format!(".{}.", name.to_string_lossy()))
        .collect();
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(FsError::io("list", dir)(err)),
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let is_stray = entry_name.ends_with(TEMP_SUFFIX)
            && prefixes.iter().any(|prefix| entry_name.starts_with(prefix));
        if is_stray {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(FsError::io("remove stray temp file", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether a directory entry name is one of runvault's temp files.
pub fn is_temp_file_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Creates a directory (and missing parents) with the given mode for the
/// directory itself; an existing directory is left as it is.
pub fn create_dir_with_mode(dir: &Path, mode: u32) -> Result<(), FsError> {
    match create_dir_unsynced(dir, mode)? {
        Some(parent) => sync_dir(&parent),
        None => Ok(()),
    }
}

/// Creates the missing parent directories of `target`, a file the user
/// asked for (`render -o ~/.dbt/profiles.yml`), each 0700 and owned by the
/// user running runvault, as `mkdir -p -m 700` would. A path with a `..`
/// is not extended: where it leads would change as directories appear, so
/// a missing parent there is a plain error naming the directory.
pub fn create_private_parents(target: &Path) -> Result<(), FsError> {
    let parent = parent_dir(target);
    if parent.exists() {
        return Ok(());
    }
    if parent
        .components()
        .any(|part| part == std::path::Component::ParentDir)
    {
        return Err(FsError::Io {
            action: "create the missing directory",
            path: parent.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "the path has a `..` (create the directory first)",
            ),
        });
    }
    create_dir_with_mode(parent, 0o700)
}

/// [`create_dir_with_mode`] without the sync of the parent directory:
/// returns the parent to sync if the directory was created, so a caller
/// can sync it beside its other writes (it must, before reporting
/// success).
pub fn create_dir_unsynced(dir: &Path, mode: u32) -> Result<Option<PathBuf>, FsError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(None),
        Ok(_) => {
            return Err(FsError::Io {
                action: "use as a directory",
                path: dir.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "it exists and is not a directory",
                ),
            });
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(FsError::io("inspect", dir)(err)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(FsError::io("create directory", dir))?;
    // The umask may have narrowed the mode; set it exactly.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(FsError::io("set the mode of", dir))?;
    Ok(dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf))
}

/// Creates a new file that must not exist yet (`O_EXCL`), with `mode`,
/// writes and fsyncs it. Used for files that are never replaced (key files).
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), FsError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(FsError::io("create", path))?;
    let result = file
        .write_all(contents)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all());
    if let Err(err) = result {
        let _ = std::fs::remove_file(path);
        return Err(FsError::io("write", path)(err));
    }
    sync_dir(parent_dir(path))
}

/// Whether `path` is `dir` or lies inside it, symlinks resolved. `path`
/// need not exist yet: its nearest existing ancestor is resolved and the
/// rest appended. False when `dir` cannot be resolved.
pub fn lies_within(path: &Path, dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(".").join(path)
    };
    let mut rest = Vec::new();
    for ancestor in absolute.ancestors() {
        if let Ok(resolved) = ancestor.canonicalize() {
            let full = rest
                .iter()
                .rev()
                .fold(resolved, |acc: PathBuf, part| acc.join(part));
            return full.starts_with(&dir);
        }
        if let Some(name) = ancestor.file_name() {
            rest.push(name.to_os_string());
        }
    }
    false
}

/// The directory a file lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_creates_private_file_and_keeps_existing_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.yml");
        write_atomic(&target, b"one", WriteMode::PRIVATE).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o600);
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&target, b"two", WriteMode::PRIVATE).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o640);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file may remain");
    }

    #[test]
    fn write_atomic_refuses_symlink_and_open_plaintext_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            write_atomic(&link, b"x", WriteMode::PRIVATE),
            Err(FsError::Symlink { .. })
        ));
        assert!(matches!(
            write_owned(&link, b"x", Owned::PLAINTEXT),
            Err(FsError::Symlink { .. })
        ));
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            write_owned(&real, b"x", Owned::PLAINTEXT),
            Err(FsError::ExistingTooOpen { mode: 0o644, .. })
        ));
        assert_eq!(std::fs::read(&real).unwrap(), b"keep");
    }

    #[test]
    fn write_owned_gives_a_fresh_file_its_fixed_mode_and_leaves_no_temp_name() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.yml");
        write_owned(&target, b"one", Owned::PLAINTEXT).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        let first = std::fs::metadata(&target).unwrap();
        assert_eq!(first.mode() & 0o7777, 0o600);
        assert_eq!(first.uid(), current_uid());
        // An existing binary of the user, mode 0700, becomes a new 0755 inode.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
        write_owned(&target, b"two", Owned::EXECUTABLE).unwrap();
        let second = std::fs::metadata(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"two");
        assert_eq!(second.mode() & 0o7777, 0o755);
        assert_ne!(
            second.ino(),
            first.ino(),
            "replaced, not rewritten in place"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.yml"], "no temp name may remain");
    }

    #[test]
    fn write_owned_refuses_a_filesystem_without_o_tmpfile() {
        // procfs cannot make unnamed temp files; nothing is written there.
        let err =
            write_owned(Path::new("/proc/runvault-test"), b"x", Owned::PLAINTEXT).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot create an unnamed temp file (O_TMPFILE) for the output file in `/proc`: \
             Operation not supported (os error 95); runvault writes plaintext and programs only \
             that way, so that a crash never leaves a copy under a temp name (write to a \
             directory on tmpfs, ext4, xfs or btrfs)"
        );
    }

    #[test]
    fn lies_within_resolves_symlinks_and_paths_that_do_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secrets, &link).unwrap();
        assert!(lies_within(&secrets, &secrets));
        assert!(lies_within(&secrets.join("a/b"), &secrets));
        assert!(lies_within(&link.join("view"), &secrets));
        assert!(!lies_within(&dir.path().join("secretsx"), &secrets));
        assert!(!lies_within(dir.path(), &secrets));
    }

    #[test]
    fn read_private_refuses_group_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, b"secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private(&file, Limit::PASSPHRASE_FILE).unwrap_err();
        assert!(err.to_string().contains("mode 0644"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_private(&file, Limit::PASSPHRASE_FILE).unwrap(),
            b"secret\n"
        );
    }

    #[test]
    fn reads_are_bounded_even_past_what_fstat_said() {
        // A file that grows after its `fstat` (here: a reader longer than
        // the size given) is still cut at the limit, never read to its end.
        let source = vec![b'x'; 100];
        let mut buf = Vec::new();
        assert!(matches!(
            read_to_end_bounded(&source[..], &mut buf, 99),
            Err(Bounded::Over)
        ));
        assert_eq!(buf.len(), 100, "at most limit + 1 bytes read");
        let mut buf = Vec::new();
        read_to_end_bounded(&source[..], &mut buf, 100).unwrap();
        assert_eq!(buf, source);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, &source).unwrap();
        let limit = Limit::of("test file", 99);
        let err = read_bounded(&File::open(&file).unwrap(), 10, &file, limit).unwrap_err();
        assert!(matches!(err, FsError::TooLarge { max: 99, .. }), "{err}");
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let err = read_nofollow(&dir.path().join("d"), limit).unwrap_err();
        assert!(
            err.to_string().starts_with("test file `")
                && err.to_string().contains("is a directory"),
            "{err}"
        );
    }

    #[test]
    fn stray_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vault.yml");
        let salt = dir.path().join("vault.salt");
        std::fs::write(dir.path().join(".vault.yml.abc123.rvtmp"), b"junk").unwrap();
        std::fs::write(dir.path().join(".vault.salt.def456.rvtmp"), b"junk").unwrap();
        std::fs::write(dir.path().join(".other.ghi789.rvtmp"), b"keep").unwrap();
        std::fs::write(dir.path().join("other"), b"keep").unwrap();
        assert_eq!(remove_stray_temps(&[&target, &salt]).unwrap(), 2);
        assert!(dir.path().join("other").exists());
        assert!(
            dir.path().join(".other.ghi789.rvtmp").exists(),
            "not a target's"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn write_unless_changed_leaves_a_changed_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("config.toml");
        std::fs::write(&target, b"theirs").unwrap();
        let written =
            write_atomic_unless_changed(&target, b"ours", WriteMode::PRIVATE, || Ok(false))
                .unwrap();
        assert!(!written);
        assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp removed"
        );
        assert!(
            write_atomic_unless_changed(&target, b"ours", WriteMode::PRIVATE, || Ok(true)).unwrap()
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"ours");
    }
}
