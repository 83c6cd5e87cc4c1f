//! `shoal user add|remove|passwd|role|list`: users managed through the controllers (the
//! `UserAdmin` service), or `add --file` appending a line to a users file. Passwords come from
//! standard input (a prompt on a terminal), never from the command line, where other users of
//! the machine could read them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use nix::sys::termios;
use shoal_client::channel::Channels;
use shoal_client::controller::{ControllerClient, UserChange};
use shoal_common::config::ClusterNodes;
use shoal_common::users::{self, Role, Users, user_line};
use shoal_proto::{UserList, UserRequest};

use crate::cli::{UserAdminArgs, UserCommand};
use crate::output;
use crate::target::Target;

pub async fn run(command: UserCommand) -> anyhow::Result<()> {
    let (change, admin, req) = match command {
        UserCommand::Add(a) => {
            let role: Role = a.role.parse().map_err(anyhow::Error::msg)?;
            if let Some(file) = &a.file {
                return add_to_file(file, &a.name, role);
            }
            let password = new_password(&a.name)?;
            let req = UserRequest {
                name: a.name,
                role: role.name().to_owned(),
                password,
            };
            (UserChange::Add, a.admin, req)
        }
        UserCommand::Remove(a) => (UserChange::Remove, a.admin, named(a.name)),
        UserCommand::Passwd(a) => {
            let password = new_password(&a.name)?;
            let req = UserRequest {
                password,
                ..named(a.name)
            };
            (UserChange::Password, a.admin, req)
        }
        UserCommand::Role(a) => {
            let role: Role = a.role.parse().map_err(anyhow::Error::msg)?;
            let req = UserRequest {
                role: role.name().to_owned(),
                ..named(a.name)
            };
            (UserChange::Role, a.admin, req)
        }
        UserCommand::List(a) => {
            let users = controllers(&a.admin)?.list_users().await?;
            return print(&users, a.json);
        }
    };
    let name = req.name.clone();
    controllers(&admin)?.change_user(change, req).await?;
    let done = match change {
        UserChange::Add => "added",
        UserChange::Remove => "removed",
        UserChange::Password => "changed the password of",
        UserChange::Role => "changed the role of",
    };
    println!("{done} user `{name}`");
    Ok(())
}

fn named(name: String) -> UserRequest {
    UserRequest {
        name,
        ..UserRequest::default()
    }
}

/// The controllers, reached with the cluster secret or as the `--login` user.
fn controllers(args: &UserAdminArgs) -> anyhow::Result<ControllerClient> {
    let Some(login) = &args.login else {
        return Ok(Target::resolve(&args.target)?.controllers);
    };
    let sites = match &args.target.dir {
        Some(dir) => ClusterNodes::load(&dir.join("cluster.nodes"))?
            .controllers()
            .map(|n| n.site.addr())
            .collect(),
        None if args.target.sites.is_empty() => {
            bail!("say where the cluster is: --sites host:port,... or --dir DIR")
        }
        None => args.target.sites.clone(),
    };
    let password = crate::target::password(args.login_password_file.as_deref(), "--login")?;
    let channels =
        Channels::as_user(login, &password)?.with_tls(crate::target::client_tls(&args.target)?);
    Ok(ControllerClient::new(sites, channels))
}

fn print(list: &UserList, json: bool) -> anyhow::Result<()> {
    if json {
        let users: Vec<_> = list
            .users
            .iter()
            .map(
                |u| serde_json::json!({"name": u.name, "role": u.role, "generation": u.generation}),
            )
            .collect();
        println!("{}", output::json(&users)?);
        return Ok(());
    }
    let rows = list
        .users
        .iter()
        .map(|u| vec![u.name.clone(), u.role.clone(), u.generation.to_string()])
        .collect();
    print!("{}", output::table(&["USER", "ROLE", "GENERATION"], rows));
    Ok(())
}

/// A new password from standard input (prompted for on a terminal, not echoed), checked for
/// length.
fn new_password(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let _quiet = if stdin.is_terminal() {
        eprint!("password for `{name}`: ");
        std::io::stderr().flush().ok();
        Some(NoEcho::on(&stdin)?)
    } else {
        None
    };
    let mut password = String::new();
    stdin
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    users::check_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

/// The terminal's echo off until dropped, so a typed password is neither shown nor left in the
/// scrollback.
struct NoEcho {
    saved: termios::Termios,
}

impl NoEcho {
    fn on(stdin: &std::io::Stdin) -> anyhow::Result<Self> {
        let saved = termios::tcgetattr(stdin).context("reading the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(termios::LocalFlags::ECHO);
        termios::tcsetattr(stdin, termios::SetArg::TCSANOW, &quiet)
            .context("turning the terminal's echo off")?;
        Ok(NoEcho { saved })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &self.saved);
        // The Enter that ended the password was not echoed either.
        eprintln!();
    }
}

fn add_to_file(file: &Path, name: &str, role: Role) -> anyhow::Result<()> {
    let existing = std::fs::read_to_string(file).unwrap_or_default();
    let users = Users::parse(file, &existing).map_err(anyhow::Error::msg)?;
    if users.contains(name) {
        bail!("{}: user `{name}` exists already", file.display());
    }
    let password = new_password(name)?;
    let line = user_line(name, role, &password);
    // Checked like the nodes will read it before anything is written.
    let text = format!("{existing}{line}\n");
    Users::parse(file, &text).map_err(anyhow::Error::msg)?;
    shoal_common::secret::write_private(file, text.trim_end())
        .with_context(|| format!("writing {}", file.display()))?;
    println!("added {name} ({role}) to {}", file.display());
    Ok(())
}
