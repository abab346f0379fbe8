//! The hooks of `runvault rotate` (docs/rotation.md): an admin's shell
//! command run through `sh -c` with the values on its standard input only
//! (never in argv or the environment), a clean environment, a timeout, and
//! its output passed to our stderr with every value masked. A hook runs in
//! a process group of its own, killed when the hook ends or times out.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus as ProcessStatus, Stdio};
use std::time::{Duration, Instant};

use crate::core::exit::{self, ExitStatus};
use crate::core::secret::SecretBytes;

/// The variables a hook gets from runvault's own environment (when set);
/// nothing else of it is passed on.
pub const KEPT_VARIABLES: [&str; 3] = ["PATH", "HOME", "LANG"];
/// The path being rotated, in every hook's environment.
pub const PATH_VARIABLE: &str = "RUNVAULT_ROTATE_PATH";
/// The account being rotated (`--alternate` only).
pub const USER_VARIABLE: &str = "RUNVAULT_ROTATE_USER";
/// `PATH` when runvault's own environment has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// What a value is replaced with in a hook's output.
const MASK: &[u8] = b"[value hidden]";

/// One hook to run.
pub struct Hook<'h> {
    /// The step's name as the user knows it (`apply`, `test`, `revert`).
    pub step: &'static str,
    /// The shell command.
    pub command: &'h str,
    /// The path being rotated (`RUNVAULT_ROTATE_PATH`).
    pub path: &'h str,
    /// The account being rotated (`RUNVAULT_ROTATE_USER`), with `--alternate`.
    pub user: Option<&'h str>,
    /// The lines of its standard input, in order.
    pub input: &'h [&'h [u8]],
    /// Every value to mask in its output.
    pub secrets: &'h [&'h [u8]],
    /// How long it may run before it is killed.
    pub timeout: Duration,
}

/// Why a hook did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("the {step} hook could not be started: {source}")]
    Spawn {
        /// The step.
        step: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It exited non-zero or was killed by a signal.
    #[error("the {step} hook failed ({status})")]
    Failed {
        /// The step.
        step: &'static str,
        /// `exit code N` or `killed by signal N`.
        status: String,
    },
    /// It ran past the timeout and was killed.
    #[error("the {step} hook did not finish within {timeout} and was killed")]
    Timeout {
        /// The step.
        step: &'static str,
        /// The timeout, as given.
        timeout: String,
    },
}

impl ExitStatus for HookError {
    fn exit_code(&self) -> u8 {
        exit::HOOK_FAILED
    }
}

impl Hook<'_> {
    /// Runs the hook to its end (or its timeout).
    pub fn run(&self) -> Result<(), HookError> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(self.command)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for name in KEPT_VARIABLES {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        if std::env::var_os("PATH").is_none() {
            command.env("PATH", DEFAULT_PATH);
        }
        command.env(PATH_VARIABLE, self.path);
        if let Some(user) = self.user {
            command.env(USER_VARIABLE, user);
        }
        // Its own process group, so a timeout kills what it started too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let spawn = |source| HookError::Spawn {
            step: self.step,
            source,
        };
        let mut child = command.spawn().map_err(spawn)?;
        let mut input = Vec::new();
        for line in self.input {
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        let input = SecretBytes::new(input);
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its input closes the pipe: not an error.
            let _ = stdin.write_all(input.expose());
        }
        crate::core::failpoint::stop_at(&format!("rotate-during-{}", self.step));
        let status = std::thread::scope(|scope| {
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            scope.spawn(|| stdout.map(|out| self.pass_through(out)));
            scope.spawn(|| stderr.map(|err| self.pass_through(err)));
            self.wait(&mut child)
        });
        match status {
            None => Err(HookError::Timeout {
                step: self.step,
                timeout: humantime::format_duration(self.timeout).to_string(),
            }),
            Some(Err(source)) => Err(spawn(source)),
            Some(Ok(status)) if status.success() => Ok(()),
            Some(Ok(status)) => Err(HookError::Failed {
                step: self.step,
                status: describe(status),
            }),
        }
    }

    /// Waits for the hook; `None` if it outlived the timeout (it and its
    /// process group are then killed).
    fn wait(&self, child: &mut std::process::Child) -> Option<std::io::Result<ProcessStatus>> {
        let deadline = Instant::now() + self.timeout;
        // What the hook left running would hold its output pipes open (and
        // runvault waiting): its process group goes when it ends.
        let id = child.id();
        let kill_group = || {
            if let Some(group) = i32::try_from(id)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    kill_group();
                    return Some(Ok(status));
                }
                Ok(None) if Instant::now() >= deadline => {
                    kill_group();
                    let _ = child.wait();
                    return None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(err) => return Some(Err(err)),
            }
        }
    }

    /// Copies one output stream of the hook to our stderr, line by line,
    /// with every value masked.
    fn pass_through(&self, stream: impl Read) {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let masked = SecretBytes::new(mask(&line, self.secrets));
                    let _ = std::io::stderr().lock().write_all(masked.expose());
                }
            }
        }
        // Wipe the last line read.
        line.fill(0);
    }
}

/// `line` with every non-empty occurrence of a value in `secrets` replaced.
fn mask(line: &[u8], secrets: &[&[u8]]) -> Vec<u8> {
    let mut out = line.to_vec();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut masked = Vec::with_capacity(out.len());
        let mut rest = &out[..];
        while let Some(at) = memchr::memmem::find(rest, secret) {
            masked.extend_from_slice(&rest[..at]);
            masked.extend_from_slice(MASK);
            rest = &rest[at + secret.len()..];
        }
        masked.extend_from_slice(rest);
        out.fill(0);
        out = masked;
    }
    out
}

fn describe(status: ProcessStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "no exit status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_of_every_value_is_masked() {
        let out = mask(b"old=ab new=xyz xyzab\n", &[b"xyz", b"ab", b""]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "old=[value hidden] new=[value hidden] [value hidden][value hidden]\n"
        );
    }
}
