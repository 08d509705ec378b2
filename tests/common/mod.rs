//! Helpers for tests that run the built binary: processes killed on drop, bounded waits, MD5.

#![allow(dead_code)]

pub mod lab;

use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_edm-cast")
}

/// `edm-cast recv` on loopback into `out`, giving up after 30 s without a session.
pub fn recv(group: &str, out: &Path, name: &str) -> Proc {
    recv_with(group, out, name, &[])
}

/// `recv` with `extra` arguments.
pub fn recv_with(group: &str, out: &Path, name: &str, extra: &[&str]) -> Proc {
    Proc::spawn(
        name,
        Command::new(bin())
            .args(["recv", "--group", group, "--iface", "lo", "--timeout", "30"])
            .args(["--name", name, "--out"])
            .arg(out)
            .args(extra),
    )
}

/// `edm-cast send FILE` on loopback.
pub fn send(group: &str, file: &Path, extra: &[&str]) -> Proc {
    Proc::spawn(
        "sender",
        Command::new(bin())
            .args(["send", "--group", group, "--iface", "lo"])
            .args(extra)
            .arg(file),
    )
}

/// `edm-cast serve` on loopback: its group and unicast `port`, 400 Mbit/s, for at most 60 s, with
/// `extra` options.
pub fn serve(group: &str, port: &str, extra: &[&str]) -> Proc {
    Proc::spawn(
        "serve",
        Command::new(bin())
            .args(["serve", "--group", group, "--port", port, "--iface", "lo"])
            .args(["--rate", "400M", "--exit-after", "60"])
            .args(extra),
    )
}

