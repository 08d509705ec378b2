//! Folders and many files in one session, on loopback: a tree with empty files and folders,
//! spaces and non-ASCII names to three receivers (`diff -r` empty), several sources with
//! `--exclude`, and hostile manifests from a trusted sender refused with nothing written outside
//! (or inside) `--out`.

mod common;

use common::{TempDir, bin, diff_trees, md5_of, random_file, recv_with, send, text};
use edm_cast_proto::file::tree::{Entry, Kind, Manifest};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

/// Everything in `dir`, sorted (hidden names included).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// 20 folders (three empty, some nested, names with spaces and accents) holding 200 files, every
/// tenth of them empty.
fn make_tree(root: &Path) {
    let mut folders: Vec<PathBuf> = Vec::new();
    for i in 0..20 {
        let name = format!("dossier {i} é");
        let parent = match i % 5 {
            // Nested under the folder before it.
            1 | 2 => folders[i - 1].clone(),
            _ => root.to_owned(),
        };
        let f = parent.join(name);
        std::fs::create_dir_all(&f).unwrap();
        folders.push(f);
    }
    let empty = [3, 7, 11];
    let holders: Vec<&PathBuf> = (folders.iter().enumerate())
        .filter(|(i, _)| !empty.contains(i))
        .map(|(_, f)| f)
        .collect();
    for j in 0..200 {
        let dir = if j % 17 == 0 {
            root
        } else {
            holders[j % holders.len()]
        };
        let path = dir.join(format!("fichier {j} ü — ☃.txt"));
        if j % 10 == 0 {
            std::fs::write(&path, b"").unwrap();
        } else {
            random_file(&path, 500 + j * 97, j as u64);
        }
    }
}

#[test]
fn a_tree_of_200_files_in_20_folders_reaches_three_receivers_identical() {
    let dir = TempDir::new("tree200");
    let sent = dir.path().join("course week3 ✓");
    make_tree(&sent);
    let script = sent.join("dossier 0 é").join("run.sh");
    std::fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let group = "239.77.33.1:47331";
    let outs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("pc{i}"))).collect();
    let receivers: Vec<_> = (outs.iter().enumerate())
        .map(|(i, o)| recv_with(group, o, &format!("pc{i}"), &[]))
        .collect();
    let s = send(group, &sent, &["--min-receivers", "3", "--wait", "30"]).wait(LIMIT);
    let (summary, log) = text(&s);
    assert!(s.status.success(), "{summary}\n{log}");
    assert!(
        log.contains("course week3 ✓/: 201 files in 20 folders"),
        "{log}"
    );
    for (r, out) in receivers.into_iter().zip(&outs) {
        let o = r.wait(LIMIT);
        let (_, stderr) = text(&o);
        assert!(o.status.success(), "{stderr}");
        assert!(
            stderr.contains("unpacked 201 files and 20 folders"),
            "{stderr}"
        );
        // The tree under a folder named after the sent one, and nothing else (no leftovers).
        assert_eq!(names(out), ["course week3 ✓"]);
        let got = out.join("course week3 ✓");
        assert_eq!(diff_trees(&sent, &got, false), "");
        let copy = got.join("dossier 0 é").join("run.sh");
        let (a, b) = (script.metadata().unwrap(), copy.metadata().unwrap());
        assert_eq!(b.permissions().mode() & 0o777, 0o755);
        assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
        let d = got.join("dossier 3 é").metadata().unwrap();
        assert!(d.is_dir());
        assert_eq!(
            d.mtime(),
            sent.join("dossier 3 é").metadata().unwrap().mtime()
        );
    }
}

