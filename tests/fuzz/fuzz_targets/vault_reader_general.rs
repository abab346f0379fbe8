//! The general (serde_yaml) reader on arbitrary bytes: it never panics; an
//! encrypted vault it takes is written back in the canonical layout that
//! the fast reader takes as the same vault; a plaintext document that
//! converts to values (adopting a hand-made vault, `import`) is rendered
//! (`export`) into YAML that converts back to the same values; and every
//! file the linear block reader of plaintext takes (`import`), serde_yaml
//! reads as the same values.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runvault::vault::testing::format::VaultFile;
use runvault::vault::testing::fuzzing::read_general;
use runvault::vault::testing::export::render_tree_yaml;
use runvault::vault::testing::plain_block;
use runvault::vault::testing::plaintext;
use runvault::vault::testing::value::{parse_plain_yaml, tree_from_yaml};
use runvault_fuzz::assert_writes_back;

fuzz_target!(|data: &[u8]| {
    if let Some(fast) = plain_block::read(data) {
        let general = plaintext::read_general(data, std::path::Path::new("in.yml"))
            .map_err(|err| format!("{err}"))
            .expect("serde_yaml reads what the block reader takes");
        assert!(general == fast, "the block reader and serde_yaml differ");
    }
    match read_general(data) {
        Ok(VaultFile::Encrypted(vault)) => assert_writes_back(&vault),
        Ok(VaultFile::Plaintext(doc)) => {
            let Ok(tree) = tree_from_yaml(doc) else {
                return;
            };
            let rendered = render_tree_yaml(&tree);
            let rendered = rendered.expose();
            let again = parse_plain_yaml(rendered)
                .map_err(|err| format!("{err}\n{}", String::from_utf8_lossy(rendered)))
                .expect("rendered values parse as YAML");
            let again = tree_from_yaml(again).unwrap_or_else(|err| {
                panic!("{err}\n{}", String::from_utf8_lossy(rendered));
            });
            assert!(
                again == tree,
                "rendered values read back differently:\n{}",
                String::from_utf8_lossy(rendered)
            );
        }
        Err(_) => {}
    }
});
