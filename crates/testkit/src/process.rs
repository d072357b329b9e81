//! A child-process harness for end-to-end tests of the binaries: start one
//! with arguments and environment, wait for its start-up lines, read the
//! addresses it bound from them, capture what it prints, send it signals,
//! and kill it when the test is done (or panics).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::Error;
use crate::fake::lock;

/// How long [`RunningBinary::terminate`] waits for the output to end after
/// the process is gone.
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// How long [`RunningBinary::signal`] waits for the child to catch a signal.
pub const HANDLER_WAIT: Duration = Duration::from_secs(5);

/// Whether process `pid` has a handler for `signal`, from the `SigCgt`
/// mask in `/proc/PID/status`; `None` where that cannot be read.
fn catches(pid: u32, signal: libc::c_int) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = status.lines().find_map(|line| line.strip_prefix("SigCgt:"))?.trim();
    let caught = u64::from_str_radix(mask, 16).ok()?;
    let bit = u32::try_from(signal).ok()?.checked_sub(1)?;
    Some(caught.checked_shr(bit)? & 1 == 1)
}

/// A workspace binary to run, found through the path Cargo gives integration
/// tests (`env!("CARGO_BIN_EXE_signpost-forward")`) or any other path.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), signpost_testkit::Error> {
/// use std::time::Duration;
/// use signpost_testkit::{Binary, Signal};
///
/// let forward = Binary::new("/path/to/signpost-forward")
///     .args(["--config", "forward.toml"])
///     .env("RUST_LOG", "info")
///     .ready_when(|line| line == "ready");
/// let running = forward.start().await?;
/// let udp = running.addresses(|line| line.strip_prefix("listening on udp ")?.parse().ok());
/// running.signal(Signal::Hangup).await?;
/// running.wait_for_stderr("configuration reloaded", Duration::from_secs(5)).await?;
/// let finished = running.terminate(Duration::from_secs(5)).await?;
/// assert!(finished.status.success());
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct Binary {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    clear_env: bool,
    ready: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    startup_timeout: Duration,
}

impl std::fmt::Debug for Binary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binary").field("program", &self.program).field("args", &self.args).finish_non_exhaustive()
    }
}

/// A signal to send to a running binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// SIGHUP: reload.
    Hangup,
    /// SIGTERM: stop cleanly.
    Terminate,
    /// SIGINT.
    Interrupt,
    /// SIGUSR2: hand the listening sockets over to a new process.
    User2,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Self::Hangup => libc::SIGHUP,
            Self::Terminate => libc::SIGTERM,
            Self::Interrupt => libc::SIGINT,
            Self::User2 => libc::SIGUSR2,
        }
    }
}

/// How a binary ended and what it printed.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// What a running binary printed so far, byte for byte.
#[derive(Default)]
struct Captured {
    stdout: Mutex<Vec<u8>>,
    stderr: Mutex<Vec<u8>>,
}

fn text(bytes: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&lock(bytes)).into_owned()
}

/// Shared between the readers and the waiters: the output, and a counter
/// that moves whenever some arrives or a stream ends.
struct Output {
    captured: Captured,
    changes: watch::Sender<u64>,
    /// How many of the two streams have ended.
    ended: watch::Sender<u8>,
}

impl Output {
    fn stdout_text(&self) -> String {
        text(&self.captured.stdout)
    }

    fn stderr_text(&self) -> String {
        text(&self.captured.stderr)
    }

    /// The complete lines of standard output (a line still being written is left out).
    fn stdout_lines(&self) -> Vec<String> {
        complete_lines(&self.stdout_text()).lines().map(str::to_owned).collect()
    }
}

/// `text` up to and including its last newline: what was written as whole lines.
fn complete_lines(text: &str) -> &str {
    text.rfind('\n').map_or("", |end| text.get(..=end).unwrap_or_default())
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(
    mut stream: R,
    output: Arc<Output>,
    bytes: fn(&Captured) -> &Mutex<Vec<u8>>,
) {
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 8192];
        while let Ok(read @ 1..) = stream.read(&mut buffer).await {
            lock(bytes(&output.captured)).extend_from_slice(buffer.get(..read).unwrap_or_default());
            output.changes.send_modify(|count| *count += 1);
        }
        output.ended.send_modify(|ended| *ended += 1);
        output.changes.send_modify(|count| *count += 1);
    });
}