#[test]
fn several_sources_with_exclude_arrive_as_one_folder() {
    let dir = TempDir::new("treemany");
    let (a, b, slides) = (
        dir.path().join("a.pdf"),
        dir.path().join("b.mp4"),
        dir.path().join("slides"),
    );
    random_file(&a, 40_000, 1);
    random_file(&b, 70_000, 2);
    std::fs::create_dir_all(slides.join("img")).unwrap();
    random_file(&slides.join("1.svg"), 3_000, 3);
    random_file(&slides.join("scratch.tmp"), 3_000, 4);
    random_file(&slides.join("img").join("x.tmp"), 3_000, 5);
    std::os::unix::fs::symlink("1.svg", slides.join("link.svg")).unwrap();
    // A folder of that name already there is kept as it is: the tree lands beside it.
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("lesson")).unwrap();
    std::fs::write(out.join("lesson").join("mine.txt"), b"mine").unwrap();
    let group = "239.77.33.2:47332";
    let r = recv_with(group, &out, "pc", &[]);
    let s = Command::new(bin())
        .args(["send", "--group", group, "--iface", "lo", "--wait", "30"])
        .args(["--exclude", "*.tmp", "--name", "lesson"])
        .args([&a, &b, &slides])
        .output()
        .unwrap();
    let (summary, log) = text(&s);
    assert!(s.status.success(), "{summary}\n{log}");
    assert!(
        log.contains("a symlink (--follow-symlinks sends what it points to)"),
        "{log}"
    );
    let o = r.wait(LIMIT);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(names(&out), ["lesson", "lesson (1)"]);
    assert_eq!(names(&out.join("lesson")), ["mine.txt"]);
    let got = out.join("lesson (1)");
    assert_eq!(names(&got), ["a.pdf", "b.mp4", "slides"]);
    assert_eq!(names(&got.join("slides")), ["1.svg", "img"]);
    assert!(names(&got.join("slides").join("img")).is_empty());
    assert_eq!(diff_trees(&a, &got.join("a.pdf"), false), "");
    assert_eq!(diff_trees(&b, &got.join("b.mp4"), false), "");
}

/// `edm-cast keygen PATH`: the public key line.
fn keygen(path: &Path) -> String {
    let o = Command::new(bin())
        .arg("keygen")
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    text(&o).0.trim().to_owned()
}

/// A tree stream of `entries` (their bytes all `x`), as a hostile sender would craft it.
fn crafted(path: &Path, entries: Vec<Entry>) {
    let total: u64 = entries.iter().map(|e| e.size).sum();
    let mut bytes = Manifest { entries }.encode();
    bytes.extend(std::iter::repeat_n(b'x', total as usize));
    std::fs::write(path, bytes).unwrap();
}

fn file(path: &str) -> Entry {
    Entry {
        kind: Kind::File,
        path: path.into(),
        mode: 0o644,
        mtime: (0, 0),
        size: 5,
        sha256: [0; 32],
    }
}

