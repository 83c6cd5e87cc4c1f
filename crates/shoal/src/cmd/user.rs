//! `shoal user add`: adds a user (name, role, salted PBKDF2 hash of the password) to a users
//! file. The password comes from standard input, never from the command line (where other
//! users of the machine could read it).

use std::io::BufRead;

use anyhow::{Context, bail};
use shoal_common::users::{Role, Users, user_line};

use crate::cli::UserAddArgs;

pub fn add(args: UserAddArgs) -> anyhow::Result<()> {
    let role: Role = args.role.parse().map_err(anyhow::Error::msg)?;
    let existing = std::fs::read_to_string(&args.file).unwrap_or_default();
    let users = Users::parse(&args.file, &existing).map_err(anyhow::Error::msg)?;
    if users.contains(&args.name) {
        bail!(
            "{}: user `{}` exists already",
            args.file.display(),
            args.name
        );
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        bail!("the password must have at least 8 characters");
    }
    let line = user_line(&args.name, role, password);
    // Checked like the nodes will read it before anything is written.
    let text = format!("{existing}{line}\n");
    Users::parse(&args.file, &text).map_err(anyhow::Error::msg)?;
    shoal_common::secret::write_private(&args.file, text.trim_end())
        .with_context(|| format!("writing {}", args.file.display()))?;
    println!("added {} ({role}) to {}", args.name, args.file.display());
    Ok(())
}
