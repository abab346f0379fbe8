//! The machinery of `tests/host/docs.rs`: extract the shell blocks of a
//! Markdown page, split them into commands, rewrite host paths into a temp
//! layout, run them in one shell session per page and check what they did.
//!
//! The conventions a page follows (the annotations, `# exit N`, console
//! blocks, the rewrite rules) are described in `tests/host/docs.rs`.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{CHEAP_KDF, PASSPHRASE, is_root, write_private};

/// How a block is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ```` ```sh ```` / ```` ```bash ````: commands; only exit codes are checked.
    Shell,
    /// ```` ```console ````: `$ ` commands followed by their expected output.
    Console,
    /// `<!-- docs-test: setup ... -->`: hidden commands, run like a shell block.
    Setup,
}

/// A runnable block of a page.
#[derive(Debug, Clone)]
pub struct Block {
    /// Line (1-based) of the opening fence or setup comment.
    pub line: usize,
    /// How it runs.
    pub kind: Kind,
    /// Its lines, each with its line number.
    pub body: Vec<(usize, String)>,
    /// What its annotations ask, in order.
    pub annotations: Vec<Annotation>,
}

/// What an annotation asks of the block after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Annotation {
    /// `skip (reason)`: never run.
    Skip(String),
    /// `needs-root`: run only as root.
    NeedsRoot,
    /// `engine`: run only when a Docker engine answers.
    Engine,
}

/// One command of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// Line (1-based) where it starts.
    pub line: usize,
    /// Its text, possibly several lines.
    pub text: String,
    /// A block that starts with `#!` is one script, run by `sh`.
    pub script: bool,
    /// The exit code it must end with (`# exit N` on its last line, else 0).
    pub exit: i32,
    /// Console blocks: the output it must print (stdout and stderr together).
    pub output: Option<Vec<String>>,
}

/// The annotation prefix.
const MARK: &str = "<!-- docs-test:";

/// The fenced blocks that run, and the setup comments, of a page in order.
pub fn extract(text: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut pending: Vec<(usize, Annotation)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if let Some(rest) = trimmed.strip_prefix(MARK) {
            let rest = rest.trim();
            if rest == "setup" {
                if let Some((line, _)) = pending.first() {
                    return Err(format!("line {line}: annotation without a block"));
                }
                let start = i;
                let mut body = Vec::new();
                i += 1;
                while i < lines.len() && lines[i].trim() != "-->" {
                    body.push((i + 1, lines[i].to_string()));
                    i += 1;
                }
                if i == lines.len() {
                    return Err(format!("line {}: setup comment is not closed", start + 1));
                }
                blocks.push(Block {
                    line: start + 1,
                    kind: Kind::Setup,
                    body,
                    annotations: Vec::new(),
                });
            } else if let Some(skip) = rest.strip_prefix("skip") {
                let reason = skip
                    .trim()
                    .strip_suffix("-->")
                    .map(str::trim)
                    .and_then(|r| r.strip_prefix('('))
                    .and_then(|r| r.strip_suffix(')'))
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "line {}: write `{MARK} skip (reason) -->`: a skip needs a reason",
                            i + 1
                        )
                    })?;
                pending.push((i + 1, Annotation::Skip(reason.to_string())));
            } else if rest == "needs-root -->" {
                pending.push((i + 1, Annotation::NeedsRoot));
            } else if rest == "engine -->" {
                pending.push((i + 1, Annotation::Engine));
            } else {
                return Err(format!("line {}: unknown annotation `{}`", i + 1, trimmed));
            }
            i += 1;
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = lines[i].len() - trimmed.len();
            let start = i;
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                let line = lines[i];
                let cut = line.len() - line.trim_start().len();
                body.push((i + 1, line[cut.min(indent)..].to_string()));
                i += 1;
            }
            if i == lines.len() {
                return Err(format!("line {}: code block is not closed", start + 1));
            }
            let kind = match info.split_whitespace().next().unwrap_or("") {
                "sh" | "bash" => Some(Kind::Shell),
                "console" => Some(Kind::Console),
                _ => None,
            };
            match kind {
                Some(kind) => blocks.push(Block {
                    line: start + 1,
                    kind,
                    body,
                    annotations: pending.drain(..).map(|(_, a)| a).collect(),
                }),
                None if !pending.is_empty() => {
                    return Err(format!(
                        "line {}: an annotation before a block that never runs",
                        start + 1
                    ));
                }
                None => {}
            }
        } else if let (false, Some((line, _))) = (trimmed.is_empty(), pending.first()) {
            return Err(format!(
                "line {line}: the annotation must directly precede a code block"
            ));
        }
        i += 1;
    }
    match pending.first() {
        Some((line, _)) => Err(format!("line {line}: annotation without a block")),
        None => Ok(blocks),
    }
}

