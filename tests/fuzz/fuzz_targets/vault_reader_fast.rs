//! The fast canonical reader on arbitrary bytes: it never panics, and a
//! vault it takes is written back (`to_canonical`) into bytes it takes
//! again as the same vault. The generic grammar under it
//! (`canonical::parse`) and the combined reader never panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runvault::vault::testing::canonical;
use runvault::vault::testing::format::EncryptedVault;
use runvault::vault::testing::fuzzing::read_fast;
use runvault_fuzz::assert_writes_back;

fuzz_target!(|data: &[u8]| {
    let _ = canonical::parse(data);
    let _ = EncryptedVault::parse(data);
    if let Some(vault) = read_fast(data) {
        assert_writes_back(&vault);
    }
});
