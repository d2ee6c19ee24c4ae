//! The real `latchkey` binary as a child process: for the command line, for logs as an operator
//! sees them, and for faults an in-process server cannot suffer (SIGKILL).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `latchkey` command with exactly these settings: the test process's own `LATCHKEY_*`
/// variables (such as `LATCHKEY_TEST_POSTGRES_URL`) do not leak into it.
pub fn latchkey(settings: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.env("RUST_LOG", "warn");
    for (name, value) in settings {
        command.env(name, value);
    }
    command
}

/// Runs a command to completion with `stdin` as its standard input.
pub fn run(command: &mut Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start latchkey");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("latchkey output")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `latchkey serve` running as a child process, its standard error captured to a file.
pub struct ServerProcess {
    child: Child,
    pub address: String,
    pub stderr_path: PathBuf,
}

impl ServerProcess {
    /// Starts `latchkey serve` on a free port and waits until it prints its address.
    pub fn start(settings: &[(&str, &str)], log_directory: &Path) -> ServerProcess {
        let stderr_path = log_directory.join(format!("server-{}.log", uuid::Uuid::new_v4().simple()));
        let log = std::fs::File::create(&stderr_path).expect("server log file");
        let mut command = latchkey(settings);
        command.env("LATCHKEY_BIND", "127.0.0.1:0");
        let mut child = command
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start latchkey serve");
        let stdout = child.stdout.take().expect("server stdout");
        // "latchkey is serving at … (listening on 127.0.0.1:PORT)"
        let mut lines = BufReader::new(stdout).lines();
        let listening = lines.next().and_then(Result::ok).and_then(|line| {
            let start = line.find("listening on ")? + "listening on ".len();
            Some(line[start..].trim_end_matches(')').to_string())
        });
        let Some(listening) = listening else {
            let _ = child.kill();
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("latchkey serve did not start:\n{log}");
        };
        // Keep draining standard output so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child,
            address: format!("http://{listening}"),
            stderr_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// SIGKILL: no graceful shutdown, no flushing, in-flight requests cut off.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the server wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, then waits for the graceful shutdown (at most 30 s).
    pub fn terminate(mut self) -> String {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
