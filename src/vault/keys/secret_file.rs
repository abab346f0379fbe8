//! A new secret file on disk (a machine key file or an age identity):
//! written once, private, and never inside the vault directory that jobs
//! get.

use std::path::Path;

use crate::core::fs::{FsError, create_dir_with_mode, create_new, parent_dir};
use crate::core::secret::SecretBytes;
use crate::vault::error::VaultError;

/// Writes `contents`, a new secret file (a key file or an identity), at
/// `path`: mode 0400, `O_EXCL`, missing parent directories created 0700.
/// Refuses to overwrite anything, and a place inside the vault directory
/// `vault_dir` (it is mounted into jobs); `what` and `default` name the
/// file in that refusal.
pub(crate) fn write_new_secret_file(
    path: &Path,
    vault_dir: &Path,
    what: &str,
    default: &str,
    contents: &SecretBytes,
) -> Result<(), VaultError> {
    let parent = parent_dir(path);
    if let (Ok(parent), Ok(dir)) = (parent.canonicalize(), vault_dir.canonicalize())
        && parent.starts_with(&dir)
    {
        return Err(VaultError::Usage(format!(
            "refusing to put {what} inside the vault directory `{}`: keep it outside \
             (default {default})",
            dir.display()
        )));
    }
    create_dir_with_mode(parent, 0o700)?;
    create_new(path, contents.expose(), 0o400).map_err(|err| match err {
        FsError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            VaultError::Usage(format!(
                "`{}` already exists; refusing to overwrite a key",
                path.display()
            ))
        }
        other => other.into(),
    })
}
