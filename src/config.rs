//! `--config FILE`: a command's options from a TOML file, for services (`/etc/edm-cast/recv.toml`).
//!
//! The file's keys are the command's long option names (`max-size`, not `max_size`); its values
//! are what the command line would take: a string or number, `true`/`false` for a switch, an
//! array for an option that repeats. The file gives defaults: an option named on the command line
//! wins over the file's value for it. Every key and value is checked as the command line would
//! check it, before anything runs, and a wrong one is refused in one line that names the file, the
//! key and what to write instead (exit 64, so a service stops rather than restarting in a loop;
//! a file that cannot be read is exit 1, as any other).
//!
//! It works on the arguments, before clap builds the typed `Cli`: each key becomes `--key=VALUE`,
//! inserted just after the command's name, so the options' own parsers and rules apply unchanged.
//! `video` has tables too (`[pi]`, its sources): they are left to it (src/video/sources.rs).

use crate::error::Error;
use clap::ArgAction;
use clap::parser::ValueSource;
use std::ffi::OsString;
use std::path::Path;

/// The command whose `--config` tables are its own (sources), not options.
const TABLES_ARE_SOURCES: &str = "video";

/// `args` with the options of the `--config` file, if one is named, added as if typed after the
/// command's name; `args` unchanged if none is (or the command line cannot be read: clap then
/// says why).
pub fn apply(cli: &clap::Command, args: Vec<OsString>) -> Result<Vec<OsString>, Error> {
    let mut cli = cli.clone();
    cli.build();
    let Ok(matches) = cli.clone().ignore_errors(true).try_get_matches_from(&args) else {
        return Ok(args);
    };
    let Some((name, given)) = matches.subcommand() else {
        return Ok(args);
    };
    // A --config before the command's name reaches it too (video's own --config included).
    let Some(path) = given.get_raw("config").and_then(|mut v| v.next()) else {
        return Ok(args);
    };
    let command = cli
        .find_subcommand(name)
        .expect("clap matched this command");
    let path = Path::new(path);
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let added = options(command, path, &text, |id| {
        given.value_source(id) == Some(ValueSource::CommandLine)
    })
    .map_err(Error::Usage)?;
    let at = command_position(&args, name);
    let mut out = args;
    out.splice(at + 1..at + 1, added);
    Ok(out)
}

/// Where the command's name is: the first argument that is it, not the value of `--config`.
fn command_position(args: &[OsString], name: &str) -> usize {
    (1..args.len())
        .find(|&i| args[i] == name && args[i - 1] != "--config")
        .expect("clap matched this command")
}

/// The options in `text`, the file at `path`, for `command` as arguments, but those
/// `on_command_line` says were typed.
fn options(
    command: &clap::Command,
    path: &Path,
    text: &str,
    on_command_line: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, String> {
    let file = path.display();
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!(" line {}", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        let why = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        format!("{file}{line}: not valid TOML: {why}")
    })?;
    let cmd = format!("edm-cast {}", command.get_name());
    let mut args = Vec::new();
    for (key, value) in &table {
        if value.is_table() && command.get_name() == TABLES_ARE_SOURCES {
            continue;
        }
        let at = |what: String| format!("{file}: {key}: {what}");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !a.is_hide_set())
        else {
            let hint = command
                .get_arguments()
                .filter_map(|a| a.get_long())
                .map(|l| (strsim::jaro(l, key), l))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, l)| format!("did you mean '{l}'? "))
                .unwrap_or_default();
            return Err(at(format!(
                "{cmd} has no --{key} option ({hint}keys are the long options of `{cmd} --help`)"
            )));
        };
        let id = arg.get_id().as_str();
        if matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        ) || id == "config"
        {
            return Err(at(format!("--{key} cannot be set in a file")));
        }
        let flag = || OsString::from(format!("--{key}"));
        let typed = on_command_line(id);
        match (value, arg.get_action()) {
            (toml::Value::Boolean(on), ArgAction::SetTrue) => {
                args.extend((*on && !typed).then(flag));
            }
            (_, ArgAction::SetTrue) => {
                return Err(at(format!(
                    "--{key} is a switch: write {key} = true (or false)"
                )));
            }
            (toml::Value::Integer(n @ 0..=255), ArgAction::Count) => {
                let n = if typed { 0 } else { *n as usize };
                args.extend(std::iter::repeat_with(flag).take(n));
            }
            (_, ArgAction::Count) => return Err(at(format!("write a count: {key} = 1"))),
            (value, action) => {
                let values = match (value, action) {
                    (toml::Value::Array(items), ArgAction::Append) => items
                        .iter()
                        .map(scalar)
                        .collect::<Option<Vec<String>>>()
                        .ok_or_else(|| at("write an array of strings or numbers".into()))?,
                    (toml::Value::Array(_), _) => {
                        return Err(at(format!(
                            "--{key} takes one value, not an array: {key} = \"VALUE\""
                        )));
                    }
                    (v, _) => vec![scalar(v).ok_or_else(|| {
                        at(format!(
                            "write a string, number or true/false: {key} = \"VALUE\""
                        ))
                    })?],
                };
                for v in &values {
                    check(command, key, v).map_err(at)?;
                }
                if !typed {
                    args.extend(
                        values
                            .iter()
                            .map(|v| OsString::from(format!("--{key}={v}"))),
                    );
                }
            }
        }
    }
    Ok(args)
}

