//! Waiting for something that happens a little later (a reload taking
//! effect, a log line being written), bounded in time.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] and [`file_lines`] look again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Check `condition` every [`POLL_INTERVAL`] until it holds or `timeout`
/// passes; whether it held.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// let start = tokio::time::Instant::now();
/// let held = signpost_testkit::eventually(Duration::from_secs(5), || async move {
///     start.elapsed() > Duration::from_millis(50)
/// })
/// .await;
/// assert!(held);
/// # }
/// ```
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The lines of the file at `path` once it has at least `count` (a log being
/// written by another task or process), or what it has after `timeout`.
/// A missing file has no lines.
pub async fn file_lines(path: &Path, count: usize, timeout: Duration) -> Vec<String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>();
    let mut lines = read();
    let deadline = Instant::now() + timeout;
    while lines.len() < count && Instant::now() < deadline {
        tokio::time::sleep(POLL_INTERVAL).await;
        lines = read();
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_condition_that_never_holds_gives_up_in_time() {
        let started = Instant::now();
        assert!(!eventually(Duration::from_millis(100), || async { false }).await);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn lines_written_later_are_waited_for() {
        let dir = crate::TempDir::new();
        let path = dir.join("log.jsonl");
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                std::fs::write(&path, "one\ntwo\n").unwrap();
            })
        };
        assert_eq!(file_lines(&path, 2, Duration::from_secs(5)).await, ["one", "two"]);
        writer.await.unwrap();
        assert_eq!(file_lines(&dir.join("missing"), 1, Duration::from_millis(50)).await, Vec::<String>::new());
    }
}
