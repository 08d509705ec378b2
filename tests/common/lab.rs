//! The namespace lab (tools/lanlab.sh) for tests that need root: built, used, and torn down on
//! drop, also when the test panics.

use super::{Proc, bin, text};
use std::path::{Path, PathBuf};
use std::process::Command;

fn lanlab() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/lanlab.sh")
}

/// A lab, torn down when dropped (also when the test panics).
pub struct Lab {
    name: String,
}

impl Lab {
    fn cmd(&self) -> Command {
        let mut c = Command::new("bash");
        c.arg(lanlab()).env("LAB", &self.name);
        c
    }

    /// `tools/lanlab.sh up`: N receivers behind a sender limited to `mbit`, `loss` % toward each
    /// receiver, and a wan host behind a `wan_mbit` link if given.
    pub fn up(name: &str, receivers: usize, mbit: u32, loss: f64, wan_mbit: Option<u32>) -> Lab {
        Lab::build(name, receivers, mbit, loss, wan_mbit, false)
    }

    /// As `up`, with IPv6 on (`LANLAB_IPV6=1`): the sender is fd77::1, receiver i fd77::(10+i),
    /// the wan host fd78::2.
    pub fn up_ipv6(name: &str, receivers: usize, mbit: u32, wan_mbit: Option<u32>) -> Lab {
        Lab::build(name, receivers, mbit, 0.0, wan_mbit, true)
    }

    /// As `up` (no wan), with receiver r`slow`'s switch port limited to `port_mbit`
    /// (`PORT_RATES`): a slow PC in the class.
    pub fn up_slow_port(
        name: &str,
        receivers: usize,
        mbit: u32,
        loss: f64,
        (slow, port_mbit): (usize, u32),
    ) -> Lab {
        let lab = Lab { name: name.into() };
        let mut cmd = lab.cmd();
        cmd.env("PORT_RATES", format!("{slow}={port_mbit}mbit"));
        lab.run_up(cmd, receivers, mbit, loss)
    }

    fn build(
        name: &str,
        receivers: usize,
        mbit: u32,
        loss: f64,
        wan_mbit: Option<u32>,
        ipv6: bool,
    ) -> Lab {
        let lab = Lab { name: name.into() };
        let mut cmd = lab.cmd();
        if ipv6 {
            cmd.env("LANLAB_IPV6", "1");
        }
        if let Some(w) = wan_mbit {
            cmd.env("WAN_RATE", format!("{w}mbit"));
        }
        lab.run_up(cmd, receivers, mbit, loss)
    }

    fn run_up(self, mut cmd: Command, receivers: usize, mbit: u32, loss: f64) -> Lab {
        let out = cmd
            .args([
                "up",
                &receivers.to_string(),
                &format!("{mbit}mbit"),
                &loss.to_string(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "lanlab up: {:?}", text(&out));
        self
    }

    pub fn exec(&self, host: &str) -> Command {
        let mut c = self.cmd();
        c.args(["exec", host]);
        c
    }

    pub fn tx_bytes(&self, host: &str) -> u64 {
        let out = self.cmd().args(["txbytes", host]).output().unwrap();
        text(&out)
            .0
            .trim()
            .parse()
            .expect("txbytes prints a number")
    }
}

impl Lab {
    /// Runs `edm-cast ARGS --group 239.1.1.1 --iface eth0 --name rI --out DIR/rI` on r1..rN. Nine
    /// machines share this box's two cores here; on a real LAN every receiver has its own, so
    /// they run under `nice`, which keeps them from starving the sender's pacing.
    pub fn on_receivers(&self, n: usize, dir: &Path, args: &[&str]) -> (Vec<PathBuf>, Vec<Proc>) {
        let outs: Vec<PathBuf> = (1..=n).map(|i| dir.join(format!("r{i}"))).collect();
        let nice = std::env::var("EDM_LAN_NICE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "10".into());
        let procs = outs
            .iter()
            .enumerate()
            .map(|(i, out)| {
                let host = format!("r{}", i + 1);
                Proc::spawn(
                    &host,
                    // EDM_LAN_NICE=0 (bench/lan.sh NICE=0): as on a real LAN, not reniced.
                    self.exec(&host)
                        .args(["nice", "-n", &nice, bin()])
                        .args(args)
                        .args(["--group", "239.1.1.1", "--iface", "eth0", "--name", &host])
                        .arg("--out")
                        .arg(out),
                )
            })
            .collect();
        (outs, procs)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.cmd().arg("down").output();
    }
}

/// Why the lab (and `tools`, commands it needs besides) cannot run here, if it cannot.
fn unavailable(tools: &[&str]) -> Option<String> {
    match Command::new("bash").arg(lanlab()).arg("check").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Some(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => return Some(e.to_string()),
    }
    tools.iter().find_map(|t| missing(t))
}

/// Why `program` cannot run here (`program -version` fails), if it cannot.
fn missing(program: &str) -> Option<String> {
    match Command::new(program).arg("-version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some(format!(
            "{program} is not installed (apt-get install {program})"
        )),
    }
}

/// Whether `program` runs here; when not, says the `what` test is skipped, or, under
/// EDM_CAST_REQUIRE_LAB, fails: CI installs every real peer the tests use.
pub fn tool_available(what: &str, program: &str) -> bool {
    skip_unless(what, missing(program))
}

/// False (after saying why) if `what` cannot run here and is not required; under
/// EDM_CAST_REQUIRE_LAB (CI as root) a lab that cannot run is a failure instead.
pub fn lab_available(what: &str, tools: &[&str]) -> bool {
    skip_unless(what, unavailable(tools))
}

/// Whether each of `checks` (a command line) exits 0 here, for programs that take no `-version`
/// (`gst-inspect-1.0 sdpdemux`, VLC as a normal user); when not, as `tool_available`.
pub fn commands_run(what: &str, checks: &[&[&str]]) -> bool {
    let failing = |c: &&[&str]| match Command::new(c[0]).args(&c[1..]).output() {
        Ok(o) if o.status.success() => None,
        _ => Some(format!("`{}` fails (.ci/run installs it)", c.join(" "))),
    };
    skip_unless(what, checks.iter().find_map(failing))
}

fn skip_unless(what: &str, why_not: Option<String>) -> bool {
    match why_not {
        None => true,
        Some(why) => {
            assert!(
                std::env::var_os("EDM_CAST_REQUIRE_LAB").is_none(),
                "the {what} test cannot run here: {why}"
            );
            eprintln!("skipping the {what} test: {why}");
            false
        }
    }
}
