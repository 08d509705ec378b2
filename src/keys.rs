//! Keys: `edm-cast keygen`, and reading what `--key`, `--trust` and `--to` name. A private key is a
//! file of one line (`edm1-secret-…`, mode 0600); a public key is one line, `edm1-…`, given on the
//! command line or in a file of keys, one a line, `#` comments allowed. A lab image lists the
//! teacher's key once in `/etc/edm-cast/trusted` (or the user's `~/.config/edm-cast/trusted`), and
//! every `recv`, `get` and `watch` trusts it without flags.

use crate::error::Error;
use crate::rt;
use edm_cast_proto::auth::DEFAULT_MAX_SKEW;
use edm_cast_proto::{PublicKey, SecretKey, Signer, Trust};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `edm-cast keygen PATH`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the private key (never overwritten). Its public key is printed.
    pub path: PathBuf,
    /// Print the public key of an existing private key instead.
    #[arg(long)]
    pub show: bool,
}

/// Keys that sign: `send`, `serve`, `video`.
#[derive(clap::Args, Debug, Clone)]
pub struct Signing {
    /// Sign the session with this private key (made by `edm-cast keygen`), so PCs that trust its
    /// public key take it, and only it.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
}

/// Keys that are trusted: `recv`, `get`, `watch`.
#[derive(clap::Args, Debug, Clone)]
pub struct Trusting {
    /// Take only sessions signed by this key: `edm1-…`, or a file of keys (repeatable). Keys in
    /// /etc/edm-cast/trusted and ~/.config/edm-cast/trusted are trusted too.
    #[arg(long, value_name = "KEY|FILE")]
    pub trust: Vec<String>,
}

/// Writes a new key pair, or shows an existing one's public key.
pub fn run(args: Args) -> Result<std::process::ExitCode, Error> {
    let key = if args.show {
        secret(&args.path)?
    } else {
        let key = SecretKey::from_seed(rt::random_bytes()?);
        write_secret(&args.path, &key)?;
        eprintln!(
            "wrote the private key to {} (mode 0600); public key:",
            args.path.display()
        );
        key
    };
    let public = key.public();
    println!("{public}");
    eprintln!("fingerprint {}", public.fingerprint());
    Ok(std::process::ExitCode::SUCCESS)
}

fn write_secret(path: &Path, key: &SecretKey) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Other(format!(
                "{} exists: keygen never overwrites a key (show it with --show)",
                path.display()
            )),
            _ => err(e),
        })?;
    writeln!(
        file,
        "# edm-cast private key, public key {}: keep it secret\n{}",
        key.public(),
        key.to_text()
    )
    .map_err(err)
}

/// The private key in the file at `path`.
pub fn secret(path: &Path) -> Result<SecretKey, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    SecretKey::from_text(&text).map_err(|e| {
        Error::Usage(format!(
            "{}: not an edm-cast private key: {e}",
            path.display()
        ))
    })
}

/// The signer for `--key`, if given.
pub fn signer(args: &Signing) -> Result<Option<Signer>, Error> {
    args.key
        .as_deref()
        .map(|path| {
            Ok(Signer {
                key: secret(path)?,
                clock: rt::wall_clock(),
            })
        })
        .transpose()
}

/// Where a lab image lists the keys every PC trusts.
fn config_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/edm-cast/trusted")];
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = user {
        files.push(dir.join("edm-cast/trusted"));
    }
    files
}

/// Keys from a file: one a line, `#` comments and blank lines ignored.
fn keys_in(path: &Path, text: &str) -> Result<Vec<PublicKey>, Error> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, l)| {
            l.parse()
                .map_err(|e| Error::Usage(format!("{}, line {}: {e}", path.display(), n + 1)))
        })
        .collect()
}

/// Public keys given as `edm1-…` or as files of keys, for `flag`.
pub fn public_keys(given: &[String], flag: &str) -> Result<Vec<PublicKey>, Error> {
    let mut keys = Vec::new();
    for t in given {
        if t.trim_start().starts_with("edm1-") {
            keys.push(
                t.parse::<PublicKey>()
                    .map_err(|e| Error::Usage(format!("{flag} {t}: {e}")))?,
            );
        } else {
            let path = Path::new(t);
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?;
            let found = keys_in(path, &text)?;
            // A service trusting an empty file would take anyone's files: refuse to start.
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{flag} {t}: no key in it: add a public key, one line edm1-… (`edm-cast keygen --show KEYFILE` prints it)"
                )));
            }
            keys.extend(found);
        }
    }
    Ok(keys)
}

/// The keys `--trust` and the configuration files name; `None` if there are none.
pub fn trust(args: &Trusting) -> Result<Option<Trust>, Error> {
    let mut keys = public_keys(&args.trust, "--trust")?;
    for path in config_files() {
        if let Ok(text) = std::fs::read_to_string(&path) {
            keys.extend(keys_in(&path, &text)?);
        }
    }
    Ok((!keys.is_empty()).then(|| Trust::new(keys, rt::wall_clock(), DEFAULT_MAX_SKEW)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_list_keys_with_comments_and_name_bad_lines() {
        let k = SecretKey::from_seed([5; 32]).public();
        let text = format!("# the teacher\n{k}  # room 101\n\n");
        assert_eq!(keys_in(Path::new("t"), &text).unwrap(), [k]);
        let e = keys_in(Path::new("t"), &format!("{k}\nedm1-nonsense\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t, line 2") && e.contains("damaged"), "{e}");
    }

    #[test]
    fn a_file_of_keys_without_a_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("edm-cast-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trusted");
        std::fs::write(&path, "# the teacher's key goes here\n\n").unwrap();
        let given = [path.to_str().unwrap().to_owned()];
        let e = public_keys(&given, "--trust").unwrap_err().to_string();
        let k = SecretKey::from_seed([6; 32]).public();
        std::fs::write(&path, format!("{k}\n")).unwrap();
        let found = public_keys(&given, "--trust");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            e,
            format!(
                "--trust {}: no key in it: add a public key, one line edm1-… (`edm-cast keygen --show KEYFILE` prints it)",
                given[0]
            )
        );
        assert_eq!(found.unwrap(), [k]);
    }
}
