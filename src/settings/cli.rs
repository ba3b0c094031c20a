//! The command line, built from the settings table: one flag per setting (`--grpc-addr ADDR`,
//! `--shadow-mode[=BOOL]`), `--config FILE`, and the subcommands.

use super::table::TABLE;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::path::PathBuf;

/// What the command line asks for, before settings are resolved.
pub enum Parsed {
    /// Serve, with these flag values (setting name, text).
    Serve {
        /// Flags given, by setting name.
        flags: Vec<(&'static str, String)>,
        /// `--config FILE`.
        file: Option<PathBuf>,
    },
    /// `check-config DIR`.
    CheckConfig(PathBuf),
    /// `hash-key [KEY]`.
    HashKey(Option<String>),
}

/// One flag per setting, plus `--config`.
fn serve_args() -> Vec<Arg> {
    let mut args: Vec<Arg> = TABLE
        .iter()
        .map(|s| {
            let default = if s.default.is_empty() {
                "none"
            } else {
                s.default
            };
            let arg = Arg::new(s.name)
                .long(s.flag)
                .value_name(s.hint)
                .action(ArgAction::Set)
                .help(format!(
                    "{} [env: {}] [default: {default}]",
                    s.help,
                    s.env()
                ));
            if s.switch {
                arg.num_args(0..=1).default_missing_value("true")
            } else {
                arg
            }
        })
        .collect();
    args.push(
        Arg::new("config")
            .long("config")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Settings file (TOML) holding any of these settings [env: SLUICE_CONFIG]"),
    );
    args
}

/// The whole command.
pub fn command() -> Command {
    Command::new("sluice")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Rate-limit service for Envoy")
        .args(serve_args())
        .subcommand(
            Command::new("serve")
                .about("Serve gRPC (the default)")
                .args(serve_args()),
        )
        .subcommand(
            Command::new("check-config")
                .about("Validate the rule files of a directory; exit non-zero with the errors")
                .arg(
                    Arg::new("dir")
                        .required(true)
                        .value_name("DIR")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help("The rule directory"),
                ),
        )
        .subcommand(
            Command::new("hash-key")
                .about("Print the SHA-256 of an API key for the authz keys file (reads stdin without KEY)")
                .arg(
                    Arg::new("key")
                        .value_name("KEY")
                        .help("The key (prefer stdin: arguments end up in shell history)"),
                ),
        )
}

/// Sorts matches into what to do.
pub fn interpret(m: &ArgMatches) -> Parsed {
    match m.subcommand() {
        Some(("check-config", sub)) => {
            Parsed::CheckConfig(sub.get_one::<PathBuf>("dir").cloned().unwrap_or_default())
        }
        Some(("hash-key", sub)) => Parsed::HashKey(sub.get_one::<String>("key").cloned()),
        Some(("serve", sub)) => serve(sub),
        _ => serve(m),
    }
}

fn serve(m: &ArgMatches) -> Parsed {
    let flags = TABLE
        .iter()
        .filter_map(|s| m.get_one::<String>(s.name).map(|v| (s.name, v.clone())))
        .collect();
    Parsed::Serve {
        flags,
        file: m.get_one::<PathBuf>("config").cloned(),
    }
}
