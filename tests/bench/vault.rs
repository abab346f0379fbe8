//! Library-level costs of the vault, phase by phase, over generated vaults
//! of N services (`SERVICE_i: {USERNAME, PASSWORD}`, 2N values) in key-file
//! mode: where a command's time goes (read, parse, MAC, crypto, emit,
//! fsync), without process start. `set streamed (splice)` is what `set`
//! runs before its commit: read, one pass with both MACs, the new bytes. `cargo bench --bench vault` prints a
//! markdown table (medians, milliseconds); `RUNVAULT_BENCH_N=10,1000` picks
//! the sizes. Under `cargo test` it runs once at N=10 as a smoke test.
//! docs/benchmarks.md has the numbers and the whole-process figures.

use std::path::Path;
use std::time::{Duration, Instant};

use runvault::core::fs::{WriteMode, write_atomic};
use runvault::core::progress::NoProgress;
use runvault::core::secret::{Key32, SecretBytes};
use runvault::vault::testing::crypto::{KdfParams, Subkeys, argon2id};
use runvault::vault::testing::format::{DEFAULT_KEEP, EncryptedVault, compute_mac};
use runvault::vault::testing::salt::Salt;
use runvault::vault::testing::tree::Tree;
use runvault::vault::testing::value::Plain;
use runvault::vault::testing::{read, slots, splice};
use runvault::vault::{Credential, KeyPath, UnlockedVault, VaultDir};

/// Runs `f` repeatedly (at least 3 times, up to `budget`) and returns the
/// median duration in milliseconds.
fn median_ms(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed() < budget && times.len() < 200) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// The generated plaintext: N services with a user name and a password.
fn services(n: usize) -> Tree<Plain> {
    let mut root = indexmap::IndexMap::with_capacity(n);
    for i in 0..n {
        let leaf = |text: String| Tree::Leaf(Plain::text(text.into_bytes()));
        let mut service = indexmap::IndexMap::new();
        service.insert("USERNAME".to_string(), leaf(format!("user_{i}")));
        service.insert(
            "PASSWORD".to_string(),
            leaf(format!(
                "pw-{i:08}-{:016x}",
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )),
        );
        root.insert(format!("SERVICE_{i}"), Tree::Map(service));
    }
    Tree::Map(root)
}