#[test]
fn hostile_manifests_from_a_trusted_sender_are_refused_and_nothing_is_written() {
    let dir = TempDir::new("treehostile");
    let key = dir.path().join("teacher.key");
    let teacher = keygen(&key);
    let deep: String = vec!["d"; 40].join("/");
    // A million entries: only the header is needed to refuse them.
    let million = dir.path().join("million");
    let mut header = Manifest::default().encode();
    header[8..12].copy_from_slice(&1_000_000u32.to_be_bytes());
    std::fs::write(&million, header).unwrap();
    let refused = |why: &str| {
        format!("refused the folder \"evil\" from the sender: {why}; nothing was written")
    };
    let mut subdir = file("d/ok");
    subdir.sha256 = [9; 32];
    let cases: Vec<(&str, Option<Vec<Entry>>, String)> = vec![
        (
            "dotdot",
            Some(vec![file("../../escape")]),
            refused("entry \"../../escape\": `.` or `..` in the path"),
        ),
        (
            "absolute",
            Some(vec![file("/tmp/escape")]),
            refused("entry \"/tmp/escape\": an absolute path"),
        ),
        (
            "deep",
            Some(vec![file(&deep)]),
            refused(&format!("entry \"{deep}\": nested deeper than 32 folders")),
        ),
        (
            "million",
            None,
            refused("1000000 entries, more than the 100000 allowed"),
        ),
        // A manifest that passes, with a file whose bytes are not what it says: found while
        // writing, and the half-built tree removed.
        (
            "digest",
            Some(vec![
                Entry {
                    kind: Kind::Folder,
                    size: 0,
                    ..file("d")
                },
                subdir,
            ]),
            "\"d/ok\": its SHA-256 is not the one its manifest gives; the folder is not kept"
                .into(),
        ),
    ];
    for (i, (tag, entries, why)) in cases.into_iter().enumerate() {
        let payload = dir.path().join(tag);
        if let Some(entries) = entries {
            crafted(&payload, entries);
        }
        let out = dir.path().join(format!("out-{tag}"));
        let group = format!("239.77.33.{}:{}", 10 + i, 47340 + i);
        let r = recv_with(&group, &out, "pc", &["--trust", &teacher]);
        let s = send(
            &group,
            &payload,
            &[
                "--key",
                key.to_str().unwrap(),
                "--name",
                "evil/",
                "--wait",
                "30",
            ],
        );
        let o = r.wait(LIMIT);
        let _ = s.wait(LIMIT);
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{tag}: {stderr}");
        assert!(stderr.contains(&why), "{tag}: {stderr}");
        // Nothing in --out (no tree, no staging folder, no partial file), nothing beside it.
        assert!(names(&out).is_empty(), "{tag}: {:?}", names(&out));
        assert!(!dir.path().join("escape").exists());
        assert!(!Path::new("/tmp/escape").exists());
    }
}

/// Every regular file under `root`, as (path relative to it, MD5, SHA-256, size), sorted.
fn files_under(root: &Path) -> Vec<(String, String, String, u64)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                let sha = Command::new("sha256sum").arg(&p).output().unwrap();
                let sha = String::from_utf8(sha.stdout).unwrap()[..64].to_owned();
                out.push((rel, md5_of(&p), sha, p.metadata().unwrap().len()));
            }
        }
    }
    out.sort();
    out
}