impl Binary {
    /// The program at `program`, no arguments, the test's environment, ready
    /// once it has started (no start-up line awaited), 20 s to start up.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: false,
            ready: Arc::new(|_| true),
            startup_timeout: Duration::from_secs(20),
        }
    }

    /// Add an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Add arguments.
    pub fn args<A: Into<OsString>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Set environment variables.
    pub fn envs<K: Into<OsString>, V: Into<OsString>>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        self.env.extend(vars.into_iter().map(|(key, value)| (key.into(), value.into())));
        self
    }

    /// Start from an empty environment: only what [`Binary::env`] sets.
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Start-up is over when a line of standard output matches.
    pub fn ready_when(mut self, ready: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.ready = Arc::new(ready);
        self
    }

    /// How long start-up may take.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    fn spawn(&self) -> Result<(Child, Arc<Output>), Error> {
        let mut command = Command::new(&self.program);
        if self.clear_env {
            command.env_clear();
        }
        command.envs(self.env.iter().map(|(key, value)| (key, value))).args(&self.args);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // A test run under `nohup` (or any parent that ignores these
        // signals) would hand the child SIG_IGN, and a shell may not trap a
        // signal ignored on entry: the signals the harness sends must reach
        // the child as they would from a terminal or systemd.
        // SAFETY: only async-signal-safe `signal` calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                for number in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2] {
                    libc::signal(number, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| Error::Spawn { program: self.program.clone(), source })?;
        let output = Arc::new(Output {
            captured: Captured::default(),
            changes: watch::Sender::new(0),
            ended: watch::Sender::new(0),
        });
        if let Some(stdout) = child.stdout.take() {
            capture(stdout, output.clone(), |captured| &captured.stdout);
        }
        if let Some(stderr) = child.stderr.take() {
            capture(stderr, output.clone(), |captured| &captured.stderr);
        }
        Ok((child, output))
    }

    /// Start it and wait until a line of its standard output says it is
    /// ready. If it exits first, or the start-up takes too long (it is then
    /// killed), the error carries everything it printed.
    pub async fn start(&self) -> Result<RunningBinary, Error> {
        let (mut child, output) = self.spawn()?;
        let mut changes = output.changes.subscribe();
        let ready = |output: &Output| output.stdout_lines().iter().any(|line| (self.ready)(line));
        let outcome = tokio::time::timeout(self.startup_timeout, async {
            loop {
                if ready(&output) {
                    return Ok(());
                }
                tokio::select! {
                    status = child.wait() => return Err(status),
                    _ = changes.changed() => {}
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(RunningBinary { program: self.program.clone(), child, output }),
            Ok(Err(status)) => {
                let status = status.map_err(|source| Error::Wait { program: self.program.clone(), source })?;
                drain(&output).await;
                Err(Error::Exited {
                    program: self.program.clone(),
                    status,
                    stdout: output.stdout_text(),
                    stderr: output.stderr_text(),
                })
            }
            Err(_) => {
                let _ = child.kill().await;
                drain(&output).await;
                Err(Error::StartTimeout {
                    program: self.program.clone(),
                    waited: self.startup_timeout,
                    stdout: output.stdout_text(),
                    stderr: output.stderr_text(),
                })
            }
        }
    }

    /// [`Binary::start`], tried up to `tries` times while `retry` says the
    /// failure is worth another go (a port taken between two binds, say).
    pub async fn start_retrying(&self, tries: usize, retry: impl Fn(&Error) -> bool) -> Result<RunningBinary, Error> {
        let mut last = None;
        for _ in 0..tries.max(1) {
            match self.start().await {
                Ok(running) => return Ok(running),
                Err(error) if retry(&error) => last = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| Error::Timeout {
            what: format!("{} to start", self.program.display()),
            waited: self.startup_timeout,
            seen: "no try was made".to_owned(),
        }))
    }

    /// Run it to the end (at most `timeout`, then it is killed) and return
    /// its status and output.
    pub async fn output(&self, timeout: Duration) -> Result<Finished, Error> {
        let (mut child, output) = self.spawn()?;
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status.map_err(|source| Error::Wait { program: self.program.clone(), source })?,
            Err(_) => {
                let _ = child.kill().await;
                drain(&output).await;
                return Err(Error::Timeout {
                    what: format!("{} to finish", self.program.display()),
                    waited: timeout,
                    seen: format!("stdout:\n{}\nstderr:\n{}", output.stdout_text(), output.stderr_text()),
                });
            }
        };
        drain(&output).await;
        Ok(Finished { status, stdout: output.stdout_text(), stderr: output.stderr_text() })
    }
}

/// Wait (a little) until both output streams have ended.
async fn drain(output: &Output) {
    let mut ended = output.ended.subscribe();
    let _ = tokio::time::timeout(OUTPUT_DRAIN, ended.wait_for(|count| *count >= 2)).await;
}

/// A binary that has started up; killed when dropped.
pub struct RunningBinary {
    program: PathBuf,
    child: Child,
    output: Arc<Output>,
}

impl std::fmt::Debug for RunningBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningBinary").field("program", &self.program).field("pid", &self.child.id()).finish()
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        // Also done by kill_on_drop; said here so the intent is plain.
        let _ = self.child.start_kill();
    }
}

