//! `send --sync` on loopback: a tree of a few hundred files sent to three PCs, then changed here
//! and there (small and large files changed, files and a folder added and removed) and sent again
//! with `--sync`. The PCs that had the old tree reuse its unchanged files: what the sender sends
//! is within 5% of the changed and new files' bytes, and every tree ends up `diff -r`-equal to the
//! new one, a fresh PC's included; a symlink planted in an old tree is not followed, and files
//! the sender no longer has are gone. One file sent with `--sync` to a PC that has it costs no
//! DATA at all.

mod common;

use common::{TempDir, md5_of, random_file, recv_with, send, text};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `edm-cast keygen PATH`: the public key it prints.
fn keygen(path: &Path) -> String {
    let o = Command::new(common::bin())
        .arg("keygen")
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    text(&o).0.trim().to_owned()
}
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// `diff -r a b`: its output, empty when the trees are the same.
fn diff(a: &Path, b: &Path) -> String {
    let o = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.code().is_some_and(|c| c <= 1), "diff: {err}");
    out
}

/// 300 files in 15 folders: mostly small (1 to 20 kB), four large ones. About 5 MB.
fn make_tree(root: &Path) -> Vec<PathBuf> {
    let folders: Vec<PathBuf> = (0..15)
        .map(|i| match i % 3 {
            2 => root
                .join(format!("unit {}", i - 1))
                .join(format!("part {i}")),
            _ => root.join(format!("unit {i}")),
        })
        .collect();
    for f in &folders {
        std::fs::create_dir_all(f).unwrap();
    }
    let mut files = Vec::new();
    for j in 0..300 {
        let path = folders[j % folders.len()].join(format!("file {j}.dat"));
        let len = match j {
            50 | 120 | 200 | 280 => 600_000 + j * 1000,
            _ => 1_000 + (j * 7919) % 19_000,
        };
        random_file(&path, len, j as u64);
        files.push(path);
    }
    files
}

/// Changes the tree the way a teacher does between two lessons; the bytes of the files changed
/// or added.
fn change_tree(root: &Path, files: &[PathBuf]) -> u64 {
    let mut changed = 0;
    // Ten small files rewritten, scattered over the tree; three of the large ones.
    for (n, j) in [7, 33, 61, 90, 118, 150, 178, 215, 240, 299, 120, 200, 280]
        .into_iter()
        .enumerate()
    {
        let len = std::fs::metadata(&files[j]).unwrap().len() as usize + n * 10;
        random_file(&files[j], len, 10_000 + j as u64);
        changed += len as u64;
    }
    // Eight removed, and a folder with what is in it.
    for j in [3, 44, 100, 101, 160, 222, 260, 291] {
        std::fs::remove_file(&files[j]).unwrap();
    }
    std::fs::remove_dir_all(root.join("unit 12")).unwrap();
    // New files: a new folder, a large one, small ones beside old ones.
    let new = root.join("unit 3").join("new notes");
    std::fs::create_dir_all(&new).unwrap();
    for (i, (dir, len)) in [
        (&new, 300_000),
        (&new, 4_000),
        (&root.join("unit 0"), 12_000),
        (&root.join("unit 7"), 2_500),
    ]
    .into_iter()
    .enumerate()
    {
        random_file(&dir.join(format!("added {i}.dat")), len, 20_000 + i as u64);
        changed += len as u64;
    }
    changed
}

