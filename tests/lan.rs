//! The LAN lab (tools/lanlab.sh): a sender and N receivers in network namespaces on a bridge, a
//! `tc tbf` rate limit on the sender's link and independent random loss on each receiver's port.
//! Needs root; skips with a message elsewhere (CI runs it as root with EDM_CAST_REQUIRE_LAB=1, which
//! turns a skip into a failure).
//!
//! Defaults: 8 receivers, 5% loss, 100 Mbit/s, 64 MiB. `bench/lan.sh` varies them through
//! EDM_LAN_RECEIVERS, EDM_LAN_LOSS, EDM_LAN_MBIT and EDM_LAN_MIB and collects the figures printed.
//!
//! The WAN test adds a web server behind a 20 Mbit/s link to the sender (EDM_WAN_MBIT, EDM_WAN_MIB):
//! 8 students `get` the same URL from `serve`, and the WAN link carries the file once.

mod common;

use common::lab::{Lab, lab_available};
use common::{Http, Proc, TempDir, bin, md5_of, random_file, text};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The lab tests run one at a time: each takes the whole machine.
static LAB: Mutex<()> = Mutex::new(());

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn lan_lab_every_receiver_gets_the_exact_file() {
    if !lab_available("LAN lab", &[]) {
        return;
    }
    let _one_at_a_time = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let receivers: usize = env_or("EDM_LAN_RECEIVERS", 8);
    let loss: f64 = env_or("EDM_LAN_LOSS", 5.0);
    let mbit: u32 = env_or("EDM_LAN_MBIT", 100);
    let mib: usize = env_or("EDM_LAN_MIB", 64);

    let dir = TempDir::new("lan");
    let src = dir.path().join("image.bin");
    random_file(&src, mib << 20, 64);
    let want = md5_of(&src);
    let lab = Lab::up(
        &format!("t{}", std::process::id() % 100_000),
        receivers,
        mbit,
        loss,
        None,
    );

    let (outs, procs) = lab.on_receivers(receivers, dir.path(), &["recv", "--timeout", "60"]);
    let before = lab.tx_bytes("s");
    let started = Instant::now();
    // Paced a little under the link so the shaper's queue never overflows.
    let rate = format!("{}M", mbit as f64 * 0.97);
    let sender = Proc::spawn(
        "sender",
        lab.exec("s")
            .args([bin(), "send", "--group", "239.1.1.1", "--iface", "eth0"])
            .args(["--rate", &rate, "--min-receivers", &receivers.to_string()])
            .args(["--wait", "30"])
            .arg(&src),
    )
    .wait(Duration::from_secs(300));
    let wall = started.elapsed().as_secs_f64();
    let (summary, log) = text(&sender);
    assert!(sender.status.success(), "sender failed:\n{summary}\n{log}");
    let mut ok = 0;
    for (p, out) in procs.into_iter().zip(&outs) {
        let name = p.name.clone();
        let o = p.wait(Duration::from_secs(60));
        assert!(o.status.success(), "{name}: {:?}", text(&o));
        assert_eq!(md5_of(&out.join("image.bin")), want, "{name}");
        ok += 1;
    }
    // Let the shaper's queue drain before reading the counter.
    std::thread::sleep(Duration::from_millis(300));
    let bytes = lab.tx_bytes("s") - before;
    let size = (mib << 20) as f64;
    let ideal = size * 8.0 / (mbit as f64 * 1e6);
    let secs: f64 = summary
        .lines()
        .next()
        .and_then(|l| l.rsplit(" in ").next())
        .and_then(|t| t.trim_end_matches(" s").parse().ok())
        .expect("summary names the time");
    println!(
        "LAN lab: {receivers} receivers, {loss}% loss, {mbit} Mbit/s, {mib} MiB: \
         {ok}/{receivers} MD5 equal; sender interface {bytes} bytes = {:.3} x file; \
         transfer {secs:.2} s = {:.2} x ideal {ideal:.2} s (process wall {wall:.2} s)",
        bytes as f64 / size,
        secs / ideal,
    );
    println!("{summary}");
}

#[test]
fn wan_lab_the_class_downloads_once() {
    if !lab_available("LAN lab", &[]) {
        return;
    }
    let _one_at_a_time = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let receivers = 8;
    let wan_mbit: u32 = env_or("EDM_WAN_MBIT", 20);
    let mib: usize = env_or("EDM_WAN_MIB", 64);
    let dir = TempDir::new("wan");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let src = www.join("course.iso");
    random_file(&src, mib << 20, 65);
    let want = md5_of(&src);
    let lab = Lab::up(
        &format!("w{}", std::process::id() % 100_000),
        receivers,
        100,
        1.0,
        Some(wan_mbit),
    );
    let http = Http::start(&mut lab.exec("w"), &www, "10.78.0.2", &[]);
    let server = Proc::spawn(
        "serve",
        lab.exec("s")
            .args([bin(), "serve", "--group", "239.1.1.1", "--iface", "eth0"])
            .args([
                "--rate",
                "97M",
                "--allow",
                "10.78.0.0/24",
                "--exit-after",
                "400",
            ]),
    );
    let url = format!("http://10.78.0.2:{}/course.iso", http.port);
    let before = lab.tx_bytes("w");
    let started = Instant::now();
    let (outs, gets) = lab.on_receivers(receivers, dir.path(), &["get", &url]);
    let limit = Duration::from_secs(60 + (mib as u64 * 8 * 4) / wan_mbit as u64);
    for (p, out) in gets.into_iter().zip(&outs) {
        let name = p.name.clone();
        let o = p.wait(limit);
        assert!(o.status.success(), "{name}: {:?}", text(&o));
        assert_eq!(md5_of(&out.join("course.iso")), want, "{name}");
    }
    let secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let wan_bytes = lab.tx_bytes("w") - before;
    let size = (mib << 20) as f64;
    let ratio = wan_bytes as f64 / size;
    let gets_logged: Vec<String> = http
        .requests()
        .into_iter()
        .filter(|l| l.starts_with("GET"))
        .collect();
    drop(server);
    assert_eq!(gets_logged.len(), 1, "one download: {gets_logged:?}");
    assert!(ratio <= 1.05, "the WAN carried {ratio:.3} x the file");
    let wan_ideal = size * 8.0 / (wan_mbit as f64 * 1e6);
    println!(
        "WAN lab: {receivers} students get one {mib} MiB URL over a {wan_mbit} Mbit/s WAN, \
         100 Mbit/s LAN, 1% loss: {receivers}/{receivers} MD5 equal; WAN bytes {wan_bytes} = \
         {ratio:.3} x file; class done in {secs:.2} s = {:.2} x the WAN time {wan_ideal:.2} s",
        secs / wan_ideal
    );
}
