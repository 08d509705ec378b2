//! The restart file, as UFTP has one: after a session some PCs missed, `send` lists them in
//! `FILE.restart` beside the file it sent (JSON: the file's name, size and digests, the session,
//! and each PC's name, address, state and how much it had); `send FILE --resume-from THAT` re-runs the session for
//! them. The re-run waits for those PCs by name (not for a count), each one resumes from what its
//! `recv` kept (`resume`) and takes only what it lacks; afterwards the file lists whoever still
//! missed it, or is removed once none did.

use super::session::Session;
use crate::error::Error;
use data_encoding::HEXLOWER;
use edm_cast_proto::wire::FileDigests;
use edm_cast_proto::wire::ReceiverState;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The format's version, the first field: a later one is refused, not misread.
const VERSION: u32 = 1;

/// Larger than this, a file is not a restart file (a class of a thousand PCs is ~100 KB).
const MAX_LEN: u64 = 4 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct Restart {
    pub edm_cast_restart: u32,
    /// The file, as announced.
    pub name: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
    /// The session that missed them.
    pub session: String,
    pub receivers: Vec<Missed>,
}

/// A PC that did not get the file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Missed {
    pub name: String,
    pub addr: String,
    /// `dropped`, `failed` or `left_behind`.
    pub state: String,
    /// The share of the file it had (0 to 1).
    pub had: f64,
}

impl Restart {
    /// Reads `path`, and checks it is about `content`.
    pub fn read(path: &Path, content: &Content) -> Result<Restart, Error> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_LEN).read_to_string(&mut text))
            .map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?;
        let bad = |why: String| Error::Usage(format!("{}: {why}", path.display()));
        let r: Restart = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not an edm-cast restart file ({e})")))?;
        if r.edm_cast_restart != VERSION {
            return Err(bad(format!(
                "a restart file of version {}, this edm-cast reads version {VERSION}",
                r.edm_cast_restart
            )));
        }
        let sha256 = content.digests.map(|d| HEXLOWER.encode(&d.sha256));
        if content.size != Some(r.size) || sha256.as_deref() != Some(r.sha256.as_str()) {
            return Err(bad(format!(
                "it is for {} ({} bytes, sha256 {}), not for this file: send that file with it",
                r.name, r.size, r.sha256
            )));
        }
        Ok(r)
    }

    /// The names the re-run waits for (a PC without a name cannot be told apart: not waited for).
    pub fn names(&self) -> Vec<String> {
        (self.receivers.iter())
            .filter(|m| !m.name.is_empty())
            .map(|m| m.name.clone())
            .collect()
    }
}

/// What a session sends, as a restart file names it.
pub struct Content {
    pub name: String,
    /// Where `send` read it: what the re-run is given.
    pub path: PathBuf,
    /// Known for a file (a download's only once it is complete: it is not listed).
    pub size: Option<u64>,
    pub digests: Option<FileDigests>,
}

/// After a session: writes the restart file for the PCs that missed the file (at `path`, or
/// `FILE.restart` beside the file), or removes `path` if none did. `waited`: the names a
/// re-run waited for, still missed if they never came. Says what it did in one line.
pub fn after(session: &Session, content: &Content, path: Option<&Path>, waited: &[String]) {
    let layout = session.sender.layout();
    let blocks = layout.num_blocks().max(1);
    let mut receivers: Vec<Missed> = (session.sender.receivers())
        .filter(|r| {
            r.state != ReceiverState::Hello && (r.dropped || r.state != ReceiverState::Done)
        })
        .map(|r| Missed {
            name: r.name.clone(),
            addr: r.addr.ip().to_string(),
            state: match (r.dropped, r.state) {
                (true, _) => "dropped",
                (_, ReceiverState::Failed) => "failed",
                _ => "left_behind",
            }
            .into(),
            had: r.blocks_done.min(blocks) as f64 / blocks as f64,
        })
        .collect();
    // A PC that had the file is not missed, whichever of its receivers (a restarted one) said so.
    let done = |name: &str| {
        (session.sender.receivers())
            .any(|r| r.name == name && r.state == ReceiverState::Done && !r.dropped)
    };
    receivers.retain(|m| m.name.is_empty() || !done(&m.name));
    receivers.dedup_by(|a, b| !a.name.is_empty() && a.name == b.name);
    for name in waited {
        if !done(name) && !receivers.iter().any(|m| m.name == *name) {
            receivers.push(Missed {
                name: name.clone(),
                addr: String::new(),
                state: "absent".into(),
                had: 0.0,
            });
        }
    }
    let path = path.map_or_else(
        || {
            let mut beside = content.path.clone().into_os_string();
            beside.push(".restart");
            PathBuf::from(beside)
        },
        Path::to_owned,
    );
    if receivers.is_empty() {
        if std::fs::remove_file(&path).is_ok() {
            eprintln!(
                "edm-cast: every PC of {} has the file now: removed it",
                path.display()
            );
        }
        return;
    }
    let (Some(size), Some(digests)) = (content.size, content.digests) else {
        return;
    };
    let restart = Restart {
        edm_cast_restart: VERSION,
        name: content.name.clone(),
        size,
        md5: HEXLOWER.encode(&digests.md5),
        sha256: HEXLOWER.encode(&digests.sha256),
        session: format!("{:08x}", session.id),
        receivers,
    };
    let json = serde_json::to_string_pretty(&restart).expect("plain data serializes");
    let (n, p) = (restart.receivers.len(), path.display());
    match std::fs::write(&path, json + "\n") {
        Ok(()) => eprintln!(
            "edm-cast: the {n} PC(s) that missed it are listed in {p}: `edm-cast send {} --resume-from {p}` sends it again for them, each taking only what it lacks",
            content.path.display()
        ),
        Err(e) => eprintln!("edm-cast: cannot write the restart file {p}: {e}"),
    }
}
