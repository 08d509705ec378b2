//! Folders and many files in one session, on loopback: a tree with empty files and folders,
//! spaces and non-ASCII names to three receivers (`diff -r` empty), several sources with
//! `--exclude`, and hostile manifests from a trusted sender refused with nothing written outside
//! (or inside) `--out`.

mod common;

use common::{TempDir, bin, random_file, recv_with, send, text};
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

/// `diff -r a b`: its output, empty when the trees are the same.
fn diff(a: &Path, b: &Path) -> String {
    let o = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.code().is_some_and(|c| c <= 1), "diff: {err}");
    out
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
        assert_eq!(diff(&sent, &got), "");
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
    assert_eq!(diff(&a, &got.join("a.pdf")), "");
    assert_eq!(diff(&b, &got.join("b.mp4")), "");
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