/// `recv --exec` and `--status` on a tree: one command and one `file_done` line per file of it
/// (its path under --out, size and digests, the tree's folder), never more than 4 commands at once,
/// then one `tree_done` line for the folder.
#[test]
fn exec_and_status_lines_come_once_per_file_of_a_tree() {
    let dir = TempDir::new("treeexec");
    let sent = dir.path().join("lesson 5");
    for (i, sub) in ["", "a", "a/b c", "d é", "empty"].iter().enumerate() {
        std::fs::create_dir_all(sent.join(sub)).unwrap();
        if *sub == "empty" {
            continue;
        }
        for j in 0..8 {
            let f = sent.join(sub).join(format!("f {j}.bin"));
            random_file(&f, (i * 8 + j) * 3001, (i * 8 + j) as u64);
        }
    }
    let want = files_under(&sent);
    assert_eq!(want.len(), 32);
    let (out, log, running) = (
        dir.path().join("out"),
        dir.path().join("exec.log"),
        dir.path().join("running"),
    );
    std::fs::create_dir_all(&running).unwrap();
    let status = dir.path().join("recv.jsonl");
    // Each run says what it got, and how many runs were going on as it started.
    let command = format!(
        r#"touch "{run}/$$"; n=$(ls "{run}" | wc -l)
printf '%s|%s|%s|%s|%s|%s|%s\n' "$EDM_CAST_PATH" "$EDM_CAST_NAME" "$EDM_CAST_SIZE" "$EDM_CAST_MD5" "$EDM_CAST_SHA256" "$EDM_CAST_TREE" "$n" >> "{log}"
sleep 0.1; rm "{run}/$$"
case "$EDM_CAST_PATH" in */a/"f 3.bin") exit 5;; esac"#,
        run = running.display(),
        log = log.display()
    );
    let group = "239.77.34.1:47351";
    let r = recv_with(
        group,
        &out,
        "pc",
        &["--status", status.to_str().unwrap(), "--exec", &command],
    );
    let s = send(group, &sent, &["--wait", "30", "--status", "-"]).wait(LIMIT);
    let (sent_lines, send_err) = text(&s);
    assert!(s.status.success(), "{send_err}");
    // The sender's first line says how many files the tree holds.
    let started: serde_json::Value =
        serde_json::from_str(sent_lines.lines().next().unwrap()).unwrap();
    assert_eq!(started["event"], "session_started");
    assert_eq!(started["files"], 32, "{sent_lines}");
    let o = r.wait(LIMIT);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let root = out.join("lesson 5");
    assert_eq!(diff_trees(&sent, &root, false), "");

    // The commands: exactly one per file, with its own values; at most 4 at once.
    let logged = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let mut rows: Vec<Vec<&str>> = logged.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), want.len(), "{logged}");
    rows.sort();
    let root_text = root.display().to_string();
    for (row, (rel, md5, sha, size)) in rows.iter().zip(&want) {
        let path = root.join(rel).display().to_string();
        let name = rel.rsplit('/').next().unwrap();
        assert_eq!(
            row[..6],
            [
                path.as_str(),
                name,
                &size.to_string(),
                md5.as_str(),
                sha.as_str(),
                root_text.as_str()
            ],
            "{logged}"
        );
        let at_once: usize = row[6].trim().parse().unwrap();
        assert!((1..=4).contains(&at_once), "{logged}");
    }

    // The status lines: a file_done per file with its digests, then tree_done, an exec_done per
    // file, and the summary counting the files.
    let text = std::fs::read_to_string(&status).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |event: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["event"] == event).collect()
    };
    let mut done: Vec<(String, String, String, u64)> = of("file_done")
        .iter()
        .map(|l| {
            assert_eq!(l["tree"], root_text.as_str(), "{l}");
            assert_eq!(l["already_present"], false, "{l}");
            let path = Path::new(l["path"].as_str().unwrap());
            (
                path.strip_prefix(&root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned(),
                l["md5"].as_str().unwrap().to_owned(),
                l["sha256"].as_str().unwrap().to_owned(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    done.sort();
    assert_eq!(done, want, "{text}");
    let tree = of("tree_done");
    assert_eq!(tree.len(), 1, "{text}");
    assert_eq!(tree[0]["path"], root_text.as_str());
    assert_eq!(
        (tree[0]["files"].as_u64(), tree[0]["folders"].as_u64()),
        (Some(32), Some(4))
    );
    let last_file = lines
        .iter()
        .rposition(|l| l["event"] == "file_done")
        .unwrap();
    let tree_at = lines
        .iter()
        .position(|l| l["event"] == "tree_done")
        .unwrap();
    assert!(last_file < tree_at, "{text}");
    // One command failed: reported, and the others ran all the same.
    assert_eq!(of("exec_done").len(), 31, "{text}");
    let failed = of("exec_failed");
    assert_eq!(failed.len(), 1, "{text}");
    let bad = root.join("a/f 3.bin").display().to_string();
    assert_eq!(failed[0]["path"], bad.as_str());
    assert_eq!(failed[0]["exit"], 5);
    assert!(
        stderr.contains(&format!(
            "edm-cast: --exec for {bad}: the command failed (exit status: 5); receiving goes on"
        )),
        "{stderr}"
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["files"], 32);
    assert_eq!(summary["exec_failed"], 1);
    assert_eq!(summary["exit"], 0);
}

/// Our staging folders in `out` (`.edm-cast-<16 hex>.tree`).
fn stages(out: &Path) -> Vec<String> {
    names(out)
        .into_iter()
        .filter(|n| n.starts_with(".edm-cast-") && n.ends_with(".tree"))
        .collect()
}

/// Ctrl-C while a tree of 5,000 files is being unpacked: recv stops at once (130) and leaves
/// nothing in --out: no staging folder, no half tree, no stream (but the stream kept for a resume
/// where the Ctrl-C came while it still arrived: files are unpacked as the stream arrives).
#[test]
fn ctrl_c_while_a_tree_is_unpacked_leaves_nothing_in_out() {
    let dir = TempDir::new("treeint");
    let sent = dir.path().join("big");
    for d in 0..5 {
        let sub = sent.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..1000 {
            std::fs::write(sub.join(format!("{f}")), format!("{d}/{f}").repeat(100)).unwrap();
        }
    }
    let out = dir.path().join("out");
    let group = "239.77.34.2:47352";
    let r = recv_with(group, &out, "pc", &[]);
    let s = send(group, &sent, &["--wait", "30", "--rate", "500M"]);
    // Watch for the staging folder, and interrupt the receiver as soon as it is there.
    let end = std::time::Instant::now() + LIMIT;
    while stages(&out).is_empty() {
        assert!(
            std::time::Instant::now() < end && !out.join("big").exists(),
            "no staging folder seen: {:?}",
            names(&out)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    r.interrupt();
    let stopped = std::time::Instant::now();
    let o = r.wait(LIMIT);
    let waited = stopped.elapsed();
    drop(s);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    let left: Vec<String> = names(&out)
        .into_iter()
        .filter(|n| !(n.ends_with(".part") || n.ends_with(".resume")))
        .collect();
    assert!(left.is_empty(), "{:?}\n{stderr}", names(&out));
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

/// Files are unpacked while the stream still arrives: with the sender paused (SIGSTOP) before
/// the big last file is sent, the staging folder already holds the small first file, whole and
/// right, and the tree is not placed; once the sender goes on, the tree lands identical.
#[test]
fn files_are_written_while_the_stream_still_arrives() {
    let dir = TempDir::new("treeearly");
    let sent = dir.path().join("big");
    std::fs::create_dir_all(&sent).unwrap();
    let first = "first file, in the stream's first block with the manifest\n".repeat(16);
    std::fs::write(sent.join("a.txt"), &first).unwrap();
    let big = 24 << 20;
    random_file(&sent.join("z.bin"), big, 7);
    let out = dir.path().join("out");
    let group = "239.77.34.5:47355";
    let r = recv_with(group, &out, "pc", &[]);
    // 24 MiB at 40 Mbit/s: about 5 s, the manifest and a.txt in the first block.
    let s = send(group, &sent, &["--wait", "30", "--rate", "40M"]);
    let end = std::time::Instant::now() + LIMIT;
    while stages(&out).is_empty() {
        assert!(
            std::time::Instant::now() < end,
            "no staging folder seen: {:?}",
            names(&out)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    s.signal(libc::SIGSTOP);
    let stage = out.join(&stages(&out)[0]);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read(stage.join("a.txt")).ok().as_deref() != Some(first.as_bytes()) {
        assert!(
            std::time::Instant::now() < end,
            "a.txt not written while the stream arrives: {:?}",
            names(&stage)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Paused, the sender cannot complete the stream: the big file stays short, nothing placed.
    std::thread::sleep(Duration::from_millis(500));
    let z = std::fs::metadata(stage.join("z.bin")).map_or(0, |m| m.len());
    assert!(z < big as u64, "z.bin whole while the sender is paused");
    assert!(
        !out.join("big").exists(),
        "placed while the sender is paused"
    );
    s.signal(libc::SIGCONT);
    let o = r.wait(LIMIT);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    drop(s);
    assert_eq!(diff_trees(&sent, &out.join("big"), false), "", "{stderr}");
    assert!(stages(&out).is_empty(), "{:?}", names(&out));
}

/// A staging folder left by a receiver killed outright (SIGKILL, a power cut) is removed by the
/// next recv on that --out; what only looks like one (a symlink of that name, another name, one
/// just made, perhaps by another receiver) is left alone, and nothing is followed out of --out.
#[test]
fn a_stale_staging_folder_is_removed_at_the_next_start_and_nothing_else() {
    let dir = TempDir::new("treestale");
    let out = dir.path().join("out");
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), b"precious").unwrap();
    let stale = out.join(".edm-cast-0123456789abcdef.tree");
    std::fs::create_dir_all(stale.join("sub")).unwrap();
    std::fs::write(stale.join("sub").join("half.bin"), b"half").unwrap();
    std::os::unix::fs::symlink(&victim, stale.join("link")).unwrap();
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o700)).unwrap();
    let touched = Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(&stale)
        .status()
        .unwrap();
    assert!(touched.success());
    std::os::unix::fs::symlink(&victim, out.join(".edm-cast-fedcba9876543210.tree")).unwrap();
    std::fs::create_dir_all(out.join(".edm-cast-other.tree")).unwrap();
    std::fs::create_dir_all(out.join(".edm-cast-1111111111111111.tree")).unwrap();
    let o = Command::new(bin())
        .args(["recv", "--group", "239.77.34.3:47353", "--iface", "lo"])
        .args(["--timeout", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "removed {}: a folder being unpacked when an earlier receiver was stopped",
            stale.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        names(&out),
        [
            ".edm-cast-1111111111111111.tree",
            ".edm-cast-fedcba9876543210.tree",
            ".edm-cast-other.tree"
        ]
    );
    assert_eq!(names(&victim), ["precious"]);
    assert_eq!(std::fs::read(victim.join("precious")).unwrap(), b"precious");
}

/// A tree is read where its files lie, not copied first: with `$TMPDIR` a folder that does not
/// exist, it is sent all the same. (Before, `send FOLDER` wrote the whole tree into `$TMPDIR`
/// first, a tmpfs on many systems: a course folder of several GB took as much memory, or failed.)
#[test]
fn a_tree_is_read_where_it_lies_and_needs_no_room_in_tmpdir() {
    let dir = TempDir::new("tree-inplace");
    let sent = dir.path().join("course");
    make_tree(&sent);
    let group = "239.77.35.1:47361";
    let out = dir.path().join("pc");
    let rx = recv_with(group, &out, "pc", &[]);
    let s = common::Proc::spawn(
        "sender",
        Command::new(bin())
            .env("TMPDIR", dir.path().join("no such folder"))
            .args(["send", "--group", group, "--iface", "lo"])
            .args(["--min-receivers", "1", "--wait", "30"])
            .arg(&sent),
    )
    .wait(LIMIT);
    let (summary, log) = text(&s);
    assert!(s.status.success(), "{summary}\n{log}");
    let o = rx.wait(LIMIT);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(diff_trees(&sent, &out.join("course"), false), "");
}

/// A file of the tree written to while the tree is sent (the teacher edits it, same size) aborts
/// the session, as for one file: its blocks are read from it, and would no longer match the
/// SHA-256 the manifest gave for it.
#[test]
fn a_file_of_a_tree_changed_while_it_is_sent_aborts_the_session() {
    let dir = TempDir::new("tree-changed");
    let sent = dir.path().join("course");
    make_tree(&sent);
    let video = sent.join("dossier 0 é").join("video.bin");
    random_file(&video, 4 << 20, 62);
    let out = dir.path().join("pc");
    let (se, re) = common::edited_while_sent("239.77.35.3:47363", &sent, &video, &out);
    assert!(
        se.contains(&format!(
            "edm-cast: {} changed while it was sent (its size or modification time is not what it \
             was when its SHA-256 was computed): the session is aborted",
            video.display()
        )),
        "{se}"
    );
    assert!(re.contains("aborted"), "{re}");
    // Nothing placed (what it received is kept for a resume, as for one file).
    assert!(!out.join("course").exists(), "{re}");
}