/// The exit code a command line asks for with a trailing `# exit N`.
pub fn expected_exit(last_line: &str) -> i32 {
    last_line
        .rfind(" #")
        .and_then(|at| last_line[at + 2..].trim_start().strip_prefix("exit "))
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// Whether `text` is a complete shell command (`bash -n` accepts it).
fn complete(text: &str) -> bool {
    if text.trim_end().ends_with('\\') {
        return false;
    }
    Command::new("bash")
        .args(["-n", "-c", text])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Splits a block into its commands.
pub fn commands(block: &Block) -> Result<Vec<Cmd>, String> {
    let body = &block.body;
    if block.kind == Kind::Console {
        return console_commands(body);
    }
    if body.first().is_some_and(|(_, l)| l.starts_with("#!")) {
        let text: Vec<&str> = body.iter().map(|(_, l)| l.as_str()).collect();
        return Ok(vec![Cmd {
            line: body[0].0,
            text: text.join("\n"),
            script: true,
            exit: 0,
            output: None,
        }]);
    }
    let mut cmds = Vec::new();
    let mut current: Vec<&(usize, String)> = Vec::new();
    for entry in body {
        let line = entry.1.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        current.push(entry);
        let text: Vec<&str> = current.iter().map(|(_, l)| l.as_str()).collect();
        let text = text.join("\n");
        if complete(&text) {
            cmds.push(Cmd {
                line: current[0].0,
                exit: expected_exit(&entry.1),
                text,
                script: false,
                output: None,
            });
            current.clear();
        }
    }
    match current.first() {
        Some((line, _)) => Err(format!("line {line}: incomplete shell command")),
        None => Ok(cmds),
    }
}

fn console_commands(body: &[(usize, String)]) -> Result<Vec<Cmd>, String> {
    let mut cmds: Vec<Cmd> = Vec::new();
    let mut continued = false;
    for (number, line) in body {
        if continued {
            let cmd = cmds.last_mut().expect("continued command");
            cmd.text.push('\n');
            cmd.text.push_str(line);
            cmd.exit = expected_exit(line);
            continued = line.ends_with('\\');
        } else if let Some(text) = line.strip_prefix("$ ") {
            cmds.push(Cmd {
                line: *number,
                text: text.to_string(),
                script: false,
                exit: expected_exit(text),
                output: Some(Vec::new()),
            });
            continued = text.ends_with('\\');
        } else if let Some(cmd) = cmds.last_mut() {
            cmd.output.get_or_insert_with(Vec::new).push(line.clone());
        } else {
            return Err(format!(
                "line {number}: console output before any `$ ` command"
            ));
        }
    }
    Ok(cmds)
}

/// Absolute host paths that move into the temp layout's disk root.
const DISK_PREFIXES: [&str; 6] = [
    "/secrets",
    "/etc/",
    "/opt/",
    "/srv/",
    "/usr/local/",
    "/root/",
];
/// Absolute host paths that move into the temp layout's RAM root.
const RAM_PREFIXES: [&str; 2] = ["/run/", "/dev/shm/"];

/// A page's temp host: a disk root and a RAM root the paths move into.
pub struct Layout {
    /// The disk root (`/secrets` becomes `ROOT/secrets`).
    pub root: tempfile::TempDir,
    /// The RAM root, on `/dev/shm` (`/run/x` becomes `RAM/run/x`).
    pub ram: tempfile::TempDir,
    /// Appended to runner names, so containers are unique to this layout.
    pub suffix: String,
}

impl Layout {
    /// A fresh layout with the directories every host has, the admin's
    /// passphrase file and the `runvault` wrapper on a private PATH entry.
    pub fn new(binary: &Path) -> Layout {
        let root = tempfile::tempdir().expect("temp dir");
        let ram = match tempfile::tempdir_in("/dev/shm") {
            Ok(ram) => ram,
            Err(_) => tempfile::tempdir().expect("temp dir"),
        };
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let suffix = format!("-docs-{}-{n}", std::process::id());
        let layout = Layout { root, ram, suffix };
        for dir in [
            "work",
            "root",
            "srv",
            "etc/bash_completion.d",
            "usr/local/share/man/man1",
            ".docs-test/out",
            ".docs-test/bin",
        ] {
            std::fs::create_dir_all(layout.disk(dir)).unwrap();
        }
        for dir in ["run", "dev/shm"] {
            std::fs::create_dir_all(layout.ram.path().join(dir)).unwrap();
        }
        write_private(&layout.pass_file(), format!("{PASSPHRASE}\n").as_bytes());
        let wrapper = layout.disk(".docs-test/bin/runvault");
        std::fs::write(
            &wrapper,
            wrapper_script(binary, layout.root.path(), &layout.suffix),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        layout
    }

    /// A path under the disk root.
    pub fn disk(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// The file that stands in for the admin typing the passphrase.
    pub fn pass_file(&self) -> PathBuf {
        self.disk("root/admin.pass")
    }

    /// `text` with the host paths moved into this layout, and the README's
    /// release build replaced by the test's binary.
    pub fn rewrite(&self, text: &str) -> String {
        let text = text
            .replace("cargo build --release &&", "true &&")
            .replace("./target/release/runvault", "runvault");
        let root = self.root.path().display().to_string();
        let ram = self.ram.path().display().to_string();
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let at_boundary = out
                .chars()
                .next_back()
                .is_none_or(|c| " \t\n=:'\"(<>|;".contains(c));
            let moved = at_boundary
                .then(|| {
                    DISK_PREFIXES
                        .iter()
                        .map(|p| (p, &root))
                        .chain(RAM_PREFIXES.iter().map(|p| (p, &ram)))
                        .find(|(prefix, _)| {
                            rest.starts_with(**prefix)
                                && (prefix.ends_with('/')
                                    || !rest[prefix.len()..]
                                        .starts_with(|c: char| c.is_alphanumeric() || c == '_'))
                        })
                })
                .flatten();
            if let Some((_, base)) = moved {
                out.push_str(base);
            }
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }

    /// Output with the layout's roots taken out again, as the page shows it.
    pub fn unrewrite(&self, text: &str) -> String {
        text.replace(&self.ram.path().display().to_string(), "")
            .replace(&self.root.path().display().to_string(), "")
            .replace(&self.suffix, "")
    }
}

/// `runvault` for the pages: the test's binary, plus what a test host
/// needs. Cheap Argon2id parameters for the commands that create or change a
/// passphrase slot (unless the page gives its own), so a debug build does not
/// spend seconds per slot. For `runner` commands and `doctor`: the container
/// name gets the layout's suffix (unique to this run), and the defaults that
/// name host paths or the vendor's image are given explicitly in the layout
/// (`--config-dir ROOT/srv/dataops-runner-NAME/config`, `--bin-dir
/// ROOT/opt/runvault/bin`, `RUNVAULT_KEY_FILE=ROOT/etc/runvault/vault.key`,
/// `--image` the fixture runner image), unless the page gives them.
fn wrapper_script(binary: &Path, root: &Path, suffix: &str) -> String {
    format!(
        r#"#!/bin/sh
# docs test: the real runvault in a temp host layout (see tests/host/docs/session.rs).
bin='{bin}' root='{root}' suffix='{suffix}' image='{image}'
cheap=no runner=no doctor=no sub= kdf=no cfg=no img=no bindir=no key=no named=no
for arg in "$@"; do
  [ "$arg" = -- ] && break
  case $arg in
    --kdf-*) kdf=yes ;;
    --config-dir|--config-dir=*) cfg=yes ;;
    --image|--image=*) img=yes ;;
    --bin-dir|--bin-dir=*) bindir=yes ;;
    --key-file|--key-file=*) key=yes ;;
    --name|--name=*) named=yes ;;
    init|rekey|passwd|passphrase) cheap=yes ;;
    install) cheap=yes sub=install ;;
    configure) sub=configure ;;
    runner) runner=yes ;;
    doctor) doctor=yes ;;
  esac