impl RunningBinary {
    /// Its process ID (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The complete lines of standard output so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.output.stdout_lines()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        self.output.stderr_text()
    }

    /// The addresses `parse` finds in the lines of standard output so far,
    /// in order (a line gives at most one).
    pub fn addresses(&self, parse: impl Fn(&str) -> Option<SocketAddr>) -> Vec<SocketAddr> {
        self.output.stdout_lines().iter().filter_map(|line| parse(line)).collect()
    }

    async fn wait_until<T>(
        &self,
        what: String,
        timeout: Duration,
        found: impl Fn(&Output) -> Option<T>,
    ) -> Result<T, Error> {
        let mut changes = self.output.changes.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if let Some(value) = found(&self.output) {
                    return value;
                }
                // Fails only when every sender is gone, which `self` rules out.
                let _ = changes.changed().await;
            }
        })
        .await;
        waited.map_err(|_| Error::Timeout {
            what,
            waited: timeout,
            seen: format!("stdout:\n{}\nstderr:\n{}", self.output.stdout_text(), self.output.stderr_text()),
        })
    }

    /// Wait until a line of standard output from line `from` on contains
    /// `text`; its index.
    pub async fn wait_for_stdout_after(&self, from: usize, text: &str, timeout: Duration) -> Result<usize, Error> {
        self.wait_until(format!("{text:?} on stdout after line {from}"), timeout, |output| {
            output.stdout_lines().iter().skip(from).position(|line| line.contains(text)).map(|index| from + index)
        })
        .await
    }

    /// Wait until a line of standard output contains `text`; its index.
    pub async fn wait_for_stdout(&self, text: &str, timeout: Duration) -> Result<usize, Error> {
        self.wait_for_stdout_after(0, text, timeout).await
    }

    /// Wait until the complete lines of standard error contain `text`; those lines.
    pub async fn wait_for_stderr(&self, text: &str, timeout: Duration) -> Result<String, Error> {
        self.wait_until(format!("{text:?} on stderr"), timeout, |output| {
            let stderr = output.stderr_text();
            let lines = complete_lines(&stderr);
            lines.contains(text).then(|| lines.to_owned())
        })
        .await
    }

    /// Send it a signal, once it catches that signal.
    ///
    /// A binary may print its start-up lines a moment before it installs its
    /// signal handlers; a signal in between would meet the default action
    /// (death, for SIGHUP and SIGTERM). So on Linux this first waits, up to
    /// [`HANDLER_WAIT`], until `/proc/PID/status` shows the signal caught;
    /// elsewhere, or after that, the signal goes anyway.
    pub async fn signal(&self, signal: Signal) -> Result<(), Error> {
        let Some(pid) = self.child.id() else {
            return Err(Error::Signal {
                signal: signal.number(),
                pid: 0,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        };
        // The pid is our own child's, not yet reaped (tokio reaps it only
        // through `wait`, which needs `&mut self`).
        send_signal(pid, signal).await
    }

    /// Wait for it to exit by itself (at most `timeout`, then it is killed
    /// and the error says so).
    pub async fn wait(mut self, timeout: Duration) -> Result<Finished, Error> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status.map_err(|source| Error::Wait { program: self.program.clone(), source })?;
                drain(&self.output).await;
                Ok(Finished { status, stdout: self.output.stdout_text(), stderr: self.output.stderr_text() })
            }
            Err(_) => {
                let _ = self.child.kill().await;
                Err(Error::Timeout {
                    what: format!("{} to exit", self.program.display()),
                    waited: timeout,
                    seen: format!("stdout:\n{}\nstderr:\n{}", self.output.stdout_text(), self.output.stderr_text()),
                })
            }
        }
    }

    /// SIGTERM, then wait for the exit (at most `timeout`, then it is
    /// killed and the error says so): the status and everything it printed.
    pub async fn terminate(self, timeout: Duration) -> Result<Finished, Error> {
        self.signal(Signal::Terminate).await?;
        self.wait(timeout).await
    }
}

