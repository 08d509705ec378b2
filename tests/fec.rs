//! `send`'s first-pass repair (PROTOCOL.md 5.10) from the command line: sized from what the PCs
//! report by default, fixed with `--fec-repair`, its cap bounded, and the summary says which. Over
//! loopback (group 239.77.44.1, ports 4744x).

mod common;

use common::{TempDir, bin, md5_of, random_file, recv, send, text};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn the_summary_says_what_the_first_pass_was_sized_for_and_fec_repair_fixes_it() {
    let dir = TempDir::new("fec-summary");
    let src = dir.path().join("lesson.bin");
    // 5 blocks of 1,441,792 bytes: one window.
    random_file(&src, 6 << 20, 441);
    for (i, extra) in [&[][..], &["--fec-repair", "1"][..]]
        .into_iter()
        .enumerate()
    {
        let group = format!("239.77.44.1:4744{i}");
        let out = dir.path().join(format!("pc{i}"));
        let r = recv(&group, &out, "pc1");
        let args = [&["--wait", "20"][..], extra].concat();
        let s = send(&group, &src, &args).wait(LIMIT);
        let (summary, log) = text(&s);
        assert!(s.status.success(), "{summary}\n{log}");
        let line = (summary.lines())
            .find(|l| l.trim_start().starts_with("repair "))
            .unwrap_or_else(|| panic!("no repair line in {summary}"));
        assert!(
            line.contains(" of 5 blocks needed a repair round"),
            "{line}"
        );
        // Sized from the one receiver's report, or fixed.
        assert_eq!(
            line.contains("; the last first pass was sized for ") && line.ends_with(" receivers)"),
            extra.is_empty(),
            "{line}"
        );
        assert!(r.wait(LIMIT).status.success());
        assert_eq!(md5_of(&out.join("lesson.bin")), md5_of(&src));
    }
}

#[test]
fn a_cap_past_half_or_both_ways_at_once_is_a_usage_error() {
    for (args, want) in [
        (&["--fec-loss-max", "60"][..], "60 is not in 0..=50"),
        (
            &["--fec-repair", "1", "--fec-loss-max", "10"][..],
            "cannot be used with",
        ),
        (&["--fec-repair", "101"][..], "101 is not in 0..=100"),
    ] {
        let o = Command::new(bin())
            .args(["send", "x.iso", "--group", "239.77.44.1:47449"])
            .args(args)
            .output()
            .unwrap();
        let (_, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
