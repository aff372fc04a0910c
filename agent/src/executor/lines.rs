//! Reading a job's output line by line with a bound on line length.
//!
//! `AsyncBufReadExt::lines` would buffer a line of any length; a job that prints a
//! gigabyte without a newline must not take the agent's memory with it.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Appended to a line that was cut at the length limit.
pub const TRUNCATED_MARK: &str = " [...line truncated by saturn]";

/// Splits a byte stream into lines of at most `max_len` bytes (longer lines are cut
/// and marked, the rest up to the newline dropped). Invalid UTF-8 is replaced.
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: R,
    max_len: usize,
    line: Vec<u8>,
    truncated: bool,
    pending: bool,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    /// Wraps a buffered reader.
    pub fn new(reader: R, max_len: usize) -> Self {
        Self { reader, max_len, line: Vec::new(), truncated: false, pending: false }
    }

    /// The next line without its `\n` (or `\r\n`); `None` at end of stream.
    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(self.pending.then(|| self.take_line()));
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let end = newline.unwrap_or(available.len());
            let room = self.max_len.saturating_sub(self.line.len());
            self.line.extend_from_slice(&available[..end.min(room)]);
            self.truncated |= end > room;
            self.pending = true;
            match newline {
                Some(at) => {
                    self.reader.consume(at + 1);
                    return Ok(Some(self.take_line()));
                }
                None => self.reader.consume(end),
            }
        }
    }

    fn take_line(&mut self) -> String {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        if self.truncated {
            text.push_str(TRUNCATED_MARK);
        }
        self.line.clear();
        self.truncated = false;
        self.pending = false;
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all_lines(input: &[u8], max_len: usize) -> Vec<String> {
        let mut lines = BoundedLines::new(tokio::io::BufReader::with_capacity(4, input), max_len);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_a_last_line_without_newline() {
        assert_eq!(all_lines(b"a\r\nbb\n\nccc", 10).await, ["a", "bb", "", "ccc"]);
    }

    #[tokio::test]
    async fn cuts_long_lines_and_resumes_at_the_next() {
        let lines = all_lines(b"0123456789abcdef\nok\n", 5).await;
        assert_eq!(lines, [format!("01234{TRUNCATED_MARK}"), "ok".to_owned()]);
    }
}