/// Send `signal` to process `pid` once it catches that signal (see
/// [`RunningBinary::signal`]).
async fn send_signal(pid: u32, signal: Signal) -> Result<(), Error> {
    let number = signal.number();
    let target = libc::pid_t::try_from(pid).map_err(|_| Error::Signal {
        signal: number,
        pid,
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    let deadline = tokio::time::Instant::now() + HANDLER_WAIT;
    while catches(pid, number) == Some(false) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(target, number) };
    if result == 0 {
        Ok(())
    } else {
        Err(Error::Signal { signal: number, pid, source: std::io::Error::last_os_error() })
    }
}

/// A port free for UDP and TCP on 127.0.0.1 a moment ago, for a binary that
/// must listen on a fixed port (a socket hand-over passes sockets by
/// address, and port 0 always means a new socket).
pub fn free_port() -> u16 {
    loop {
        let Ok(udp) = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)) else { continue };
        let Ok(address) = udp.local_addr() else { continue };
        if std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, address.port())).is_ok() {
            return address.port();
        }
    }
}

/// Start `binary(port)` on a [`free_port`], again on another port (five
/// tries) when that one was taken in between ([`port_taken`](crate::port_taken)).
pub async fn start_on_free_port(binary: impl Fn(u16) -> Binary) -> Result<(RunningBinary, u16), Error> {
    let mut last = None;
    for _ in 0..5 {
        let port = free_port();
        match binary(port).start().await {
            Ok(running) => return Ok((running, port)),
            Err(error) if crate::port_taken(&error) => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| Error::Timeout {
        what: "a free port".to_owned(),
        waited: Duration::ZERO,
        seen: String::new(),
    }))
}