/// A TOML value the command line could have said: strings, numbers, booleans, dates.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
        other => Some(other.to_string()),
    }
}

/// Checks one value with the option's own parser (and its list of possible values), by parsing
/// it alone: the error names the option as the command line's would. Other complaints (a required
/// argument missing, alone) are not about the value.
fn check(command: &clap::Command, key: &str, value: &str) -> Result<(), String> {
    use clap::error::ErrorKind;
    match command
        .clone()
        .try_get_matches_from(["edm-cast".into(), format!("--{key}={value}")])
    {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.trim_start_matches("error: ").to_owned())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, FromArgMatches};

    /// A config file in a fresh temporary folder, removed with it.
    struct File(std::path::PathBuf);

    impl File {
        fn new(name: &str, text: &str) -> File {
            let dir =
                std::env::temp_dir().join(format!("edm-cast-config-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("c.toml");
            std::fs::write(&path, text).unwrap();
            File(path)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let args = apply(&Cli::command(), args.iter().map(OsString::from).collect())
            .map_err(|e| e.to_string())?;
        let matches = Cli::command()
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        Ok(Cli::from_arg_matches(&matches).unwrap())
    }

    fn recv(cli: Cli) -> crate::file::recv::Args {
        match cli.command {
            Command::Recv(a) => a,
            other => panic!("not recv: {other:?}"),
        }
    }

    #[test]
    fn keys_are_long_options_and_the_command_line_wins() {
        let f = File::new(
            "wins",
            "group = \"239.9.9.9:6000\"\nout = \"/srv/inbox\"\nkeep = true\n\
             trust = [\"edm1-a\", \"edm1-b\"]\nmax-size = \"2G\"\nverbose = 2\n",
        );
        let a = recv(parse(&["edm-cast", "recv", "--config", f.path()]).unwrap());
        assert_eq!(a.net.group.to_string(), "239.9.9.9:6000");
        assert_eq!(a.receiving.out.to_str(), Some("/srv/inbox"));
        assert!(a.keep);
        assert_eq!(a.receiving.trusting.trust, ["edm1-a", "edm1-b"]);
        assert_eq!(a.receiving.max_size.map(|s| s.0), Some(2 << 30));
        let cli = parse(&[
            "edm-cast",
            "--config",
            f.path(),
            "recv",
            "--out",
            "/tmp/x",
            "--trust",
            "edm1-c",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 2);
        let a = recv(cli);
        assert_eq!(a.receiving.out.to_str(), Some("/tmp/x"));
        assert_eq!(a.receiving.trusting.trust, ["edm1-c"]);
        assert_eq!(a.net.group.to_string(), "239.9.9.9:6000");
    }

    #[test]
    fn a_wrong_key_or_value_is_one_line_that_names_file_and_key() {
        let cases = [
            (
                "grup = \"239.1.1.1\"",
                "grup: edm-cast recv has no --grup option (did you mean 'group'? keys are the long options of `edm-cast recv --help`)",
            ),
            (
                "max_size = \"2G\"",
                "max_size: edm-cast recv has no --max_size option (did you mean 'max-size'?",
            ),
            (
                "keep = \"yes\"",
                "keep: --keep is a switch: write keep = true (or false)",
            ),
            (
                "group = \"nowhere\"",
                "group: invalid value 'nowhere' for '--group <GROUP>'",
            ),
            (
                "out = [\"a\", \"b\"]",
                "out: --out takes one value, not an array",
            ),
            ("[out]\nx = 1", "out: write a string, number or true/false"),
            ("config = \"x\"", "config: --config cannot be set in a file"),
            ("group = \"239.1.1.1", "line 1: not valid TOML"),
            ("keep = true\n\nout = tmp", "line 3: not valid TOML"),
        ];
        for (i, (text, want)) in cases.into_iter().enumerate() {
            let f = File::new(&format!("bad{i}"), text);
            let e = parse(&["edm-cast", "recv", "--config", f.path()]).unwrap_err();
            assert!(!e.contains('\n'), "{text}: more than one line: {e}");
            assert!(e.starts_with(f.path()), "{text}: {e}");
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = parse(&["edm-cast", "recv", "--config", "/nonexistent.toml"]).unwrap_err();
        assert!(
            e.starts_with("cannot read /nonexistent.toml: No such file"),
            "{e}"
        );
    }

    #[test]
    fn video_keeps_its_source_tables_and_takes_options_beside_them() {
        let f = File::new(
            "video",
            "group = \"239.255.9.1:5010\"\nfrom = [\"pi\"]\n[pi]\nurl = \"udp://:5000\"\n",
        );
        let cli = parse(&["edm-cast", "video", "--config", f.path()]).unwrap();
        let Command::Video(a) = cli.command else {
            panic!("not video")
        };
        let text = format!("{a:?}");
        assert!(text.contains("from: [\"pi\"]"), "{text}");
        assert!(text.contains("239.255.9.1"), "{text}");
        let before = parse(&["edm-cast", "--config", f.path(), "video"]).unwrap();
        assert_eq!(
            format!("{:?}", before.command),
            format!("{:?}", Command::Video(a))
        );
    }

    #[test]
    fn the_packaged_configs_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/deb");
        for command in ["recv", "serve", "video"] {
            let path = format!("{dir}/{command}.toml");
            parse(&["edm-cast", command, "--config", &path])
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }
}