struct Row {
    n: usize,
    bytes: usize,
    cells: Vec<(&'static str, f64)>,
}

fn measure(n: usize, dir: &Path, budget: Duration) -> Row {
    let key = Key32::random();
    let credential = || Credential::KeyFile(Key32::from_bytes(*key.expose()));
    let salt = Salt::generate();
    let vault_path = dir.join("vault.yml");
    let mut unlocked = UnlockedVault::create(&[credential()], &salt, DEFAULT_KEEP, &vault_path);
    unlocked.merge(services(n), "import", &NoProgress).unwrap();
    let bytes = unlocked.seal().to_canonical();
    std::fs::write(&vault_path, &bytes).unwrap();
    std::fs::write(dir.join("vault.salt"), salt.as_bytes()).unwrap();
    let store = VaultDir::new(dir, Duration::from_secs(1));
    let target = KeyPath::parse(&format!("SERVICE_{}.PASSWORD", n / 2)).unwrap();
    let (parsed, _) = EncryptedVault::parse(&bytes).unwrap();
    let slot = slots::unlock(&parsed.header, &credential(), &salt, &vault_path).unwrap();
    let subkeys = Subkeys::derive(&slot.data_key);
    let opened = UnlockedVault::unlock(parsed.clone(), &salt, &credential(), &vault_path).unwrap();
    let twenty: Vec<KeyPath> = (0..20)
        .map(|i| KeyPath::parse(&format!("SERVICE_{}.PASSWORD", i * n / 20)).unwrap())
        .collect();

    let mut cells = Vec::new();
    let mut cell = |name, f: &mut dyn FnMut()| cells.push((name, median_ms(budget, f)));
    cell("read file", &mut || {
        std::hint::black_box(std::fs::read(&vault_path).unwrap());
    });
    cell("tree parse", &mut || {
        std::hint::black_box(EncryptedVault::parse(&bytes).unwrap());
    });
    cell("MAC (tree)", &mut || {
        std::hint::black_box(compute_mac(
            &subkeys.mac,
            &parsed.header,
            &parsed.secrets,
            &parsed.history,
        ));
    });
    cell("unlock slot (HKDF+AES)", &mut || {
        std::hint::black_box(
            slots::unlock(&parsed.header, &credential(), &salt, &vault_path).unwrap(),
        );
    });
    cell("decrypt 1 value", &mut || {
        std::hint::black_box(opened.get(&target).unwrap());
    });
    cell("open+get (tree)", &mut || {
        let (vault, _) = store.open(&credential()).unwrap();
        std::hint::black_box(vault.get(&target).unwrap());
    });
    cell("read_selected 1", &mut || {
        let wanted = read::Wanted {
            values: vec![target.clone()],
            subtrees: Vec::new(),
        };
        std::hint::black_box(read::read_selected(&store, &credential(), &wanted).unwrap());
    });
    cell("read_selected 20", &mut || {
        let wanted = read::Wanted {
            values: twenty.clone(),
            subtrees: Vec::new(),
        };
        std::hint::black_box(read::read_selected(&store, &credential(), &wanted).unwrap());
    });
    let value = Plain::text(b"new-password".to_vec());
    cell("set in memory", &mut || {
        let mut copy =
            UnlockedVault::unlock(parsed.clone(), &salt, &credential(), &vault_path).unwrap();
        copy.set(&target, &value).unwrap();
    });
    cell("set streamed (splice)", &mut || {
        let edit = splice::SetEdit {
            path: &target,
            value: &value,
            if_version: None,
            time: 1_800_000_000,
        };
        match splice::set(&store, &credential(), &edit).unwrap() {
            Ok(spliced) => std::hint::black_box(spliced.bytes.len()),
            Err(_) => panic!("a canonical vault is spliced"),
        };
    });
    cell("seal+emit", &mut || {
        std::hint::black_box(opened.seal().to_canonical());
    });
    let scratch = dir.join("scratch.yml");
    cell("write_atomic+fsync", &mut || {
        write_atomic(&scratch, &bytes, WriteMode::PRIVATE).unwrap();
    });
    cell("decrypt all", &mut || {
        std::hint::black_box(opened.decrypt_under(&KeyPath::root()).unwrap());
    });
    Row {
        n,
        bytes: bytes.len(),
        cells,
    }
}

fn main() {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let sizes: Vec<usize> = match std::env::var("RUNVAULT_BENCH_N") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("N"))
            .collect(),
        Err(_) if benching => vec![10, 1_000, 10_000, 100_000],
        Err(_) => vec![10],
    };
    let budget = Duration::from_millis(if benching { 1500 } else { 10 });
    let mut rows = Vec::new();
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        rows.push(measure(n, dir.path(), budget));
    }
    let names: Vec<&str> = rows[0].cells.iter().map(|(name, _)| *name).collect();
    println!(
        "| phase (ms, median) | {} |",
        rows.iter()
            .map(|r| format!("N={} ({} KiB)", r.n, r.bytes / 1024))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(rows.len()));
    for (index, name) in names.iter().enumerate() {
        let cells: Vec<String> = rows
            .iter()
            .map(|r| format!("{:.3}", r.cells[index].1))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    if benching {
        let passphrase = SecretBytes::new(b"correct horse battery staple".to_vec());
        let salt = Salt::generate();
        let ms = median_ms(Duration::from_secs(2), || {
            std::hint::black_box(argon2id(&passphrase, salt.as_bytes(), KdfParams::DEFAULT));
        });
        println!("\nArgon2id at the defaults (64 MiB, t=3, p=4): {ms:.1} ms (median)");
    }
}