done
if [ $runner = yes ] || [ $doctor = yes ]; then
  name= prev=
  for arg do
    shift
    if [ "$prev" = --name ]; then arg=$arg$suffix; name=$arg; fi
    case $arg in --name=*) arg=$arg$suffix; name=${{arg#--name=}} ;; esac
    set -- "$@" "$arg"
    prev=$arg
  done
  if [ $named = no ] && [ -n "${{AGENT_NAME:-}}" ]; then
    name=$AGENT_NAME$suffix
    set -- "$@" --name "$name"
  fi
  if [ -n "$name" ]; then
    [ $cfg = no ] && set -- "$@" --config-dir "$root/srv/dataops-runner-$name/config"
    [ $img = no ] && set -- "$@" --image "$image"
  fi
  if [ $runner = yes ] && [ $key = no ] && [ -z "${{RUNVAULT_KEY_FILE:-}}" ]; then
    export RUNVAULT_KEY_FILE="$root/etc/runvault/vault.key"
  fi
  if [ $bindir = no ] && {{ [ $doctor = yes ] || [ -n "$sub" ]; }}; then
    set -- "$@" --bin-dir "$root/opt/runvault/bin"
  fi
fi
[ $cheap = yes ] && [ $kdf = no ] && set -- "$@" {cheap}
exec "$bin" "$@"
"#,
        bin = binary.display(),
        root = root.display(),
        image = crate::support::runner::IMAGE,
        cheap = CHEAP_KDF.join(" "),
    )
}