/// From the sender's summary: (DATA datagrams, UDP payload bytes of every datagram).
fn sent(summary: &str) -> (u64, u64) {
    let field = |key: &str| -> u64 {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {summary}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let datagrams = field("datagrams");
    let control: u64 = summary
        .split(" repair, ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    (datagrams - control, field("bytes"))
}

/// Sends `tree` to a receiver per `out`, each named after it (the i-th `recv` with `rx[i]`
/// besides, if given); every one must end up with it.
fn session(
    group: &str,
    tree: &Path,
    outs: &[&Path],
    extra: &[&str],
    rx: &[&[&str]],
) -> (String, String) {
    let receivers: Vec<_> = (outs.iter().enumerate())
        .map(|(i, o)| {
            let name = o.file_name().unwrap().to_str().unwrap();
            recv_with(group, o, name, rx.get(i).copied().unwrap_or_default())
        })
        .collect();
    let n = outs.len().to_string();
    let mut args = vec!["--min-receivers", &n, "--wait", "30"];
    args.extend_from_slice(extra);
    let s = send(group, tree, &args).wait(LIMIT);
    let (summary, log) = text(&s);
    assert!(s.status.success(), "{summary}\n{log}");
    let mut logs = String::new();
    for r in receivers {
        let o = r.wait(LIMIT);
        let (_, stderr) = text(&o);
        assert!(o.status.success(), "{stderr}");
        logs.push_str(&stderr);
    }
    (summary, logs)
}

#[test]
fn sync_sends_only_the_changed_files_to_pcs_that_have_the_old_tree() {
    let dir = TempDir::new("sync");
    let tree = dir.path().join("lesson");
    let files = make_tree(&tree);
    let pcs: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("pc{i}"))).collect();
    let got = |i: usize| pcs[i].join("lesson");

    // The first lesson: three PCs get the whole tree.
    let first = [pcs[0].as_path(), &pcs[1], &pcs[2]];
    let (summary, _) = session("239.77.71.1:47711", &tree, &first, &[], &[]);
    println!("whole tree: {} bytes sent", sent(&summary).1);
    for i in 0..3 {
        assert_eq!(diff(&tree, &got(i)), "", "pc{i}");
    }

    // A student planted a symlink where a file was (to a copy elsewhere, same bytes: if it were
    // followed, it would be reused), and left a file of their own in the folder.
    let planted = got(0).join("unit 1").join("file 1.dat");
    let elsewhere = dir.path().join("elsewhere.dat");
    std::fs::copy(&planted, &elsewhere).unwrap();
    std::fs::remove_file(&planted).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
    std::fs::write(got(0).join("mine.txt"), b"mine").unwrap();

    let changed = change_tree(&tree, &files);

    // The next lesson, signed, to the two PCs that have the old tree: only the changes go out.
    // From a sender whose key it trusts (pc0), or with --overwrite (pc1), a PC has the tree
    // received replace the old one.
    let key = dir.path().join("teacher.key");
    let teacher = keygen(&key);
    let old = [pcs[0].as_path(), &pcs[1]];
    let signed = ["--sync", "--key", key.to_str().unwrap()];
    let rx: [&[&str]; 2] = [&["--trust", &teacher], &["--overwrite"]];
    let (summary, logs) = session("239.77.71.2:47712", &tree, &old, &signed, &rx);
    let (data, bytes) = sent(&summary);
    println!(
        "sync: {bytes} bytes sent ({data} DATA) for {changed} bytes of changed and new files ({:.3} x)",
        bytes as f64 / changed as f64
    );
    for line in logs.lines().filter(|l| l.starts_with("sync: ")) {
        println!("  {line}");
    }
    assert!(logs.contains("are here already"), "{logs}");
    assert!(
        bytes as f64 <= changed as f64 * 1.05,
        "{bytes} bytes sent for {changed} changed:\n{summary}"
    );
    for (i, pc) in pcs.iter().enumerate().take(2) {
        assert_eq!(diff(&tree, &got(i)), "", "pc{i}");
        // Only the tree, replaced in place: no "lesson (1)", no leftovers.
        let mut names: Vec<_> = std::fs::read_dir(pc)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["lesson"], "pc{i}");
    }
    // The symlink was neither followed nor kept: a file with the sent bytes is there.
    assert!(planted.symlink_metadata().unwrap().is_file());
    assert!(elsewhere.symlink_metadata().unwrap().is_file());

    // Again, to the third PC that has the old tree and a fresh one that has nothing; unsigned
    // and without --overwrite, the old tree is kept and the new one lands beside it.
    let (_, logs) = session(
        "239.77.71.3:47713",
        &tree,
        &[&pcs[2], &pcs[3]],
        &["--sync"],
        &[],
    );
    assert!(
        logs.contains("it is kept, the folder received goes beside it"),
        "{logs}"
    );
    assert_eq!(diff(&tree, &pcs[2].join("lesson (1)")), "");
    assert!(got(2).join("unit 12").is_dir(), "the old tree is untouched");
    assert_eq!(diff(&tree, &got(3)), "");
}

/// One file with `--sync`: a PC that has it already (same digests) is done without a byte of it
/// sent; a fresh PC in the same session still gets it whole.
#[test]
fn sync_of_one_file_sends_nothing_to_a_pc_that_has_it() {
    let dir = TempDir::new("sync1");
    let file = dir.path().join("lesson.bin");
    random_file(&file, 3_000_000, 7);
    let pcs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("pc{i}"))).collect();
    session("239.77.71.4:47714", &file, &[&pcs[0]], &[], &[]);
    let (summary, logs) = session("239.77.71.5:47715", &file, &[&pcs[0]], &["--sync"], &[]);
    assert!(logs.contains("already present"), "{logs}");
    assert_eq!(sent(&summary).0, 0, "{summary}");
    session(
        "239.77.71.6:47716",
        &file,
        &[&pcs[0], &pcs[1]],
        &["--sync"],
        &[],
    );
    for pc in &pcs {
        assert_eq!(md5_of(&pc.join("lesson.bin")), md5_of(&file));
    }
}
