//! `runvault render TEMPLATE [-o OUT]`: replaces every `DATAOPS_VAULT(PATH)`
//! in a text file (a `profiles.yml`, a `.netrc`) and writes the result to
//! standard output, or to OUT created 0600 atomically (its missing parent
//! directories created 0700, `mkdir -p` style). Every reference is
//! resolved before anything is written, so an unknown path (exit 3) leaves
//! no output at all.

use std::path::Path;

use crate::core::fs::{self, Limit};
use crate::core::secret::SecretBytes;
use crate::jobs::error::JobsError;
use crate::jobs::resolve::{self, Place, Source, Target};
use crate::vault::{Credential, ReadOnlyDir, VaultError};

/// Resolves `template`. With `output`, writes it there (0600, atomic; a
/// file others can read is refused) and returns `None`; else returns the
/// text for standard output.
pub fn render(
    dir: &ReadOnlyDir,
    credential: impl FnOnce() -> Result<Credential, VaultError>,
    template: &Path,
    output: Option<&Path>,
) -> Result<Option<SecretBytes>, JobsError> {
    let text = fs::read_nofollow(template, Limit::TEMPLATE)?;
    let rendered = match Source::scan(Place::Template(template.to_path_buf()), text.clone())? {
        None => SecretBytes::new(text),
        Some(source) => {
            let sources = [source];
            let resolved = resolve::resolve(dir, credential, &sources, &[], Target::File)?;
            resolved
                .texts
                .into_iter()
                .next()
                .expect("one text per source")
        }
    };
    match output {
        Some(output) => {
            fs::create_private_parents(output)?;
            fs::write_owned(output, rendered.expose(), fs::Owned::PLAINTEXT)?;
            Ok(None)
        }
        None => Ok(Some(rendered)),
    }
}