/// Removes the containers a page created (their names carry `suffix`).
fn remove_containers(suffix: &str) {
    let Ok(listed) = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("name={suffix}"))
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// What running a page did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Blocks run.
    pub blocks: usize,
    /// Commands run.
    pub commands: usize,
    /// Skipped blocks: line, reason, number of commands.
    pub skipped: Vec<(usize, String, usize)>,
}

/// Why `block` is not run here, if it is not.
fn skip_reason(block: &Block) -> Result<Option<String>, String> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    for annotation in &block.annotations {
        match annotation {
            Annotation::Skip(reason) => return Ok(Some(reason.clone())),
            Annotation::NeedsRoot if !is_root() => {
                if ci {
                    return Err(format!(
                        "line {}: the block needs root, and CI=true requires it to run",
                        block.line
                    ));
                }
                return Ok(Some("needs root, and the tests do not run as root".into()));
            }
            // Under CI=true, `engine` fails when no engine answers.
            Annotation::Engine if !crate::support::runner::engine("a docs block") => {
                return Ok(Some("needs a Docker engine, and none answers".into()));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Runs every block of the page `text` in a fresh layout, one shell session
/// for the whole page; the first command that ends unexpectedly fails it.
pub fn run_page(text: &str, binary: &Path) -> Result<Tally, String> {
    let blocks = extract(text)?;
    let layout = Layout::new(binary);
    let out = layout.disk(".docs-test/out");
    let mut tally = Tally::default();
    let mut script = String::from("cd \"$DOCS_TEST_WORK\"\n");
    let mut planned = Vec::new();
    for block in &blocks {
        let cmds = commands(block).map_err(|e| format!("block at line {}: {e}", block.line))?;
        if let Some(reason) = skip_reason(block)? {
            tally.skipped.push((block.line, reason, cmds.len()));
            continue;
        }
        tally.blocks += 1;
        for cmd in cmds {
            let n = planned.len();
            let mut text = layout.rewrite(&cmd.text);
            if cmd.script {
                let file = out.join(format!("{n}.sh"));
                std::fs::write(&file, &text).unwrap();
                text = format!("sh '{}'", file.display());
            }
            let _ = writeln!(
                script,
                "{{ {text}\n}} >'{out}/{n}.out' 2>&1 </dev/null\necho $? >'{out}/{n}.rc'\n\
                 [ \"$(cat '{out}/{n}.rc')\" = {exit} ] || exit 0",
                out = out.display(),
                exit = cmd.exit
            );
            planned.push(cmd);
        }
    }
    let script_file = layout.disk(".docs-test/page.sh");
    std::fs::write(&script_file, &script).unwrap();
    let path = format!(
        "{}:{}",
        layout.disk(".docs-test/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("setsid");
    shell
        .args(["-w", "timeout", "600", "bash"])
        .arg(&script_file)
        .env("PATH", path)
        .env("HOME", layout.disk("root"))
        .env("DOCS_TEST_WORK", layout.disk("work"))
        .env("RUNVAULT_DIR", layout.disk("secrets"))
        .env("RUNVAULT_VIEWS_FILE", layout.disk("etc/runvault/views"))
        .env("RUNVAULT_CONFIG", layout.disk("etc/runvault/runvault.toml"))
        .env("RUNVAULT_STATE_DIR", layout.disk("var/lib/runvault"))
        .env("RUNVAULT_PASSPHRASE_FILE", layout.pass_file())
        .env("NO_COLOR", "1")
        .env("LC_ALL", "C");
    for var in [
        "RUNVAULT_KEY_FILE",
        "RUNVAULT_AUDIT_LOG",
        "AGENT_NAME",
        "REGISTRATION_TOKEN",
        "DATAOPS_URL",
        "CARGO_TARGET_DIR",
    ] {
        shell.env_remove(var);
    }
    let status = shell.output();
    if blocks
        .iter()
        .any(|b| b.annotations.contains(&Annotation::Engine))
    {
        remove_containers(&layout.suffix);
    }
    let status = status.map_err(|e| format!("cannot run bash: {e}"))?;
    for (n, cmd) in planned.iter().enumerate() {
        let Ok(rc) = std::fs::read_to_string(out.join(format!("{n}.rc"))) else {
            return Err(format!(
                "line {}: `{}` did not run (the page's shell ended: {status:?})",
                cmd.line, cmd.text
            ));
        };
        let output = std::fs::read_to_string(out.join(format!("{n}.out"))).unwrap_or_default();
        let output = layout.unrewrite(&output);
        let rc: i32 = rc.trim().parse().unwrap_or(-1);
        if rc != cmd.exit {
            return Err(format!(
                "line {}: `{}` exited {rc}, the page expects {}; its output:\n{output}",
                cmd.line, cmd.text, cmd.exit
            ));
        }
        if let Some(expected) = &cmd.output {
            let actual: Vec<&str> = output.lines().map(str::trim_end).collect();
            if !lines_match(expected, &actual) {
                return Err(format!(
                    "line {}: `{}` printed\n{}\nbut the page shows\n{}",
                    cmd.line,
                    cmd.text,
                    actual.join("\n"),
                    expected.join("\n")
                ));
            }
        }
        tally.commands += 1;
    }
    Ok(tally)
}

/// Whether `actual` matches `expected` line by line, where a line `...`
/// stands for any number of lines and `...` inside a line for any text.
pub fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual.split_first().is_some_and(|(line, more)| {
            line_matches(first.trim_end(), line) && lines_match(rest, more)
        }),
    }
}

fn line_matches(pattern: &str, line: &str) -> bool {
    let pieces: Vec<&str> = pattern.split("...").collect();
    if pieces.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}
