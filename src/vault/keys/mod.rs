//! The keys of a vault and what is done with them: the key slots that wrap
//! the data key ([`slots`]; hosts' identities and recipient slots in
//! [`identity`]; their files on disk in [`secret_file`]), value sealing and the audit key ([`seal`]),
//! the version policy ([`versions`]) and rotation ([`rotation`]). Below the
//! opened vault and the streaming passes, which both use them.

pub(crate) mod identity;
pub(crate) mod rotation;
pub(crate) mod seal;
pub(crate) mod secret_file;
pub(crate) mod slots;
pub(crate) mod versions;