/// The hand-over successor a binary's output names: the first line
/// `took over N sockets from pid P (pid S)` gives S.
pub fn successor_in(lines: &[String]) -> Option<DetachedProcess> {
    lines.iter().find_map(|line| {
        let pid = line.strip_prefix("took over ")?.rsplit_once("(pid ")?.1.strip_suffix(')')?.parse().ok()?;
        Some(DetachedProcess::new(pid))
    })
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn has_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// A process the binary under test started and left running, not a child
/// of the test (a hand-over successor, found by the pid it prints): signal
/// it, wait for it to end; killed when dropped.
#[derive(Debug)]
pub struct DetachedProcess {
    pid: u32,
    done: bool,
}

impl DetachedProcess {
    /// The process with this pid.
    pub fn new(pid: u32) -> Self {
        Self { pid, done: false }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Send it a signal, once it catches that signal.
    pub async fn signal(&self, signal: Signal) -> Result<(), Error> {
        send_signal(self.pid, signal).await
    }

    /// SIGTERM, then wait (at most `timeout`) until it has ended; the
    /// error says when it did not (it is then killed).
    pub async fn terminate(mut self, timeout: Duration) -> Result<(), Error> {
        self.signal(Signal::Terminate).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        while !has_ended(self.pid) {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("process {} to exit", self.pid),
                    waited: timeout,
                    seen: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for DetachedProcess {
    fn drop(&mut self) {
        if self.done || has_ended(self.pid) {
            return;
        }
        if let Ok(target) = libc::pid_t::try_from(self.pid) {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours.
            unsafe { libc::kill(target, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Binary {
        Binary::new("/bin/sh").args(["-c", script])
    }

    /// A shell script whose start-up ends with a line "ready".
    fn until_ready(script: &str) -> Binary {
        shell(script).ready_when(|line| line == "ready")
    }

    #[tokio::test]
    async fn start_up_lines_give_the_addresses_and_output_is_captured() {
        let script = "trap 'exit 0' TERM; echo 'listening on udp 127.0.0.1:5301'; echo oops >&2; echo ready; \
                      while true; do sleep 0.05; done";
        let running = until_ready(script).start().await.unwrap();
        let addresses = running.addresses(|line| line.strip_prefix("listening on udp ")?.parse().ok());
        assert_eq!(addresses, ["127.0.0.1:5301".parse::<SocketAddr>().unwrap()]);
        assert_eq!(running.wait_for_stderr("oops", Duration::from_secs(5)).await.unwrap(), "oops\n");
        let finished = running.terminate(Duration::from_secs(5)).await.unwrap();
        assert!(finished.status.success(), "{finished:?}");
        assert_eq!(finished.stdout, "listening on udp 127.0.0.1:5301\nready\n");
    }

    #[tokio::test]
    async fn an_exit_during_start_up_is_an_error_with_the_output() {
        let error = until_ready("echo 'cannot listen on 127.0.0.1:53' >&2; exit 3").start().await.err().unwrap();
        let Error::Exited { status, stderr, .. } = &error else { panic!("{error}") };
        assert_eq!(status.code(), Some(3));
        assert!(stderr.contains("cannot listen"), "{error}");
    }

    #[tokio::test]
    async fn a_slow_start_up_times_out_and_the_child_is_killed() {
        let error = until_ready("echo starting; exec sleep 30")
            .startup_timeout(Duration::from_millis(300))
            .start()
            .await
            .err()
            .unwrap();
        assert!(matches!(&error, Error::StartTimeout { stdout, .. } if stdout == "starting\n"), "{error}");
    }

    #[tokio::test]
    async fn retries_stop_at_the_first_failure_not_worth_retrying() {
        let error = until_ready("exit 1").start_retrying(3, |_| false).await.err().unwrap();
        assert!(matches!(error, Error::Exited { .. }));
    }

    #[tokio::test]
    async fn signals_reach_the_child() {
        let script = "trap 'echo hangup; exit 0' HUP; echo ready; while true; do sleep 0.05; done";
        let running = until_ready(script).start().await.unwrap();
        // dash can lose a trapped signal that lands while it forks the loop's
        // `sleep` (seen once on a starved machine); what is tested is that
        // our signal reaches the child, so a lost one is sent again.
        for _ in 0..5 {
            running.signal(Signal::Hangup).await.unwrap();
            if running.wait_for_stdout("hangup", Duration::from_secs(1)).await.is_ok() {
                break;
            }
        }
        let finished = running.wait(Duration::from_secs(5)).await.unwrap();
        assert!(finished.status.success());
        assert!(finished.stdout.ends_with("hangup\n"), "{}", finished.stdout);
    }

    #[tokio::test]
    async fn a_signal_waits_until_the_child_catches_it() {
        // The shell installs its handler a moment after saying it is ready.
        let script = "echo ready; sleep 0.3; trap 'echo terminated; exit 0' TERM; while true; do sleep 0.05; done";
        let running = until_ready(script).start().await.unwrap();
        let pid = running.pid().unwrap();
        assert_eq!(catches(pid, libc::SIGTERM), Some(false));
        let finished = running.terminate(Duration::from_secs(5)).await.unwrap();
        assert!(finished.status.success(), "{finished:?}");
        assert!(finished.stdout.ends_with("terminated\n"), "{}", finished.stdout);
    }

    #[test]
    fn only_whole_lines_count() {
        assert_eq!(complete_lines("one\ntwo\nthr"), "one\ntwo\n");
        assert_eq!(complete_lines("partial"), "");
        assert_eq!(complete_lines(""), "");
    }

    #[tokio::test]
    async fn output_runs_to_the_end_with_a_clean_environment() {
        let finished = shell("echo \"[$SIGNPOST_TEST_VALUE][$HOME]\"")
            .env_clear()
            .env("SIGNPOST_TEST_VALUE", "x")
            .output(Duration::from_secs(5))
            .await
            .unwrap();
        assert!(finished.status.success());
        assert_eq!(finished.stdout, "[x][]\n");
        let timeout = shell("exec sleep 30").output(Duration::from_millis(200)).await.err().unwrap();
        assert!(matches!(timeout, Error::Timeout { .. }), "{timeout}");
    }
}

/// A process's user ids (real, effective, saved, filesystem) and effective
/// capabilities, from `/proc/PID/status`: what a privilege drop left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Real, effective, saved and filesystem user ids.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group ids.
    pub gids: [u32; 4],
    /// The effective capability set (bit n: capability n).
    pub effective_capabilities: u64,
}

impl Credentials {
    /// Read them for process `pid`; `None` when it is gone or /proc says otherwise.
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| status.lines().find_map(|line| line.strip_prefix(name)).map(str::trim);
        let ids = |name: &str| -> Option<[u32; 4]> {
            let values: Vec<u32> = field(name)?.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            values.try_into().ok()
        };
        Some(Self {
            uids: ids("Uid:")?,
            gids: ids("Gid:")?,
            effective_capabilities: u64::from_str_radix(field("CapEff:")?, 16).ok()?,
        })
    }

    /// Whether this test process runs as root (privilege tests need it).
    pub fn running_as_root() -> bool {
        Self::of(std::process::id()).is_some_and(|own| own.uids[1] == 0)
    }
}