/// Waits (at most 60 s) until the `--status` file at `path` has a line with `event`.
pub fn wait_for_event(path: &Path, event: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    let needle = format!("\"event\":\"{event}\"");
    while !std::fs::read_to_string(path).is_ok_and(|t| t.contains(&needle)) {
        assert!(Instant::now() < until, "no {event} line in {path:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `send SOURCE` to one receiver into `out`, slowly (small blocks at a fixed 4 Mbit/s: about 8 s
/// for 4 MiB, each block read as it joins the pass); once it is sending, the teacher edits the
/// file `edited` in place, 4 KiB near its end (same size: only the modification time tells). Both
/// must exit 1; gives the sender's and the receiver's stderr.
pub fn edited_while_sent(
    group: &str,
    source: &Path,
    edited: &Path,
    out: &Path,
) -> (String, String) {
    use std::os::unix::fs::FileExt;
    let rx = recv_with(group, out, "pc-a", &[]);
    let lines = out.with_extension("send.jsonl");
    let status = lines.to_str().unwrap();
    let args = [
        "--cc",
        "off",
        "--rate",
        "4M",
        "--block-symbols",
        "32",
        "--wait",
        "20",
        "--status",
        status,
    ];
    let sender = send(group, source, &args);
    wait_for_event(&lines, "sending");
    std::thread::sleep(Duration::from_millis(300));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(edited)
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.write_all_at(&[0x55; 4096], len - 8192).unwrap();
    drop(f);
    let limit = Duration::from_secs(60);
    let (sender, rx) = (sender.wait(limit), rx.wait(limit));
    let ((so, se), (ro, re)) = (text(&sender), text(&rx));
    assert_eq!(sender.status.code(), Some(1), "sender: {so}\n{se}");
    assert_eq!(rx.status.code(), Some(1), "recv: {ro}\n{re}");
    (se, re)
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A child process in a process group of its own, the whole group killed if the test ends (or
/// panics) before it exits: so nothing behind a `timeout`, `nice` or `ip netns exec` wrapper is
/// left running.
pub struct Proc {
    child: Option<Child>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child: Some(child),
            name: name.to_owned(),
        }
    }

    /// Waits at most `limit` for the process to exit; kills it and panics past that.
    pub fn wait(mut self, limit: Duration) -> Output {
        let mut child = self.child.take().expect("not waited yet");
        let end = Instant::now() + limit;
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if Instant::now() >= end {
                kill_group(&child);
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{} still running after {limit:?}; stderr:\n{}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Proc {
    /// `spawn`, with stdin a pipe the caller writes to and stdout read line by line as it comes:
    /// for a program driven through its command line (VLC's `-I rc`).
    pub fn spawn_interactive(
        name: &str,
        cmd: &mut Command,
    ) -> (
        Proc,
        std::process::ChildStdin,
        std::sync::mpsc::Receiver<String>,
    ) {
        use std::io::BufRead;
        let mut p = Proc::spawn(name, cmd.stdin(Stdio::piped()));
        let child = p.child.as_mut().expect("just spawned");
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (p, stdin, rx)
    }

    /// The process's id (for /proc).
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("not waited yet").id()
    }

    /// Ctrl-C: SIGINT to the process (and to what a wrapper started, in its process group).
    pub fn interrupt(&self) {
        let child = self.child.as_ref().expect("not waited yet");
        // SAFETY: kill(2) on the process group `Proc::spawn` created for this child.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    }

    /// SIGTERM (`kill`, systemd), to the process and its process group.
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("not waited yet");
        // SAFETY: kill(2) on the process group `Proc::spawn` created for this child.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
    }

    /// Kills the process (if still running) and returns what it wrote: for a server that
    /// would run on, when its log is wanted.
    pub fn stop(mut self) -> Output {
        let child = self.child.take().expect("not waited yet");
        kill_group(&child);
        child.wait_with_output().expect("output")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            kill_group(c);
            let _ = c.wait();
        }
    }
}

fn kill_group(child: &Child) {
    // SAFETY: kill(2) on the process group `Proc::spawn` created for this child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "edm-cast-test-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes of seeded pseudo-random data written to `path`.
pub fn random_file(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).unwrap();
}

/// A web server's folder, `www` under `dir`, holding `name`: `len` random bytes from `seed`
/// (`random_file`).
pub fn www_with(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    random_file(&www.join(name), len, seed);
    www
}

pub fn md5_of(path: &Path) -> String {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Md5::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A count in tools/attack.py's JSON report.
pub fn attack_count(report: &str, key: &str) -> u64 {
    let at = report.find(&format!("\"{key}\": ")).expect(key) + key.len() + 4;
    let digits: String = report[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// `diff -r a b` (with `--no-dereference` when `links_as_links`: a symlink compared as a link,
/// never followed): its output, empty when the trees are the same.
pub fn diff_trees(a: &Path, b: &Path, links_as_links: bool) -> String {
    let mut cmd = Command::new("diff");
    cmd.arg("-r");
    if links_as_links {
        cmd.arg("--no-dereference");
    }
    let o = cmd.arg(a).arg(b).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.code().is_some_and(|c| c <= 1), "diff: {err}");
    out
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// tools/httpd.py, the tests' web server, killed on drop.
pub struct Http {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Http {
    /// Serves `dir` on 127.0.0.1 (or where `prefix` runs it: a lab host) with httpd.py's `args`.
    pub fn start(prefix: &mut Command, dir: &Path, bind: &str, args: &[&str]) -> Http {
        use std::io::BufRead;
        let log = dir.join("access.log");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/httpd.py");
        let mut child = prefix
            .arg("python3")
            .arg(script)
            .arg("--dir")
            .arg(dir)
            .args(["--bind", bind, "--max-secs", "300", "--log"])
            .arg(&log)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tools/httpd.py (apt-get install -y python3)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("httpd prints its port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("httpd.py did not start: {line:?}")
        });
        Http { child, port, log }
    }

    /// The request lines logged so far ("GET /f.bin - 200").
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Sends `signal` (SIGTERM, …) to the process's group, as `interrupt` does SIGINT.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("not waited yet");
        // SAFETY: kill(2) on the process group `Proc::spawn` created for this child.
        unsafe { libc::kill(-(child.id() as i32), signal) };
    }
}

/// A script of the repository's `tools/` folder.
pub fn tool(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tools")
        .join(name)
}

/// The fake Pi's clip (`tools/fakepi.sh encode`): `secs` seconds of H.264 at 30 fps, `size` as
/// WIDTHxHEIGHT, written to `dir/clip.h264`.
pub fn encode_clip(dir: &Path, secs: u32, size: &str) -> PathBuf {
    let clip = dir.join("clip.h264");
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool("fakepi.sh"))
        .arg("encode")
        .arg(&clip)
        .args([&secs.to_string(), size])
        .output()
        .unwrap();
    assert!(out.status.success(), "encode: {:?}", text(&out));
    clip
}

/// One MD5 per decoded frame of a video file (`tools/fakepi.sh framemd5`).
pub fn frames(path: &Path) -> Vec<String> {
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool("fakepi.sh"))
        .arg("framemd5")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_owned()))
        .collect()
}

/// Starts `edm-cast send SOURCE` on loopback to `group`, waiting for a receiver, with its
/// temporary folder in `tmp`; waits (at most 20 s) until it holds a file whose name starts with
/// `spool` (its spool, open), kills it (SIGKILL: no clean-up runs) and returns what is left in
/// `tmp`.
pub fn left_by_a_killed_sender(tmp: &Path, spool: &str, source: &str, group: &str) -> Vec<String> {
    std::fs::create_dir_all(tmp).unwrap();
    let p = Proc::spawn(
        "sender",
        Command::new(bin())
            .env("TMPDIR", tmp)
            .args(["send", source, "--group", group, "--iface", "lo"])
            .args(["--min-receivers", "1", "--wait", "30"]),
    );
    let fds = PathBuf::from(format!("/proc/{}/fd", p.id()));
    let end = Instant::now() + Duration::from_secs(20);
    let holds = || {
        std::fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|t| {
                    t.starts_with(tmp)
                        && t.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(spool))
                })
            })
    };
    while !holds() {
        assert!(Instant::now() < end, "no {spool}* file opened in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = p.stop();
    assert!(!out.status.success(), "{}", text(&out).1);
    let mut left: Vec<String> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    left
}
