//! `shoal package build|keygen|inspect` and the hidden `shoal build-info`.

use anyhow::{Context, bail};
use shoal_agent::install::{self, BuildInfo};
use shoal_package::ManifestFields;

use crate::cli::{PackageBuildArgs, PackageInspectArgs, PackageKeygenArgs};
use crate::output;

pub fn build_info() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(&BuildInfo::own())?);
    Ok(())
}

/// The manifest declares what the binary itself reports, so a package cannot claim a version
/// its binary is not.
pub async fn build(args: PackageBuildArgs) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe().context("cannot find this shoal executable")?,
    };
    let info = install::build_info(&binary)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", binary.display()))?;
    let key = args
        .sign_key
        .as_deref()
        .map(shoal_package::load_signing_key)
        .transpose()?;
    let fields = ManifestFields {
        version: info.version,
        build_date: info.build_date,
        min_upgrade_from: info.min_upgrade_from,
        wire_version: info.wire_version,
        storage_format_version: info.storage_format_version,
    };
    let files = [(install::BINARY.to_owned(), binary, true)];
    let out = args.out.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        shoal_package::build(&out, fields, &files, key.as_ref())
    })
    .await??;
    if args.json {
        println!("{}", output::json(&manifest)?);
    } else {
        println!(
            "{}: shoal {} ({}){}",
            args.out.display(),
            manifest.version,
            manifest.build_date,
            if args.sign_key.is_some() {
                ", signed"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub fn keygen(args: PackageKeygenArgs) -> anyhow::Result<()> {
    shoal_package::generate_key(&args.out)?;
    println!(
        "signing key {} (keep it private); public key {}.pub (agents' packageVerifyKey)",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

pub fn inspect(args: PackageInspectArgs) -> anyhow::Result<()> {
    let key = args
        .verify_key
        .as_deref()
        .map(shoal_package::load_verifying_key)
        .transpose()?;
    let (_, signature) = shoal_package::read_manifest(&args.package)?;
    let manifest = shoal_package::verify(&args.package, key.as_ref())?;
    if manifest.file(install::BINARY).is_none() {
        bail!(
            "{}: the package has no `{}` binary",
            args.package.display(),
            install::BINARY
        );
    }
    if args.json {
        println!("{}", output::json(&manifest)?);
        return Ok(());
    }
    let rows = vec![
        vec!["version".into(), manifest.version.clone()],
        vec!["build date".into(), manifest.build_date.clone()],
        vec![
            "upgrades from".into(),
            format!("{} or later", manifest.min_upgrade_from),
        ],
        vec!["wire version".into(), manifest.wire_version.to_string()],
        vec![
            "storage format".into(),
            manifest.storage_format_version.to_string(),
        ],
        vec![
            "signature".into(),
            match (signature.is_some(), key.is_some()) {
                (true, true) => "valid".into(),
                (true, false) => "present (not checked: no --verify-key)".into(),
                (false, _) => "none".into(),
            },
        ],
    ];
    println!("{}", output::table(&["", ""], rows));
    for f in &manifest.files {
        println!(
            "{}  {} bytes  sha256 {}  (verified)",
            f.name, f.size, f.sha256
        );
    }
    Ok(())
}
